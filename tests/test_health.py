"""`soundscape health`: healthy only when the node's retained status is online and fresh."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from services.health import fetch_status, main, verdict
from shared.messages import Status
from shared.mqtt import MqttBus
from shared.settings import MqttSettings
from tests.support.bus import running
from tests.support.servers import start_mosquitto


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


@pytest.mark.integration
# aiomqtt, when the broker closes the connection together with the CONNACK, drops the future
# that held the close, and asyncio logs "Future exception was never retrieved" for it.
@pytest.mark.allow_log_exceptions
async def test_two_checks_at_the_same_moment_both_pass(tmp_path: Path, prefix: str) -> None:
    """As in the deployment, every check is the user `health` and the broker binds client ids
    to users: two checks at once take over each other's connection, and a check whose
    connection was taken over connects once more."""
    broker = start_mosquitto(tmp_path, "use_username_as_clientid true")
    try:
        status = Status(device="svc-y", service="test", state="online", time=time.time())
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.username_pw_set("svc-y")  # such a broker refuses a client without a user name
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish(status.topic(prefix), status.encode(), qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        settings = MqttSettings(port=broker.port, username="health", topic_prefix=prefix)
        for _ in range(3):
            got = await asyncio.gather(*(fetch_status(settings, "svc-y", 5.0) for _ in range(2)))
            assert [s.state if s else None for s in got] == ["online", "online"]
    finally:
        broker.stop()
    # They did meet: the broker closed a check's connection for the other's.
    assert "already connected, closing old connection" in broker.log.read_text()
    # aiomqtt drops the disconnect future of a close that came with the CONNACK (see
    # services/health.py); collect it here, where its "never retrieved" log is expected,
    # rather than in whichever test runs next.
    gc.collect()
