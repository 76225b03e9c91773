"""Settings of `soundscape homeassistant`."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import check_id, check_prefix
from shared.settings import host_id


class HomeAssistantSettings(BaseSettings):
    """Home Assistant MQTT discovery. Environment prefix `SOUNDSCAPE_HA_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_HA_", extra="ignore")

    discovery: bool = Field(
        False,
        description="Announce every registered device to Home Assistant (retained discovery "
        "configs); off: only the JSON state topics, and configs of ours are removed",
    )
    discovery_prefix: str = Field(
        "homeassistant",
        description="Home Assistant's discovery prefix (its birth topic is "
        "`{discovery_prefix}/status`)",
    )
    node_id: str = Field(
        default_factory=lambda: host_id("homeassistant"),
        description="Node id of this service's retained status",
    )
    publish_interval: float = Field(
        1.0, gt=0, le=3600, description="Seconds between state messages of a changed device"
    )
    registry_interval: float = Field(
        30.0, gt=0, description="Seconds between looks at the registry file for changes"
    )

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_prefix(value)

    @field_validator("node_id")
    @classmethod
    def _node(cls, value: str) -> str:
        return check_id(value, "node id")
