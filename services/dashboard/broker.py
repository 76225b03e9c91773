"""The retained status messages of every node, read from the broker for the health page.

Only when `SOUNDSCAPE_DASHBOARD_BROKER_STATUS` is on (the database holds no statuses): the
dashboard then connects with the `SOUNDSCAPE_MQTT_*` settings, subscribes to
`{prefix}/+/status`, takes the retained messages the broker hands out at once, and leaves.
It reads status topics only, never audio. A status that does not decode is counted and
skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import aiomqtt

from shared.errors import MessageError
from shared.messages import Status
from shared.settings import MqttSettings
from shared.tls import client_tls_context

log = logging.getLogger(__name__)

#: The retained messages come right after the subscription; this much quiet ends the read.
QUIET_S: Final = 0.3


async def _read(settings: MqttSettings, wait_s: float) -> tuple[list[Status], int]:
    found: dict[str, Status] = {}
    bad = 0
    async with aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=client_tls_context(settings),
        timeout=wait_s,
    ) as client:
        await client.subscribe(Status.subscription(settings.topic_prefix), qos=1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        messages = client.messages
        while loop.time() < deadline:
            try:
                message = await asyncio.wait_for(anext(messages), QUIET_S)
            except (TimeoutError, StopAsyncIteration):
                break
            payload = message.payload
            if not isinstance(payload, bytes | bytearray) or not payload:
                continue  # an empty retained message clears a status
            try:
                status = Status.decode(bytes(payload))
            except MessageError as exc:
                bad += 1
                log.warning("dashboard: bad status on %s: %s", message.topic, exc)
                continue
            found[f"{status.device}/{status.service}"] = status
    return sorted(found.values(), key=lambda s: (s.device, s.service)), bad


def read_statuses(settings: MqttSettings, wait_s: float = 2.0) -> tuple[list[Status], int]:
    """(the retained statuses, one per node and service; how many could not be decoded)."""
    return asyncio.run(_read(settings, wait_s))
