"""The optional InfluxDB sink: where telemetry goes as time series (``/api/v2/write``)."""

from pydantic import Field

from gateway.config.base import Model, SecretFile


class InfluxConfig(Model):
    """An InfluxDB 2.x/3.x server, or anything serving ``/api/v2/write`` (VictoriaMetrics)."""

    url: str = Field(
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="Base URL of the server, e.g. 'http://influx.example:8086'",
    )
    org: str = Field(min_length=1, description="Organisation (InfluxDB 2.x; others ignore it)")
    bucket: str = Field(min_length=1, description="Bucket (database) the telemetry is written to")
    token_file: SecretFile | None = Field(
        None, description="File holding the API token; omit for servers without auth"
    )
    measurement: str = Field(
        "cgw",
        min_length=1,
        max_length=64,
        description="Measurement name; each telemetry point becomes a field of it",
    )
    batch_size: int = Field(
        500, ge=1, le=10_000, description="Rows (device readings) written per request at most"
    )
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds a write may take in total")
    retry_max: float = Field(
        60.0, ge=0.1, le=3600, description="Longest pause between retries of a failed write (s)"
    )
