"""Settings of the ingest service. Environment prefix `SOUNDSCAPE_INGEST_`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import check_id
from shared.settings import host_id

#: Role names are written into SQL as identifiers: keep them plain.
ROLE_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


class IngestSettings(BaseSettings):
    """How ingest reaches PostgreSQL, where it spools, and what it accepts."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_INGEST_", extra="ignore")

    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL connection URL (libpq), e.g. postgresql://user:pw@host/db; "
        "no default: required",
    )
    sync_interval: float | None = Field(
        None,
        gt=0,
        description="Seconds between syncs of the spool to PostgreSQL; unset: the device's "
        "`sync_interval` from the registry when `device` is set, else 30 (use 3600 over GSM)",
    )
    spool: Path = Field(
        Path("ingest-spool.sqlite3"),
        description="SQLite spool file (WAL mode); results wait here until PostgreSQL commits",
    )
    spool_max: int = Field(
        1_000_000,
        ge=1,
        description="Most results the spool keeps; when full the oldest are dropped and the "
        "gap (device, time range, count) is recorded",
    )
    broker_drops: bool = Field(
        True,
        description="Read the broker's `$SYS` drop counter and store its rises as "
        "`broker_dropped` gap rows (the ACL must let ingest read `$SYS/broker/#`)",
    )
    batch_size: int = Field(
        10_000, ge=1, description="Most results moved to PostgreSQL in one transaction"
    )
    device: str | None = Field(
        None,
        description="Subscribe to this one device only (ingest on the sensor); unset: every "
        "device (ingest next to the database)",
    )
    node_id: str = Field(
        default_factory=lambda: host_id("ingest"),
        description="Node id of this service's retained status topic",
    )
    client_id: str = Field(
        default_factory=lambda: host_id("soundscape-ingest"),
        min_length=1,
        max_length=128,
        description="Fixed MQTT client id: the broker keeps this id's session (and queues "
        "results for it) while ingest is down; two processes must never share it",
    )
    session_expiry: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=4_294_967_294,
        description="MQTT session expiry, seconds: how long the broker queues results for an "
        "absent ingest; longer than the longest expected outage",
    )
    receive_maximum: int = Field(
        1000,
        ge=1,
        le=65535,
        description="MQTT 5 receive maximum: unacknowledged results the broker may send at "
        "once (results are acknowledged once spooled, in batches up to this size)",
    )
    spool_linger: float = Field(
        0.1,
        ge=0,
        le=10,
        description="Seconds the spool writer lets results gather before one commit (an "
        "fsync) stores them all and they are acknowledged; 0: commit whatever has arrived at "
        "once. A commit costs about as much CPU as spooling 5-10 results (docs/benchmarks.md); a "
        "longer linger delays the acknowledgement, never the sync",
    )
    require_known_device: bool = Field(
        False,
        description="Reject results from devices missing in the device registry "
        "(only when a registry file is configured)",
    )
    max_future_s: float = Field(
        86_400.0,
        gt=0,
        description="Reject results whose window starts more than this many seconds ahead of "
        "this machine's clock",
    )
    source: str | None = Field(
        None, description="Written to syncs.source for each sync; unset: the node id"
    )
    connect_timeout: int = Field(
        10, ge=1, le=600, description="Seconds to wait for a PostgreSQL connection"
    )
    db_timeout: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="Seconds one database step of a sync (the schema check, or one batch's "
        "transaction) may take before its link is dropped and the batch waits in the spool for "
        "the next sync; also the link's TCP user timeout, keepalive budget and statement timeout",
    )
    shutdown_timeout: float = Field(
        30.0, gt=0, description="Seconds the final sync on SIGTERM may take before giving up"
    )
    keep_levels_days: int = Field(
        0,
        ge=0,
        description="Days raw levels rows are kept: older day partitions of `levels` are "
        "dropped whole by maintenance (`--maintain` or `maintenance_url`); 0: forever",
    )
    keep_labels_days: int = Field(
        0,
        ge=0,
        description="Days raw labels rows are kept: older day partitions of `labels` are "
        "dropped whole by maintenance (`--maintain` or `maintenance_url`); 0: forever",
    )
    keep_minute_rollups_days: int = Field(
        0,
        ge=0,
        description="Days the per-minute rollup `levels_minute` is kept: older month "
        "partitions are dropped whole by maintenance; 0: forever",
    )
    keep_hourly_rollups_days: int = Field(
        0,
        ge=0,
        description="Days the hourly rollups (`levels_hourly`, `labels_hourly`, "
        "`summaries_hourly`, `indices_hourly`) are kept: older month partitions are dropped "
        "whole by maintenance; 0: forever",
    )
    maintenance_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL of the schema owner; when set, ingest itself runs "
        "maintenance (partitions ahead, retention) through it every `maintenance_interval`; "
        "unset: run `soundscape ingest --maintain` as the owner daily",
    )
    maintenance_interval: float = Field(
        3600.0, ge=60, description="Seconds between maintenance runs when `maintenance_url` is set"
    )
    writer_role: str = Field(
        "soundscape_ingest",
        pattern=ROLE_PATTERN,
        description="Role `--create-roles` creates for ingest (INSERT only, plus what ON "
        "CONFLICT and the device upsert need)",
    )
    reader_role: str = Field(
        "soundscape_reader",
        pattern=ROLE_PATTERN,
        description="Read-only role `--create-roles` creates for the dashboard and other readers",
    )
    writer_password: SecretStr | None = Field(
        None, description="Password `--create-roles` sets for the writer role; unset: none"
    )
    reader_password: SecretStr | None = Field(
        None, description="Password `--create-roles` sets for the reader role; unset: none"
    )

    @field_validator("device", "node_id")
    @classmethod
    def _plain_id(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value)

    @property
    def keep_days(self) -> dict[str, int]:
        """Retention by `db.RETENTION` key, days (0: forever)."""
        return {
            "levels": self.keep_levels_days,
            "labels": self.keep_labels_days,
            "minute_rollups": self.keep_minute_rollups_days,
            "hourly_rollups": self.keep_hourly_rollups_days,
        }

    @property
    def status_source(self) -> str:
        """What goes into syncs.source."""
        return self.source or self.node_id
