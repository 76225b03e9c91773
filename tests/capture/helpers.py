"""Helpers for capture tests: the stand-in arecord, a running capture, a broker listener."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.capture.app import capture, make_bus, make_source
from services.capture.settings import CaptureSettings
from shared.messages import AudioChunk, GapReport, Status
from shared.mqtt import Incoming, MqttBus, Subscription
from shared.settings import MqttSettings
from tests.support.bus import running

FAKE_ARECORD = Path(__file__).with_name("fake_arecord.py")


def fake_arecord(*options: str) -> str:
    """The `arecord` setting that runs the stand-in with the given fault options."""
    return shlex.join([sys.executable, str(FAKE_ARECORD), *options])


def ramp_values(chunk: AudioChunk) -> list[int]:
    """The stand-in's frame counters carried by a chunk (first channel), unwrapped mod 2^16."""
    data = memoryview(chunk.pcm).cast("h")
    return [(v + 65536) % 65536 for v in data[:: chunk.channels]]


@dataclass
class Listener:
    """Everything the broker delivers for one device: audio chunks and statuses, in order."""

    mqtt: MqttSettings
    device: str
    chunks: list[AudioChunk] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    gaps: list[GapReport] = field(default_factory=list)
    raw_audio: list[bytes] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, msg: Incoming) -> None:
        prefix = self.mqtt.topic_prefix
        if msg.topic.endswith("/audio"):
            self.raw_audio.append(msg.payload)
            self.chunks.append(AudioChunk.from_mqtt(prefix, msg.topic, msg.payload))
        elif msg.topic.endswith("/gaps"):
            self.gaps.append(GapReport.from_mqtt(prefix, msg.topic, msg.payload))
        else:
            self.statuses.append(Status.from_mqtt(prefix, msg.topic, msg.payload))
        self._changed.set()

    async def wait(self, what: Callable[[Listener], Any], limit_s: float = 10.0) -> Any:
        """Wait until `what(self)` is truthy; return it."""
        async with asyncio.timeout(limit_s):
            while not (found := what(self)):
                self._changed.clear()
                await self._changed.wait()
        return found

    def capture_status(self, state: str | None = None) -> list[Status]:
        """Statuses published by capture (optionally only those in `state`)."""
        return [
            s
            for s in self.statuses
            if s.service == "capture" and (state is None or s.state == state)
        ]


@contextlib.asynccontextmanager
async def listening(mqtt: MqttSettings, device: str) -> AsyncIterator[Listener]:
    """A subscriber to one device's audio and status topics, connected before yielding."""
    listener = Listener(mqtt, device)
    prefix = mqtt.topic_prefix
    bus = MqttBus(
        mqtt,
        node=f"listener-{device}",
        service="test",
        handler=listener.handle,
        subscriptions=[
            Subscription(AudioChunk.subscription(prefix, device), 0),
            Subscription(Status.subscription(prefix, device), 1),
            Subscription(GapReport.subscription(prefix, device), 1),
        ],
    )
    async with running(bus):
        yield listener


@contextlib.asynccontextmanager
async def capturing(settings: CaptureSettings, mqtt: MqttSettings) -> AsyncIterator[MqttBus]:
    """The capture service running in this event loop until the block ends."""
    bus = make_bus(settings, mqtt)
    source = make_source(settings, bus.set_health)
    bus_task = asyncio.create_task(bus.run())
    work = asyncio.create_task(capture(settings, bus, source))
    try:
        async with asyncio.timeout(10):
            await bus.connected.wait()
        yield bus
        if work.done():
            work.result()  # raise what made it stop
    finally:
        for task in (work, bus_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
