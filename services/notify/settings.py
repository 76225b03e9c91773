"""Settings of `soundscape notify`."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import check_id
from shared.settings import host_id


class NotifySettings(BaseSettings):
    """Notifications through Apprise. Environment prefix `SOUNDSCAPE_NOTIFY_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_NOTIFY_", extra="ignore")

    urls: SecretStr | None = Field(
        None,
        description="Apprise URLs, separated by spaces or commas (mailto://, tgram://, ntfy://, "
        "json://...); each is a target of its own",
    )
    node_id: str = Field(
        default_factory=lambda: host_id("notify"),
        description="Node id of this service's retained status",
    )
    events: bool = Field(True, description="Notify noise events")
    statuses: bool = Field(True, description="Notify nodes going offline or degraded, and back")
    quiet_seconds: float = Field(
        600.0,
        ge=0,
        description="Per device: an event starting less than this after the previous one "
        "ended sends nothing; and at most one offline/degraded message per node in this time",
    )
    queue_size: int = Field(100, ge=1, le=100_000, description="Notifications waiting per target")
    retries: int = Field(3, ge=0, le=20, description="Attempts after the first failed one")
    retry_min: float = Field(2.0, gt=0, description="First delay before a retry, seconds")
    retry_max: float = Field(60.0, gt=0, description="Longest delay between retries, seconds")

    @field_validator("node_id")
    @classmethod
    def _node(cls, value: str) -> str:
        return check_id(value, "node id")

    def targets(self) -> list[str]:
        """The URLs, one per target."""
        if self.urls is None:
            return []
        return [u for u in re.split(r"[\s,]+", self.urls.get_secret_value()) if u]
