"""The service against the real broker: chunks in, labels out; hostile input; overload."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import msgpack
import numpy as np
import pytest

from services.inference.service import InferenceService, audio_subscriptions, wire
from services.inference.settings import InferenceSettings
from shared.contracts import Classifier
from shared.messages import AudioChunk, LabelsResult, Status
from shared.mqtt import Incoming, MqttBus, Outgoing, Subscription
from shared.settings import MqttSettings
from tests.inference.helpers import RATE, FakeClassifier, chunk
from tests.support.audio import tone

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running(*tasks: asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Listener:
    """Collects the labels results (and statuses) published under a prefix."""

    def __init__(self, mqtt: MqttSettings):
        self.prefix = mqtt.topic_prefix
        self.results: list[LabelsResult] = []
        self.statuses: dict[str, Status] = {}
        self.changed = asyncio.Event()
        self.bus = MqttBus(
            mqtt,
            "listener",
            "test",
            subscriptions=[
                Subscription(LabelsResult.subscription(self.prefix), 1),
                Subscription(Status.subscription(self.prefix), 1),
            ],
            handler=self.handle,
        )

    async def handle(self, msg: Incoming) -> None:
        if msg.topic.endswith("/labels"):
            self.results.append(
                LabelsResult.from_mqtt(self.prefix, msg.topic, msg.payload, msg.content_type)
            )
        else:
            status = Status.from_mqtt(self.prefix, msg.topic, msg.payload, msg.content_type)
            self.statuses[status.device] = status
        self.changed.set()

    async def until(self, what: str, done: Callable[[], bool], wait_s: float = 20.0) -> None:
        """Wait until `done()` (checked whenever something arrives); `what` names it."""
        async with asyncio.timeout(wait_s):
            while not done():
                self.changed.clear()
                # also poll: some conditions change without a message arriving
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self.changed.wait()


@contextlib.asynccontextmanager
async def service_and_listener(
    mqtt: MqttSettings, classifier: Classifier, **overrides: object
) -> AsyncIterator[tuple[InferenceService, MqttBus, Listener, MqttBus]]:
    """A running service, a listener for results, and a sensor bus to publish audio."""
    settings = InferenceSettings(node_id="test-inference", threads=1, **overrides)  # type: ignore[arg-type]
    bus, service = wire(settings, mqtt, classifier)
    listener = Listener(mqtt)
    sensor = MqttBus(mqtt, "sensor", "test")
    tasks = [asyncio.create_task(b.run()) for b in (bus, listener.bus, sensor)] + [
        asyncio.create_task(service.work())
    ]
    async with running(*tasks):
        async with asyncio.timeout(10):
            for b in (bus, listener.bus, sensor):
                await b.connected.wait()
        yield service, bus, listener, sensor


def test_subscriptions_shared_or_not_all_or_some() -> None:
    prefix = "soundscape"
    shared = audio_subscriptions(InferenceSettings(), prefix)
    assert [(s.topic, s.qos) for s in shared] == [("$share/inference/soundscape/+/audio", 0)]
    plain = audio_subscriptions(
        InferenceSettings(shared_subscription=False, devices=["yor", "pi2"]), prefix
    )
    assert [s.topic for s in plain] == ["soundscape/yor/audio", "soundscape/pi2/audio"]


async def test_every_chunk_gets_one_result(mqtt_settings: MqttSettings) -> None:
    fake = FakeClassifier()
    async with service_and_listener(
        mqtt_settings, fake, top_k=3, batch_size=4, max_wait_ms=500
    ) as (
        service,
        _bus,
        listener,
        sensor,
    ):
        for seq in range(6):
            for device in ("yor", "pi2"):
                sensor.publish(chunk(device, seq, tone(1000, 1.0)))
        await listener.until("results", lambda: len(listener.results) >= 12)
        await asyncio.sleep(0.2)
    keys = sorted((r.device, r.seq) for r in listener.results)
    assert keys == sorted((d, s) for d in ("yor", "pi2") for s in range(6))
    for r in listener.results:
        assert r.model == "fake-model" and len(r.labels) == 3
        assert r.labels[0].label == "Sine wave" and r.duration == 1.0
        assert r.start == pytest.approx(chunk(r.device, r.seq, tone(1000, 1.0)).start)
        assert r.speech_present is False and r.inference_ms is not None
    assert max(fake.calls) > 1  # windows of different devices shared batches
    counters = service.counters()
    assert counters["chunks"] == 12 and counters["results"] == 12
    assert counters["dropped"] == 0 and counters.get("rejected", 0) == 0


async def test_longer_windows_and_gaps_through_the_service(mqtt_settings: MqttSettings) -> None:
    async with service_and_listener(
        mqtt_settings, FakeClassifier(), window_seconds=2.0, shared_subscription=False
    ) as (service, _bus, listener, sensor):
        for seq in (0, 1, 2, 3, 6, 7):
            sensor.publish(chunk("yor", seq, tone(500, 1.0)))
        await listener.until("results", lambda: len(listener.results) >= 3)
    assert sorted(r.seq for r in listener.results) == [0, 2, 6]
    assert all(r.duration == 2.0 for r in listener.results)
    counters = service.counters()
    assert counters["gaps"] == 1 and counters["missing_chunks"] == 2


def hostile_payloads(prefix: str) -> list[tuple[str, bytes]]:
    good = chunk("yor", 0, tone(1000, 1.0))
    data = good.model_dump()
    topic = AudioChunk.topic_for(prefix, "yor")
    return [
        (topic, b"\xc1 not msgpack"),
        (topic, good.encode()[:100]),  # truncated
        (topic, msgpack.packb([1, 2, 3])),  # wrong type
        (topic, msgpack.packb({**data, "pcm": data["pcm"][:-1]}, use_bin_type=True)),  # odd PCM
        (topic, msgpack.packb({**data, "rate": "16000"}, use_bin_type=True)),  # wrong field type
        (topic, msgpack.packb({**data, "width": 3}, use_bin_type=True)),
        (topic, msgpack.packb({**data, "extra": 1}, use_bin_type=True)),
        (topic, msgpack.packb({**data, "v": 99}, use_bin_type=True)),
        (AudioChunk.topic_for(prefix, "other"), good.encode()),  # device does not match topic
        (topic, msgpack.packb({**data, "pcm": b"\0\0" * RATE * 61}, use_bin_type=True)),  # 61 s
    ]


async def test_hostile_payloads_are_rejected_and_counted(
    mqtt_settings: MqttSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with service_and_listener(mqtt_settings, FakeClassifier()) as (
        service,
        _bus,
        listener,
        sensor,
    ):
        bad = hostile_payloads(mqtt_settings.topic_prefix)
        for topic, payload in bad:
            sensor.publish_raw(Outgoing(topic, payload, 0))
        sensor.publish(chunk("yor", 1, tone(1000, 1.0)))
        await listener.until("result", lambda: len(listener.results) >= 1)
    assert [(r.device, r.seq) for r in listener.results] == [("yor", 1)]
    counters = service.counters()
    assert counters["rejected"] == len(bad)
    assert counters["chunks"] == 1
    rejected = [r for r in caplog.records if "rejected audio" in r.getMessage()]
    assert len(rejected) == len(bad)
    assert all(mqtt_settings.topic_prefix in r.getMessage() for r in rejected)


async def test_overload_drops_the_oldest_and_says_so(mqtt_settings: MqttSettings) -> None:
    slow = FakeClassifier(delay=0.3)
    async with service_and_listener(
        mqtt_settings, slow, batch_size=1, queue_seconds=3, max_wait_ms=0
    ) as (service, bus, listener, sensor):
        for seq in range(30):
            sensor.publish(chunk("yor", seq, tone(1000, 1.0)))
        await listener.until(
            "all accounted",
            lambda: (
                service.stats["chunks"] == 30
                and len(service.queue) == 0
                and service.stats["results"] + service.queue.dropped == 30
            ),
        )
        await listener.until("degraded", lambda: state_of(listener) == "degraded")
        assert "overloaded" in (listener.statuses["test-inference"].detail or "")
        bus.set_status("online")  # a heartbeat: the current counters, the current health
        await listener.until(
            "status",
            lambda: (
                "test-inference" in listener.statuses
                and listener.statuses["test-inference"].counters.get("dropped", 0)
                == service.queue.dropped
            ),
        )
        await listener.until("results", lambda: len(listener.results) == service.stats["results"])
    dropped = service.queue.dropped
    assert dropped >= 20  # 30 chunks in well under a second, 0.3 s per window
    status = listener.statuses["test-inference"]
    assert status.counters["dropped"] == dropped and status.counters["chunks"] == 30
    seqs = sorted(r.seq for r in listener.results)
    assert seqs[-3:] == [27, 28, 29]  # the newest survive, the oldest waiting ones went
    assert len(seqs) == len(set(seqs)) == 30 - dropped


@pytest.mark.allow_log_exceptions
async def test_a_failing_model_is_counted_and_the_service_goes_on(
    mqtt_settings: MqttSettings,
) -> None:
    class Flaky(FakeClassifier):
        def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
            out = super().scores(windows)
            if len(self.calls) == 1:
                out[:, 0] = np.nan
            return out

    async with service_and_listener(mqtt_settings, Flaky(), max_wait_ms=0, batch_size=1) as (
        service,
        _bus,
        listener,
        sensor,
    ):
        sensor.publish(chunk("yor", 0, tone(1000, 1.0)))
        await listener.until("failure", lambda: service.stats["failed"] == 1)
        # the retained status says so at once, with the reason, not just a counter
        await listener.until("degraded", lambda: state_of(listener) == "degraded")
        detail = listener.statuses["test-inference"].detail or ""
        assert "classification failed" in detail and "non-finite" in detail
        sensor.publish(chunk("yor", 1, tone(1000, 1.0)))
        await listener.until("result", lambda: len(listener.results) == 1)
        await listener.until("online again", lambda: state_of(listener) == "online")
    assert listener.results[0].seq == 1


def state_of(listener: Listener) -> str | None:
    status = listener.statuses.get("test-inference")
    return None if status is None else status.state
