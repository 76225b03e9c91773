"""The MQTT adapter against a real broker: delivery, status, reconnect with a queued outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.messages import Calibration, LevelsResult, Status
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.settings import MqttSettings
from tests.support import servers
from tests.support.bus import running
from tests.support.retained import clear_retained

pytestmark = pytest.mark.integration
T0 = 1_764_400_000.0


def level(seq: int) -> LevelsResult:
    return LevelsResult(
        device="yor",
        seq=seq,
        start=T0 + seq,
        duration=1.0,
        leq_db=50.0 + seq,
        calibration=Calibration(),
        uncalibrated=True,
    )


async def test_publish_and_receive_with_retained_status(mqtt_settings: MqttSettings) -> None:
    got: list[Incoming] = []
    arrived = asyncio.Event()

    async def handler(msg: Incoming) -> None:
        got.append(msg)
        if len([m for m in got if m.topic.endswith("/levels")]) == 3:
            arrived.set()

    prefix = mqtt_settings.topic_prefix
    sub = MqttBus(
        mqtt_settings,
        "reader",
        "test",
        handler=handler,
        subscriptions=[
            Subscription(LevelsResult.subscription(prefix), 1),
            Subscription(Status.subscription(prefix), 1),
        ],
    )
    pub = MqttBus(mqtt_settings, "writer", "test", counters=lambda: {"things": 7})
    async with running(sub), running(pub):
        for seq in range(3):
            pub.publish(level(seq))
        async with asyncio.timeout(10):
            await arrived.wait()
    levels = [
        LevelsResult.from_mqtt(prefix, m.topic, m.payload, m.content_type)
        for m in got
        if m.topic.endswith("/levels")
    ]
    assert [lv.seq for lv in levels] == [0, 1, 2]
    statuses = [
        Status.from_mqtt(prefix, m.topic, m.payload) for m in got if m.topic.endswith("/status")
    ]
    writer = [s for s in statuses if s.device == "writer"]
    assert writer and writer[0].state == "online" and writer[0].counters["things"] == 7


async def test_outbox_survives_a_broker_restart(tmp_path: Path, prefix: str) -> None:
    # Persistence keeps the reader's session across the restart, as in deployment.
    store = tmp_path / "b"
    broker = servers.start_mosquitto(
        store, f"persistence true\npersistence_location {store}/\nautosave_interval 1"
    )
    settings = MqttSettings(
        port=broker.port, topic_prefix=prefix, reconnect_min=0.05, reconnect_max=0.2
    )
    got: list[int] = []
    done = asyncio.Event()

    async def handler(msg: Incoming) -> None:
        got.append(LevelsResult.from_mqtt(prefix, msg.topic, msg.payload, msg.content_type).seq)
        if set(got) >= {0, 1, 2, 3}:  # QoS 1 is at-least-once: a restart may repeat some
            done.set()

    reader = MqttBus(
        settings,
        "reader",
        "test",
        handler=handler,
        client_id=f"r-{broker.port}",
        clean_start=False,
        subscriptions=[Subscription(LevelsResult.subscription(prefix), 1)],
    )
    writer = MqttBus(settings, "writer", "test")
    try:
        async with running(reader), running(writer):
            writer.publish(level(0))
            writer.publish(level(1))
            await writer.drained(5)
            broker.stop()
            await asyncio.sleep(0.3)
            writer.publish(level(2))  # queued while the broker is down
            writer.publish(level(3))
            assert writer.pending >= 2
            await asyncio.to_thread(broker.start)
            async with asyncio.timeout(15):
                await done.wait()
        assert sorted(set(got)) == [0, 1, 2, 3]
        assert writer.stats["reconnects"] >= 1
    finally:
        broker.stop()


def test_heartbeats_carry_the_current_health(mqtt_settings: MqttSettings) -> None:
    bus = MqttBus(mqtt_settings, "mic", "capture")
    bus.set_health("degraded", "microphone missing")  # not connected: remembered only
    assert bus.pending == 0
    bus.set_status("online")  # what a heartbeat or a reconnect publishes
    status = Status.decode(bus._outbox[-1].payload)
    assert (status.state, status.detail) == ("degraded", "microphone missing")
    bus.set_health("online")
    bus.set_status("online")
    assert Status.decode(bus._outbox[-1].payload).state == "online"


@pytest.mark.allow_log_exceptions
async def test_a_handler_that_raises_does_not_end_the_bus(mqtt_settings: MqttSettings) -> None:
    seen: list[int] = []
    done = asyncio.Event()
    failures = [ZeroDivisionError, KeyError, RuntimeError, TypeError, RecursionError]

    async def handler(msg: Incoming) -> None:
        lv = LevelsResult.decode(msg.payload)
        seen.append(lv.seq)
        if lv.seq < len(failures):
            raise failures[lv.seq]("a bug in the handler")
        if lv.seq == 9:
            done.set()

    prefix = mqtt_settings.topic_prefix
    sub = MqttBus(
        mqtt_settings,
        "fragile",
        "test",
        handler=handler,
        subscriptions=[Subscription(LevelsResult.subscription(prefix), 1)],
    )
    pub = MqttBus(mqtt_settings, "writer", "test")
    async with running(sub), running(pub):
        for seq in range(10):
            pub.publish(level(seq))
        async with asyncio.timeout(10):
            await done.wait()
        assert sub.connected.is_set()
        assert sub.stats["handler_errors"] == len(failures)
        assert sub.status("online").counters["handler_errors"] == len(failures)
        assert sub.stats["reconnects"] == 0
    assert seen == list(range(10))
    await asyncio.to_thread(clear_retained, mqtt_settings.port, prefix)
