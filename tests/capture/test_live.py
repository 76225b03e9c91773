"""Live capture through the stand-in arecord on the real broker: gapless chunks, gap
accounting after a stall, recovery after the process dies, hangs or the device vanishes."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from services.capture.settings import CaptureSettings
from shared.messages import AudioChunk
from shared.settings import MqttSettings
from tests.capture.fake_arecord import DEFAULT_LISTING
from tests.capture.helpers import Listener, capturing, fake_arecord, listening, ramp_values

pytestmark = pytest.mark.integration
RATE = 16000


def settings(arecord: str, **more: object) -> CaptureSettings:
    values: dict[str, object] = {
        "device_id": "yor",
        "arecord": arecord,
        "chunk_seconds": 0.25,
        "retry_min": 0.2,
        "retry_max": 0.5,
        **more,
    }
    return CaptureSettings(**values)  # type: ignore[arg-type]


def assert_contiguous(chunks: list[AudioChunk]) -> None:
    """Sequence numbers, sample values and start times continue exactly from chunk to chunk."""
    for a, b in itertools.pairwise(chunks):
        assert b.seq == a.seq + 1
        assert ramp_values(b)[0] == (ramp_values(a)[-1] + 1) % 65536
        assert b.start == pytest.approx(a.end, abs=1e-6)


def counter(listener: Listener, name: str) -> int:
    statuses = listener.capture_status()
    return statuses[-1].counters.get(name, 0) if statuses else 0


async def test_one_long_running_arecord_gives_exact_contiguous_chunks(
    mqtt_settings: MqttSettings,
) -> None:
    began = time.time()
    async with (
        listening(mqtt_settings, "yor") as got,
        capturing(settings(fake_arecord()), mqtt_settings),
    ):
        await got.wait(lambda g: len(g.chunks) >= 6)
    chunks = got.chunks[:6]  # a shorter last one may follow: flushed when capture stops
    assert [c.seq for c in chunks] == list(range(6))
    assert all(c.samples == RATE // 4 and c.rate == RATE and c.channels == 1 for c in chunks)
    assert ramp_values(chunks[0])[0] == 0  # the first sample arecord wrote
    assert_contiguous(chunks)
    # the sample clock is anchored to wall time at the first read
    assert began - 0.2 < chunks[0].start < began + 10.0  # (starting arecord takes a while)
    online = got.capture_status("online")
    assert online and online[0].device == "yor"


async def test_a_stall_is_published_as_a_counted_gap(mqtt_settings: MqttSettings) -> None:
    arecord = fake_arecord("--stall-after", "0.6", "--stall-for", "0.8")
    async with (
        listening(mqtt_settings, "yor") as got,
        capturing(settings(arecord, stall_timeout=3.0), mqtt_settings),
    ):
        status = await got.wait(lambda g: [s for s in g.capture_status() if s.counters.get("gaps")])
        first_after = len(got.chunks)
        await got.wait(lambda g: len(g.chunks) >= first_after + 3)
    gap = status[0]
    assert gap.state == "online" and gap.detail and "gap before" in gap.detail
    assert gap.counters["gaps"] == 1
    chunks = got.chunks
    jumps = [
        (a, b)
        for a, b in itertools.pairwise(chunks)
        if ramp_values(b)[0] != (ramp_values(a)[-1] + 1) % 65536
    ]
    assert len(jumps) == 1  # exactly one place where samples are missing
    before, after = jumps[0]
    truly_lost = ramp_values(after)[0] - ramp_values(before)[-1] - 1
    assert truly_lost >= 0.75 * RATE  # the stand-in's stall (longer on a loaded machine)
    # measured from the clocks, within a read period or two of the truth
    assert gap.counters["samples_lost"] == pytest.approx(truly_lost, abs=0.2 * RATE)
    # the chunk before the gap is cut short; times after it stay true to the sample clock
    assert before.samples <= RATE // 4 and after.seq == before.seq + 1
    assert after.start - before.end == pytest.approx(truly_lost / RATE, abs=0.2)
    assert_contiguous(chunks[after.seq :])
    assert_contiguous(chunks[: before.seq + 1])


async def test_recovers_by_itself_after_arecord_is_killed(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    arecord = fake_arecord("--kill-after", "0.6", "--once", str(tmp_path / "killed"))
    async with listening(mqtt_settings, "yor") as got, capturing(settings(arecord), mqtt_settings):
        degraded = await got.wait(lambda g: g.capture_status("degraded"))
        n = len(got.chunks)
        await got.wait(
            lambda g: (
                len(g.chunks) >= n + 3 and g.capture_status("online")[-1].time > degraded[0].time
            )
        )
        await got.wait(lambda g: counter(g, "restarts") >= 1 and counter(g, "gaps") >= 1)
    assert "arecord exited with code -9" in (degraded[0].detail or "")
    assert counter(got, "restarts") == 1
    chunks = got.chunks
    assert [c.seq for c in chunks] == list(range(len(chunks)))  # seq goes on across restarts
    restarted = next(c for c in chunks if ramp_values(c)[0] == 0 and c.seq > 0)
    assert restarted.start > chunks[restarted.seq - 1].end  # the gap shows on the timeline
    assert_contiguous(chunks[restarted.seq :])


async def test_a_hung_arecord_is_restarted(mqtt_settings: MqttSettings, tmp_path: Path) -> None:
    arecord = fake_arecord("--freeze-after", "0.5", "--once", str(tmp_path / "froze"))
    async with (
        listening(mqtt_settings, "yor") as got,
        capturing(settings(arecord, stall_timeout=0.6), mqtt_settings),
    ):
        degraded = await got.wait(lambda g: g.capture_status("degraded"))
        n = len(got.chunks)
        await got.wait(lambda g: len(g.chunks) >= n + 2)
    assert "arecord sent no audio for 0.6 s" in (degraded[0].detail or "")
    assert degraded[0].counters["stalls"] == 1


async def test_an_arecord_that_closes_its_output_but_never_exits_is_killed(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    # a USB driver stuck in close: stdout ends, the process lives on and ignores SIGTERM
    arecord = fake_arecord("--wedge-after", "0.5", "--once", str(tmp_path / "wedged"))
    async with (
        listening(mqtt_settings, "yor") as got,
        capturing(settings(arecord, stop_timeout=0.5), mqtt_settings),
    ):
        degraded = await got.wait(lambda g: g.capture_status("degraded"), limit_s=30)
        n = len(got.chunks)
        await got.wait(
            lambda g: (
                len(g.chunks) >= n + 3 and g.capture_status("online")[-1].time > degraded[0].time
            ),
            limit_s=30,
        )
    detail = degraded[0].detail or ""
    assert "arecord closed its audio output but did not exit within 0.5 s" in detail
    assert "SIGKILL" in detail and "Input/output error" in detail
    assert degraded[0].counters["kills"] == 1
    assert counter(got, "restarts") == 1
    restarted = next(c for c in got.chunks if ramp_values(c)[0] == 0 and c.seq > 0)
    assert_contiguous(got.chunks[restarted.seq :])


async def test_device_unplugged_then_back_on_another_card(
    mqtt_settings: MqttSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = tmp_path / "arecord-l.txt"
    listing.write_text(DEFAULT_LISTING)
    monkeypatch.setenv("FAKE_ARECORD_LIST", str(listing))
    async with (
        listening(mqtt_settings, "yor") as got,
        capturing(settings(fake_arecord()), mqtt_settings),
    ):
        await got.wait(lambda g: len(g.chunks) >= 2)
        unplugged = "\n".join(ln for ln in DEFAULT_LISTING.splitlines() if "card 1:" not in ln)
        listing.write_text(unplugged + "\n")
        missing = await got.wait(
            lambda g: [
                s for s in g.capture_status("degraded") if "no capture device" in (s.detail or "")
            ]
        )
        n = len(got.chunks)
        listing.write_text(DEFAULT_LISTING.replace("card 1: AudioMoth", "card 4: AudioMoth"))
        await got.wait(lambda g: len(g.chunks) >= n + 2)
    detail = missing[0].detail or ""
    assert "no capture device matches 'AudioMoth'" in detail and "CARD=PCH" in detail
    exited = [s for s in got.capture_status("degraded") if "exited" in (s.detail or "")]
    assert exited and "No such device" in (exited[0].detail or "")
    assert got.capture_status()[-1].state == "online"
