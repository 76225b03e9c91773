"""`soundscape health --node NODE`: exit 0 when NODE's retained status is fresh and online.

Used as the container health check: it asks the broker, so it checks what users see (the
service is connected and its heartbeat is recent), not merely that a process exists. It
connects with the service's broker settings (TLS included), as its own user when
`SOUNDSCAPE_HEALTH_USERNAME` is set: with client ids bound to users, a check run as the
service's user would take over the service's session.

Every container's check shares that one user, so two checks at the same moment take over
each other's connection (the broker closes the first one's): a check whose connection the
broker closes connects once more, after a short random pause, within its `--wait`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from typing import Final

import aiomqtt
from paho.mqtt.enums import MQTTErrorCode
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError, MessageError
from shared.messages import Status
from shared.settings import MqttSettings
from shared.tls import client_tls_context

log = logging.getLogger(__name__)

#: Pause before connecting again after a takeover, seconds (random in this range, so two
#: checks that met do not meet again; longer than a check takes on a local broker).
RETRY_PAUSE_S: Final = (0.05, 0.3)
#: How long a failed subscription waits to learn whether the connection was closed, seconds.
DISCONNECT_GRACE_S: Final = 0.1


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


class Disconnected(aiomqtt.MqttError):
    """The broker closed the check's connection after accepting it."""


async def fetch_status(settings: MqttSettings, node: str, wait_s: float) -> Status | None:
    """The retained status of `node`, or None if none arrives within `wait_s` seconds. A
    connection the broker closes after accepting it (taken over by another check of the same
    user) is made once more within the same `wait_s`."""
    deadline = asyncio.get_running_loop().time() + wait_s
    try:
        return await _fetch_once(settings, node, deadline)
    except Disconnected as exc:
        # Mosquitto 2.0.11 closes a taken-over connection without the reason code (0x8E)
        # reaching paho ("Unspecified error"), so any such close gets the one retry.
        log.info("health check of %s: %s (%s), connecting once more", node, exc, exc.__cause__)
    await asyncio.sleep(random.uniform(*RETRY_PAUSE_S))
    return await _fetch_once(settings, node, deadline)


async def _fetch_once(settings: MqttSettings, node: str, deadline: float) -> Status | None:
    async with aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=client_tls_context(settings),
    ) as client:
        topic = Status.topic_for(settings.topic_prefix, node)
        try:
            async with asyncio.timeout_at(deadline):
                return await _first_status(client, topic)
        except TimeoutError:
            return None


async def _first_status(client: aiomqtt.Client, topic: str) -> Status:
    """The first status on `topic`. The subscription and the reading run side by side, so a
    disconnect while the subscription is pending ends this at once (a pending subscribe
    alone would wait out its timeout)."""
    reading = asyncio.ensure_future(_next_status(client))
    subscribing = asyncio.ensure_future(client.subscribe(topic, qos=1))
    try:
        done, _ = await asyncio.wait({reading, subscribing}, return_when=asyncio.FIRST_COMPLETED)
        if reading in done:
            return reading.result()
        try:
            subscribing.result()  # a refused subscription raises here
        except aiomqtt.MqttCodeError as exc:
            # Or one on a connection the broker just closed: then the reading ends at once,
            # with the reason (and retrieves it from the client)...
            done, _ = await asyncio.wait({reading}, timeout=DISCONNECT_GRACE_S)
            if reading in done:
                return reading.result()
            # ... unless the close came with the CONNACK: aiomqtt's connect then forgets it
            # (it resets its disconnect future), and only paho knows it is not connected.
            if exc.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                raise Disconnected("the broker closed the connection") from exc
            raise
        return await reading
    finally:
        for task in (reading, subscribing):
            task.cancel()
        await asyncio.gather(reading, subscribing, return_exceptions=True)


async def _next_status(client: aiomqtt.Client) -> Status:
    try:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes | bytearray):
                return Status.decode(bytes(payload))
    except aiomqtt.MqttError as exc:
        raise Disconnected("the broker closed the connection") from exc.__cause__ or exc
    raise Disconnected("the message stream ended")


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
