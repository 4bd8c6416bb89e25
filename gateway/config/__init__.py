"""Configuration: pydantic models, profile merging and the loader."""

from gateway.config.loader import load_config, validate
from gateway.config.models import Config

__all__ = ["Config", "load_config", "validate"]
