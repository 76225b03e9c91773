"""Capture publishes what it lost as GapReports: lost samples, arecord restarts, stalls."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.capture.app import make_bus, open_outbox
from services.capture.core import CapturePipeline, LiveBlock, SourceStopped
from services.capture.settings import CaptureSettings
from shared.messages import AudioChunk, GapReport
from shared.settings import MqttSettings
from tests.capture.helpers import capturing, fake_arecord, listening
from tests.support.bus import running
from tests.support.servers import free_port

RATE = 16000
WALL = 1_764_399_960.0
BLOCK = RATE // 10  # 0.1 s blocks


def block(mono: float) -> LiveBlock:
    return LiveBlock(b"\0\0" * BLOCK, mono, WALL + mono)


def run(pipeline: CapturePipeline, monos: list[float]) -> None:
    for mono in monos:
        pipeline.handle(block(mono))


def test_lost_samples_are_one_report_with_the_interval_and_count() -> None:
    p = CapturePipeline("yor", RATE)
    run(p, [0.1 * i for i in range(1, 11)])  # 1 s of audio, in time
    assert p.take_gaps() == []
    run(p, [2.1])  # 1 s of samples never came (an xrun)
    (gap,) = p.take_gaps()
    assert isinstance(gap, GapReport)
    assert (gap.device, gap.node, gap.cause) == ("yor", "yor", "capture_lost_samples")
    assert gap.count == RATE == p.counters["samples_lost"]
    assert gap.end - gap.start == pytest.approx(1.0)
    assert gap.end == pytest.approx(WALL + 2.0)  # the block after the loss starts there
    assert p.take_gaps() == []  # taken once


@pytest.mark.parametrize(
    ("stalled", "cause"), [(False, "capture_restart"), (True, "capture_stall")]
)
def test_a_source_restart_is_reported_with_its_cause(stalled: bool, cause: str) -> None:
    p = CapturePipeline("yor", RATE)
    run(p, [0.1 * i for i in range(1, 11)])
    p.handle(SourceStopped("arecord stopped", stalled=stalled))
    run(p, [4.1, 4.2])  # restarted 3 s later
    (gap,) = p.take_gaps()
    assert gap.cause == cause
    assert gap.start == pytest.approx(WALL + 1.0, abs=0.01)
    assert gap.end == pytest.approx(WALL + 4.0, abs=0.01)
    assert gap.count == pytest.approx(3 * RATE, abs=RATE // 100)


def test_a_clock_resync_is_not_a_gap() -> None:
    p = CapturePipeline("yor", RATE)
    run(p, [0.1 * i for i in range(1, 11)])
    p.handle(LiveBlock(b"\0\0" * BLOCK, 1.1, WALL + 1.1 + 5.0))  # NTP stepped the wall clock
    assert p.take_gaps() == [] and p.counters["resyncs"] == 1


@pytest.mark.integration
async def test_a_hung_arecord_is_published_as_a_capture_stall_gap(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    arecord = fake_arecord("--freeze-after", "0.5", "--once", str(tmp_path / "froze"))
    settings = CaptureSettings(
        device_id="yor", arecord=arecord, chunk_seconds=0.25, retry_min=0.2, retry_max=0.5,
        stall_timeout=0.6,
    )  # fmt: skip
    async with listening(mqtt_settings, "yor") as got, capturing(settings, mqtt_settings):
        await got.wait(lambda g: g.gaps and g.chunks[-1].start >= g.gaps[0].end - 1e-6)
    (gap,) = got.gaps
    after = next(c for c in got.chunks if c.start >= gap.end - 1e-6)
    assert (gap.cause, gap.node, gap.device) == ("capture_stall", "yor", "yor")
    # from where the audio before the stall ended to where the restarted arecord's began
    before = max((c for c in got.chunks if c.seq < after.seq), key=lambda c: c.seq)
    assert gap.start == pytest.approx(before.end, abs=0.3)
    assert gap.end == pytest.approx(after.start, abs=1e-6)
    assert gap.count == pytest.approx((gap.end - gap.start) * RATE, abs=2)


@pytest.mark.integration
async def test_a_gap_report_outlives_a_restart_while_the_broker_is_away(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    """Gap reports wait on disk (audio never does): one published while no broker answers,
    by a capture that then stops, is sent by the next start, once."""
    settings = CaptureSettings(device_id="yor", state_dir=tmp_path / "state")
    away = mqtt_settings.model_copy(update={"port": free_port()})  # nothing listens there
    gap = GapReport(
        device="yor", start=1.77e9, end=1.77e9 + 2, cause="capture_restart", node="yor",
        count=32000,
    )  # fmt: skip
    pcm = bytes(range(256)) * 32
    outbox = open_outbox(settings)
    bus = make_bus(settings, away, outbox)
    bus.publish(gap)
    bus.publish(AudioChunk(device="yor", seq=0, start=1.77e9, rate=RATE, pcm=pcm))
    assert len(outbox) == 1 and bus.pending == 2  # the report on disk, the audio in memory
    outbox.close()  # stopped before any broker answered: the audio is gone, the report not
    files = list((tmp_path / "state").iterdir())
    assert files and not any(pcm[:64] in f.read_bytes() for f in files)

    again = open_outbox(settings)
    assert len(again) == 1
    restarted = make_bus(settings, mqtt_settings, again)
    async with listening(mqtt_settings, "yor") as got, running(restarted):
        await got.wait(lambda g: g.gaps)
        assert await restarted.drained(10)  # acknowledged: gone from the disk
    assert got.gaps == [gap] and got.chunks == []
    assert len(again) == 0
    again.close()
