"""Config model of the proof-of-service reports: when they go upstream, how long history stays."""

from datetime import time

from pydantic import Field

from gateway.config.base import Model


class ReportsConfig(Model):
    """The daily availability and response reports, and the availability history they read."""

    publish_at: time | None = Field(
        time(0, 0),
        description="Local time (alarms.timezone) at which the previous day's availability and"
        " response reports are published upstream, e.g. '00:00'; null: not published",
    )
    retention_days: int = Field(
        400,
        ge=35,
        le=3660,
        description="Days of availability history kept (device changes, restarts, reading counts)",
    )
