"""The sample clock: gaps from lost samples, drift, wall clock steps, restarts."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from services.capture.clock import SampleClock
from services.capture.core import CapturePipeline, LiveBlock, SourceStopped
from shared.messages import AudioChunk

T0 = 1_764_400_000.0
RATE = 16000
PERIOD = 2000  # frames per read: 125 ms, arecord's default period


def test_jitter_within_tolerance_is_not_a_gap() -> None:
    clock = SampleClock(RATE, tolerance=0.25)
    rng = np.random.default_rng(1)
    for i in range(1, 400):
        late = rng.uniform(0, 0.12)  # scheduling latency
        check = clock.advance(PERIOD, 5.0 + i * PERIOD / RATE + late, T0 + i * PERIOD / RATE + late)
        assert not check.discontinuous, check
    assert clock.frames == 399 * PERIOD


def test_lost_samples_are_counted_and_keep_later_times_true() -> None:
    clock = SampleClock(RATE, tolerance=0.25)
    clock.advance(PERIOD, 1.0, T0 + 1.0)
    assert clock.time_of(0) == T0 + 1.0 - PERIOD / RATE
    clock.advance(PERIOD, 1.125, T0 + 1.125)
    # 0.8 s of audio lost (an xrun): the next block arrives 0.8 s later than its frames say
    check = clock.advance(PERIOD, 1.25 + 0.8, T0 + 1.25 + 0.8)
    assert check.lost_frames == round(0.8 * RATE)
    assert check.block_start == pytest.approx(T0 + 1.125 + 0.8)
    assert clock.next_time() == pytest.approx(T0 + 1.25 + 0.8)
    assert not clock.advance(PERIOD, 2.175, T0 + 2.175).discontinuous


def test_slow_drift_resyncs_without_a_gap() -> None:
    clock = SampleClock(RATE, tolerance=0.25, drift_limit=0.5)
    ppm = 500e-6  # a sample clock 500 ppm slow: 0.5 s behind after ~17 minutes
    shifts = []
    for i in range(1, 20000):
        t = i * PERIOD / RATE * (1 + ppm)
        check = clock.advance(PERIOD, t, T0 + t)
        assert check.lost_frames == 0
        if check.shift:
            shifts.append(check.shift)
    assert shifts and all(0.5 < s < 0.6 for s in shifts)
    assert clock.next_time() == pytest.approx(T0 + 19999 * PERIOD / RATE * (1 + ppm), abs=0.6)


def test_a_wall_clock_step_moves_the_timeline_without_a_gap() -> None:
    clock = SampleClock(RATE)
    clock.advance(PERIOD, 1.0, T0)
    check = clock.advance(PERIOD, 1.125, T0 + 3600.125)  # NTP set the clock an hour later
    assert check.lost_frames == 0 and check.shift == pytest.approx(3600.0)
    assert check.block_start == pytest.approx(T0 + 3600.0)


def test_restart_re_anchors_and_measures_the_gap() -> None:
    clock = SampleClock(RATE)
    clock.advance(PERIOD, 10.0, T0 + 10.0)
    clock.advance(PERIOD, 10.125, T0 + 10.125)
    clock.stop()
    check = clock.advance(PERIOD, 13.125, T0 + 13.125)  # restarted 3 s later
    assert check.restarted and check.lost_frames == round(2.875 * RATE)
    assert check.block_start == pytest.approx(T0 + 13.0)


def live(pipe: CapturePipeline, pcm: bytes, t: float) -> list[AudioChunk]:
    return pipe.handle(LiveBlock(pcm, 50.0 + t, T0 + t))


def test_pipeline_gap_flushes_the_chunk_and_counts_published_samples() -> None:
    pipe = CapturePipeline("yor", 16000, capture_rate=48000, chunk_seconds=0.5)
    sig = np.zeros(48000 * 3, "<i2").tobytes()
    out = live(pipe, sig[: 48000 * 2], 1.0)  # 1 s
    out += live(pipe, sig[: 48000 * 2], 2.0 + 1.5)  # 1.5 s lost before this second
    out += pipe.finish()
    assert pipe.counters["gaps"] == 1
    assert pipe.counters["samples_lost"] == pytest.approx(1.5 * 16000, abs=2)
    assert pipe.last_gap is not None and "1.500 s of samples lost" in pipe.last_gap
    assert [c.seq for c in out] == list(range(len(out)))
    starts = [round(c.start - T0, 3) for c in out]
    assert starts == [0.0, 0.5, 2.5, 3.0]
    assert sum(c.samples for c in out) == 32000


def test_pipeline_restart_counts_a_restart_and_a_gap() -> None:
    pipe = CapturePipeline("yor", 16000, chunk_seconds=1.0)
    pcm = bytes(2 * 24000)
    out = live(pipe, pcm, 1.5)
    out += pipe.handle(SourceStopped("arecord exited with code 1"))
    out += live(pipe, pcm, 5.0)
    assert [(c.seq, round(c.start - T0, 3), c.samples) for c in out] == [
        (0, 0.0, 16000),
        (1, 1.0, 8000),
        (2, 3.5, 16000),
    ]
    assert pipe.counters["restarts"] == 1 and pipe.counters["gaps"] == 1
    assert pipe.counters["samples_lost"] == 2 * 16000


@pytest.mark.parametrize(("in_rate", "channels"), [(192_000, 1), (48_000, 2), (8_000, 1)])
def test_streaming_resampling_has_no_seams(in_rate: int, channels: int) -> None:
    """Chunks resampled as a stream equal one resampling of the whole signal: no clicks."""
    n = in_rate * 2
    t = np.arange(n) / in_rate
    mono = 0.5 * np.sin(2 * np.pi * 997 * t) + 0.1 * np.sin(2 * np.pi * 3001 * t)
    sig = np.round(np.repeat(mono, channels).reshape(n, channels) * 32767).astype("<i2")
    pipe = CapturePipeline("yor", 16000, capture_rate=in_rate, channels=channels)
    pcm = sig.tobytes()
    rng = np.random.default_rng(3)
    out, pos = [], 0
    while pos < len(pcm):
        step = int(rng.integers(1, in_rate // 2))
        pos += step
        out += live(pipe, pcm[pos - step : pos], pos / (2 * channels) / in_rate)
    out += pipe.finish()
    got = np.frombuffer(b"".join(c.pcm for c in out), "<i2").reshape(-1, channels)
    whole = soxr.resample(sig, in_rate, 16000)
    assert got.shape == whole.shape == (32000, channels)
    assert np.abs(got.astype(int) - whole).max() <= 2
    assert [c.samples for c in out] == [16000, 16000]
    assert pipe.counters["gaps"] == 0


def test_chunks_without_a_true_time_are_dropped_and_counted() -> None:
    pipe = CapturePipeline("yor", 16000, chunk_seconds=0.5)
    pcm = bytes(2 * 16000)
    out = pipe.handle(LiveBlock(pcm, 1.0, 86_400.0))  # a Pi without RTC, before NTP: 1970
    assert out == [] and pipe.counters["bad_clock"] == 2 and pipe.counters["chunks"] == 0


def test_a_source_that_stops_before_its_first_audio_is_no_crash_when_resampling() -> None:
    """arecord at 48 kHz failing at once (device busy), then shutdown: nothing to flush."""
    pipe = CapturePipeline("yor", 16000, capture_rate=48000)
    assert pipe.handle(SourceStopped("arecord exited with code 1")) == []
    assert pipe.finish() == []
    out = live(pipe, bytes(2 * 48000), 3.0)
    out += pipe.finish()
    assert sum(c.samples for c in out) == 16000 and pipe.counters["restarts"] == 1


def test_a_resync_flushes_the_resampler_so_times_stay_true() -> None:
    """The resampler holds back its filter delay (~60 ms at 192 kHz); at a timeline move
    that audio belongs before the cut, not at the start of the new segment."""
    pipe = CapturePipeline("yor", 16000, capture_rate=192_000, chunk_seconds=1.0)
    second = bytes(2 * 192_000)
    out = live(pipe, second, 1.0)  # the second [0, 1)
    out += pipe.handle(LiveBlock(second, 50.0 + 2.0, T0 + 3600 + 2.0))  # NTP: +1 h
    out += pipe.finish()
    assert pipe.counters["resyncs"] == 1 and pipe.counters["gaps"] == 0
    before = [c for c in out if c.start < T0 + 3600]
    after = [c for c in out if c.start >= T0 + 3600]
    assert sum(c.samples for c in before) == 16000  # all of the first second, no more
    assert [(round(c.start - T0, 6), c.samples) for c in after] == [(3601.0, 16000)]
