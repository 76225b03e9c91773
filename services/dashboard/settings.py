"""Settings of the dashboard. Environment prefix `SOUNDSCAPE_DASHBOARD_`."""

from __future__ import annotations

import zoneinfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    """How the dashboard reaches the database and what it shows. Prefix `SOUNDSCAPE_DASHBOARD_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_DASHBOARD_", extra="ignore")

    database_url: SecretStr = Field(
        description="PostgreSQL DSN of a read-only role, e.g. postgresql://dashboard@db/soundscape"
    )
    address: str = Field("127.0.0.1", description="Address the web server listens on")
    port: int = Field(8501, ge=1, le=65535, description="TCP port the web server listens on")
    timezone: str = Field("UTC", description="IANA time zone in which times are shown")
    max_points: int = Field(
        1500, ge=50, le=50_000, description="Most time buckets per device in a time-series chart"
    )
    offline_grace_s: float = Field(
        60.0,
        ge=0,
        description="A device is offline when its newest result is older than "
        "2 x its sync interval plus this, seconds",
    )
    default_sync_interval_s: float = Field(
        30.0, gt=0, description="Sync interval assumed for a device missing from the devices table"
    )
    detections_limit: int = Field(
        200, ge=1, le=10_000, description="Rows in the latest-detections table"
    )
    top_classes: int = Field(15, ge=1, le=100, description="Bars in the top-classes chart")
    events_limit: int = Field(
        200, ge=1, le=10_000, description="Rows in the noise-events and gaps tables"
    )
    min_score: float = Field(
        0.0, ge=0, le=1, description="Initial minimum score for a detection to be shown or counted"
    )
    statement_timeout_s: float = Field(
        20.0, gt=0, description="Longest a single dashboard query may run, seconds"
    )
    connect_timeout_s: int = Field(5, ge=1, description="Database connection timeout, seconds")
    refresh_s: float = Field(
        60.0,
        gt=0,
        description="A page view older than this (s) queries afresh; within it, query results "
        "are reused (the Refresh button forces a new view)",
    )
    map_tiles: str | None = Field(
        None,
        description="Map style with tiles (e.g. open-street-map, or a MapLibre style JSON's URL; "
        "the viewer's browser loads the tiles); unset: a tile-free map that works offline",
    )
    broker_status: bool = Field(
        False,
        description="Health page: read every node's retained status from the broker "
        "(SOUNDSCAPE_MQTT_* settings; status topics only)",
    )
    broker_wait_s: float = Field(
        1.5, gt=0, le=30, description="Longest wait for the broker's retained statuses, seconds"
    )
    password: SecretStr | None = Field(
        None,
        description="Password the page asks for before it queries or shows anything; unset "
        "(or empty): no password, and then the dashboard listens only on a loopback address",
    )
    trust_proxy_auth: bool = Field(
        False,
        description="Listen on any address without a password: only behind a reverse proxy "
        "that authenticates every request (and terminates TLS)",
    )

    @field_validator("password")
    @classmethod
    def _no_empty_password(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty password would let an empty form in: treat it as no password at all.
        return value if value is not None and value.get_secret_value() else None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value
