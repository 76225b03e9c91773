"""The levels service on the real broker: levels equal maad's, summaries, indices, events, and
hostile payloads rejected, counted and survived."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
from maad.spl import wav2dBSPL
from maad.util import mean_dB

from services.levels.app import LevelsService
from services.levels.core import LevelsCore
from services.levels.indices import compute
from services.levels.settings import LevelsSettings
from shared.devices import DeviceRegistry
from shared.messages import (
    AudioChunk,
    IndicesResult,
    LabelScore,
    LabelsResult,
    LevelsResult,
    LevelsSummary,
    NoiseEvent,
    Status,
)
from shared.mqtt import Incoming, MqttBus, Outgoing, Subscription
from shared.settings import MqttSettings
from tests.support.audio import tone, white_noise

pytestmark = pytest.mark.integration
T0 = 1_764_399_960.0  # a multiple of 60 (and of 2)
RATE = 16000


class Reader:
    """Collects what arrives on the result and status topics."""

    def __init__(self, settings: MqttSettings) -> None:
        self.got: list[Incoming] = []
        self.changed = asyncio.Event()
        prefix = settings.topic_prefix
        subs = [
            Subscription(cls.subscription(prefix), 1)
            for cls in (LevelsResult, LevelsSummary, IndicesResult, NoiseEvent, Status)
        ]
        self.bus = MqttBus(settings, "reader", "test", subscriptions=subs, handler=self.handle)
        self.prefix = prefix

    async def handle(self, msg: Incoming) -> None:
        self.got.append(msg)
        self.changed.set()

    def of(
        self,
        cls: type[LevelsResult]
        | type[LevelsSummary]
        | type[IndicesResult]
        | type[NoiseEvent]
        | type[Status],
    ) -> list:  # type: ignore[type-arg]
        return [
            cls.from_mqtt(self.prefix, m.topic, m.payload, m.content_type)
            for m in self.got
            if m.topic.endswith("/" + cls.LEAF)
        ]

    async def wait_for(self, predicate: object, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(*buses: MqttBus) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(b.run()) for b in buses]
    try:
        async with asyncio.timeout(10):
            for b in buses:
                await b.connected.wait()
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


@contextlib.asynccontextmanager
async def service(
    mqtt: MqttSettings, registry: DeviceRegistry, **over: float
) -> AsyncIterator[LevelsService]:
    settings = LevelsSettings(node_id="levels-test", **over)  # type: ignore[arg-type]
    svc = LevelsService(settings, mqtt, registry)
    task = asyncio.create_task(svc.run())
    try:
        async with asyncio.timeout(10):
            await svc.bus.connected.wait()
        yield svc
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def chunks(device: str, loud: list[bool]) -> list[AudioChunk]:
    out = []
    for seq, is_loud in enumerate(loud):
        x = tone(1000, 1.0, RATE, 0.5 if is_loud else 0.005) + white_noise(
            1.0, RATE, rms=0.002, seed=seq
        )
        out.append(AudioChunk.from_float(device, seq, T0 + seq, RATE, x))
    return out


async def test_levels_summaries_indices_and_events_over_the_broker(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    (tmp_path / "devices.toml").write_text(
        '[[device]]\nid = "yor"\nnoise_threshold_db = 60\n'
        "[device.calibration]\ngain_db = 20\nsensitivity_dbv = -20\nvadc = 1.25\n"
    )
    registry = DeviceRegistry.load(tmp_path / "devices.toml")
    reader = Reader(mqtt_settings)
    writer = MqttBus(mqtt_settings, "yor", "test")
    audio = chunks("yor", [True, True, True, False, False, False])
    async with (
        running(reader.bus, writer),
        service(
            mqtt_settings,
            registry,
            summary_seconds=2,
            indices_seconds=2,
            event_min_seconds=2,
            event_labels_wait=0.5,
        ) as svc,
    ):
        for ch in audio[:4]:  # what inference heard while it was loud
            writer.publish(
                LabelsResult(
                    device="yor",
                    seq=ch.seq,
                    start=ch.start,
                    duration=1.0,
                    model="tiny",
                    labels=[LabelScore(label="Bus", score=0.8)],
                )
            )
        await writer.drained(5)
        for ch in audio:
            writer.publish(ch)
        await reader.wait_for(
            lambda: (
                len(reader.of(LevelsResult)) == 6
                and len(reader.of(LevelsSummary)) >= 2
                and len(reader.of(IndicesResult)) >= 2
                and len(reader.of(NoiseEvent)) == 1
            )
        )
        assert svc.stats["rejected"] == 0

    cal = registry.calibration("yor")[0]
    levels = sorted(reader.of(LevelsResult), key=lambda lv: lv.seq)
    for ch, lv in zip(audio, levels, strict=True):
        with np.errstate(divide="ignore"):
            expected = float(mean_dB(wav2dBSPL(ch.mono(), gain=20, sensitivity=-20, Vadc=1.25)))
        assert lv.leq_db == pytest.approx(expected, abs=0.01)
        assert (lv.start, lv.duration, lv.uncalibrated, lv.calibration) == (
            ch.start,
            1.0,
            False,
            cal,
        )
        assert lv.bands and lv.laeq_db is not None
    summaries = sorted(reader.of(LevelsSummary), key=lambda s: s.start)
    assert [s.start for s in summaries[:2]] == [T0, T0 + 2]
    assert summaries[0].coverage == pytest.approx(1.0)
    assert summaries[0].laeq_db == pytest.approx(levels[0].laeq_db, abs=0.5)
    indices = sorted(reader.of(IndicesResult), key=lambda r: r.start)
    assert indices[0].start == T0 and indices[0].duration == 2.0 and indices[0].hf is not None
    assert indices[0].coverage == pytest.approx(1.0)
    (event,) = reader.of(NoiseEvent)
    assert (event.start, event.duration, event.threshold_db) == (T0, 3.0, 60.0)
    assert [c.label for c in event.classes] == ["Bus"]
    assert event.lamax_db >= event.laeq_db > 60


def hostile(prefix: str) -> list[tuple[str, bytes]]:
    audio = AudioChunk.topic_for(prefix, "yor")
    labels = LabelsResult.topic_for(prefix, "yor")
    good = chunks("yor", [True])[0].model_dump()
    return [
        (audio, b"\xc1 not msgpack"),
        (audio, msgpack.packb([1, 2, 3])),
        (audio, chunks("yor", [True])[0].encode()[:-100]),  # truncated
        (audio, msgpack.packb({**good, "pcm": b"\x00" * 3})),  # PCM length vs format
        (audio, msgpack.packb({**good, "device": "other"})),  # device not the topic's
        (audio, msgpack.packb({**good, "v": 99})),
        (audio, msgpack.packb({**good, "rate": 10**9})),
        (audio, msgpack.packb({**good, "extra": 1})),
        (audio, msgpack.packb({**good, "pcm": b"\x00\x00" * RATE * 20})),  # 20 s > 10 s limit
        (
            labels,
            msgpack.packb(
                {
                    "v": 1,
                    "device": "yor",
                    "seq": 0,
                    "start": float("nan"),
                    "duration": 1.0,
                    "model": "m",
                    "labels": [],
                }
            ),
        ),
        (labels, b""),
    ]


async def test_hostile_payloads_are_rejected_counted_and_survived(
    mqtt_settings: MqttSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = mqtt_settings.model_copy(update={"status_interval": 0.3})
    prefix = settings.topic_prefix
    reader = Reader(settings)
    writer = MqttBus(settings, "yor", "test")
    bad = hostile(prefix)
    async with running(reader.bus, writer), service(settings, DeviceRegistry()) as svc:
        for topic, payload in bad:
            writer.publish_raw(Outgoing(topic, payload, 0 if topic.endswith("/audio") else 1))
        writer.publish(chunks("yor", [True])[0])
        await reader.wait_for(lambda: len(reader.of(LevelsResult)) == 1)
        await reader.wait_for(
            lambda: any(
                s.device == "levels-test" and s.counters.get("rejected") == len(bad)
                for s in reader.of(Status)
            )
        )
        assert svc.stats["rejected"] == len(bad) and svc.stats["chunks"] == 1
    reasons = [r.getMessage() for r in caplog.records if "rejected message on" in r.getMessage()]
    assert len(reasons) == len(bad)
    assert any("does not match topic" in r for r in reasons)
    assert any("PCM length" in r for r in reasons)
    assert any("max_chunk_seconds" in r for r in reasons)
    assert all(prefix in r for r in reasons)  # each names its topic


async def test_the_command_runs_and_stops_cleanly(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    prefix = mqtt_settings.topic_prefix
    reader = Reader(mqtt_settings)
    writer = MqttBus(mqtt_settings, "yor", "test")
    env = {
        **os.environ,
        "SOUNDSCAPE_MQTT_PORT": str(mqtt_settings.port),
        "SOUNDSCAPE_MQTT_TOPIC_PREFIX": prefix,
        "SOUNDSCAPE_LEVELS_NODE_ID": "levels-cli",
    }
    log = tmp_path / "levels.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.levels",
            "--summary-seconds",
            "30",
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        async with running(reader.bus, writer):
            await reader.wait_for(
                lambda: any(
                    s.device == "levels-cli" and s.state == "online" for s in reader.of(Status)
                ),
                within=20,
            )
            writer.publish(chunks("yor", [True])[0])
            await reader.wait_for(lambda: len(reader.of(LevelsResult)) == 1)
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                rc = await proc.wait()
            await reader.wait_for(
                lambda: any(
                    s.device == "levels-cli" and s.state == "offline" for s in reader.of(Status)
                )
            )
        assert rc == 0
        # The open interval was published on the way out, with the coverage it had.
        (summary,) = reader.of(LevelsSummary)
        assert summary.start == T0 and summary.coverage == pytest.approx(1 / 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text


async def test_the_measurement_queue_is_bounded_in_bytes_too(mqtt_settings: MqttSettings) -> None:
    """Large chunks (48 kHz, 2 channels, S32_LE: 384 kB a second) fill the byte budget long
    before `queue_size` chunks; what is over it is dropped and counted, not held in memory."""
    settings = LevelsSettings(node_id="levels-test", queue_size=600, queue_megabytes=1.0)
    svc = LevelsService(settings, mqtt_settings, DeviceRegistry())
    big = AudioChunk(
        device="yor", seq=0, start=T0, rate=48000, width=4, channels=2, pcm=b"\x00" * 384_000
    )
    for _ in range(5):
        svc._enqueue(big)
    assert svc.chunks.qsize() == 2 and svc.stats["dropped"] == 3
    assert svc.queued_bytes == 2 * 384_000
    # A single chunk over the whole budget is still measured when nothing else waits.
    lone = LevelsService(
        LevelsSettings(node_id="levels-test", queue_megabytes=0.1), mqtt_settings, DeviceRegistry()
    )
    lone._enqueue(big)
    assert lone.chunks.qsize() == 1 and lone.stats["dropped"] == 0


async def test_repeated_late_and_restarted_chunks_over_the_broker(
    mqtt_settings: MqttSettings,
) -> None:
    """Every chunk published twice gives one LevelsResult each and the summaries and indices of a
    single delivery; a late chunk gives its levels only; a capture restart (seq back to 0, later
    start) is measured like any chunk after a gap."""
    audio = chunks("yor", [True, False, True, False, True])
    restart = [
        AudioChunk.from_float("yor", seq, T0 + 10 + seq, RATE, tone(700, 1.0, RATE, 0.2))
        for seq in range(2)
    ]
    late = AudioChunk.from_float("yor", 3, T0 + 9, RATE, tone(700, 1.0, RATE, 0.2))
    over = {"summary_seconds": 2.0, "indices_seconds": 2.0, "indices_min_coverage": 0.5}
    reference = LevelsCore(DeviceRegistry(), **over)  # type: ignore[arg-type]
    want_summaries: list[LevelsSummary] = []
    want_jobs = []
    for ch in audio + restart:
        out = reference.process(ch)
        want_summaries.extend(out.summaries)
        want_jobs.extend(out.jobs)
    want_indices = [r for r in map(compute, want_jobs) if r is not None]
    assert [s.start for s in want_summaries] == [T0, T0 + 2, T0 + 4]
    assert [r.start for r in want_indices] == [T0, T0 + 2, T0 + 4]

    reader = Reader(mqtt_settings)
    writer = MqttBus(mqtt_settings, "yor", "test")
    async with running(reader.bus, writer), service(mqtt_settings, DeviceRegistry(), **over) as svc:
        for ch in audio:
            writer.publish(ch)
            writer.publish(ch)
        for ch in [restart[0], late, restart[1], restart[0]]:
            writer.publish(ch)
        await reader.wait_for(
            lambda: (
                svc.stats["duplicates"] == 6
                and svc.stats["late_chunks"] == 1
                and len(reader.of(LevelsResult)) == 8
                and len(reader.of(LevelsSummary)) == 3
                and len(reader.of(IndicesResult)) == 3
            ),
            within=20,
        )
        assert svc.stats["chunks"] == svc.stats["levels"] == 8
        assert svc.stats["rejected"] == 0
    levels = reader.of(LevelsResult)
    keys = sorted((lv.start, lv.seq) for lv in levels)
    assert keys == sorted([(ch.start, ch.seq) for ch in audio + restart] + [(T0 + 9, 3)])
    got_summaries = sorted(reader.of(LevelsSummary), key=lambda s: s.start)
    # Measured in batches as they arrived: the same to rounding (tests/levels/test_batch.py).
    assert [s.model_dump() for s in got_summaries[:3]] == [
        pytest.approx(s.model_dump(), abs=1e-9) for s in want_summaries
    ]
    assert all(s.start < T0 + 10 for s in got_summaries[:3])
    got_indices = sorted(reader.of(IndicesResult), key=lambda r: r.start)
    assert got_indices[:3] == want_indices
