"""Settings shared by every service. Each service adds its own class with its own env prefix.

Settings are built in a service's `main()` and passed down, never at import time.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages.base import check_prefix


def host_id(prefix: str) -> str:
    """`prefix-hostname`, reduced to what a node or client id may contain (a default that
    differs per machine; set ids explicitly where they must survive a container rebuild)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "localhost"
    return f"{prefix}-{host}"[:64]


class MqttSettings(BaseSettings):
    """How to reach the broker. Environment prefix `SOUNDSCAPE_MQTT_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_MQTT_", extra="ignore")

    host: str = Field("127.0.0.1", description="Broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port")
    username: str | None = Field(None, description="User name; none for anonymous access")
    password: SecretStr | None = Field(None, description="Password for `username`")
    tls: bool = Field(False, description="Connect with TLS using the system CA store")
    ca_file: Path | None = Field(
        None, description="CA certificate (PEM) to verify the broker with; implies TLS"
    )
    cert_file: Path | None = Field(
        None, description="Client certificate (PEM) for brokers that ask for one; needs key_file"
    )
    key_file: Path | None = Field(None, description="Private key (PEM) of `cert_file`")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds")
    topic_prefix: str = Field("soundscape", description="First topic level(s) of every topic")
    results_format: Literal["msgpack", "json"] = Field(
        "msgpack", description="Encoding of published results (audio is always msgpack)"
    )
    reconnect_min: float = Field(0.5, gt=0, description="First reconnect delay, seconds")
    reconnect_max: float = Field(30.0, gt=0, description="Longest reconnect delay, seconds")
    status_interval: float = Field(
        30.0, gt=0, description="How often a service republishes its retained status, seconds"
    )
    publish_window: int = Field(
        100,
        ge=1,
        le=65535,
        description="Most messages a service has sent and the broker not yet acknowledged "
        "(PUBACK) at once; fewer where the broker's receive maximum is lower (Mosquitto: "
        "`max_inflight_messages`, 20 unless set). Over a link with round trip R, a service "
        "publishes up to publish_window / R QoS 1 messages a second",
    )
    ack_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds the broker may take to answer a connect, a subscribe or a "
        "publish; past it the link counts as broken and the service reconnects (what was "
        "not acknowledged is sent again). Keep it above the round trip plus the time a full "
        "window takes to cross the uplink",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_prefix(value)

    @model_validator(mode="after")
    def _client_cert(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self

    @property
    def uses_tls(self) -> bool:
        """True when the connection is TLS (asked for, or implied by a CA or client cert)."""
        return self.tls or self.ca_file is not None or self.cert_file is not None


class RegistrySettings(BaseSettings):
    """Where the device registry lives. Environment prefix `SOUNDSCAPE_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_", extra="ignore")

    devices_file: Path | None = Field(
        None, description="TOML device registry (ids, locations, calibration); none: defaults"
    )
