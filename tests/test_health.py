"""`soundscape health`: healthy only when the node's retained status is online and fresh."""

from __future__ import annotations

import asyncio

import pytest

from services.health import main, verdict
from shared.messages import Status
from shared.mqtt import MqttBus
from shared.settings import MqttSettings
from tests.support.bus import running


def test_verdict() -> None:
    now = 1_764_400_000.0
    online = Status(device="n", service="s", state="online", time=now - 10)
    assert verdict(online, now, 90)[0]
    assert not verdict(online, now + 100, 90)[0]
    assert not verdict(Status(device="n", service="s", state="offline", time=now), now, 90)[0]
    assert not verdict(None, now, 90)[0]


@pytest.mark.integration
async def test_health_command_asks_the_broker(
    mqtt_settings: MqttSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOUNDSCAPE_MQTT_PORT", str(mqtt_settings.port))
    monkeypatch.setenv("SOUNDSCAPE_MQTT_TOPIC_PREFIX", mqtt_settings.topic_prefix)
    assert await asyncio.to_thread(main, ["--node", "svc-x", "--wait", "0.5"]) == 1
    async with running(MqttBus(mqtt_settings, "svc-x", "test")) as bus:
        await bus.drained(5)
        assert await asyncio.to_thread(main, ["--node", "svc-x"]) == 0
        await bus.close()
    assert await asyncio.to_thread(main, ["--node", "svc-x"]) == 1  # clean offline is retained
