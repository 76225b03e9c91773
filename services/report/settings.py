"""Settings of `soundscape report`. Environment prefix `SOUNDSCAPE_REPORT_`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReportSettings(BaseSettings):
    """How `soundscape report` reaches the database. Prefix `SOUNDSCAPE_REPORT_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_REPORT_", extra="ignore")

    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL DSN, ideally of the read-only role, e.g. "
        "postgresql://reader@db/soundscape; --database-url overrides it",
    )
    statement_timeout_s: float = Field(
        300.0, gt=0, description="Longest a single report query may run, seconds"
    )
    connect_timeout_s: int = Field(5, ge=1, description="Database connection timeout, seconds")
