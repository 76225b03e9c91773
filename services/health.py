"""`soundscape health --node NODE`: exit 0 when NODE's retained status is fresh and online.

Used as the container health check: it asks the broker, so it checks what users see (the
service is connected and its heartbeat is recent), not merely that a process exists. It
connects with the service's broker settings (TLS included), as its own user when
`SOUNDSCAPE_HEALTH_USERNAME` is set: with client ids bound to users, a check run as the
service's user would take over the service's session.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiomqtt
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError, MessageError
from shared.messages import Status
from shared.settings import MqttSettings
from shared.tls import client_tls_context


class HealthSettings(BaseSettings):
    """The account `soundscape health` uses. Environment prefix `SOUNDSCAPE_HEALTH_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_HEALTH_", extra="ignore")

    username: str | None = Field(
        None, description="Broker user of the health check; unset: the service's MQTT user"
    )
    password: SecretStr | None = Field(None, description="Password for `username`")

    def apply(self, mqtt: MqttSettings) -> MqttSettings:
        """`mqtt` with this account in place of the service's, when one is set."""
        if self.username is None:
            return mqtt
        return mqtt.model_copy(update={"username": self.username, "password": self.password})


async def fetch_status(settings: MqttSettings, node: str, wait_s: float) -> Status | None:
    """The retained status of `node`, or None if none arrives within `wait_s` seconds."""
    async with aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=client_tls_context(settings),
    ) as client:
        await client.subscribe(Status.topic_for(settings.topic_prefix, node), qos=1)
        try:
            async with asyncio.timeout(wait_s):
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes | bytearray):
                        return Status.decode(bytes(payload))
        except TimeoutError:
            return None
    return None


def verdict(status: Status | None, now: float, max_age: float) -> tuple[bool, str]:
    """(healthy, reason) for a status seen at `now`."""
    if status is None:
        return False, "no status retained"
    age = now - status.time
    if status.state == "offline":
        return False, "offline"
    if age > max_age:
        return False, f"status is {age:.0f} s old (limit {max_age:.0f} s)"
    return True, f"{status.state} ({age:.0f} s ago) {status.counters}"


def main(argv: list[str] | None = None) -> int:
    """Check one node's health; print the reason."""
    parser = argparse.ArgumentParser(prog="soundscape health", description=__doc__)
    parser.add_argument("--node", required=True, help="device id or service node id")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a status")
    args = parser.parse_args(argv)
    settings = HealthSettings().apply(MqttSettings())
    try:
        status = asyncio.run(fetch_status(settings, args.node, args.wait))
    except (aiomqtt.MqttError, MessageError, ConfigError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    ok, reason = verdict(status, time.time(), 3 * settings.status_interval)
    print(("healthy: " if ok else "unhealthy: ") + reason)
    return 0 if ok else 1
