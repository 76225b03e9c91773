"""A chunk delivered twice is measured once; a late chunk is measured on its own and kept out of
the intervals, windows and events; a capture restart (seq back to 0, later start) is a gap."""

from __future__ import annotations

import numpy as np
import pytest

from services.levels.core import LATE_HORIZON, RECENT_KEYS, ChunkOutput, LevelsCore
from services.levels.indices import IndicesJob
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk, LevelsResult, LevelsSummary
from tests.support.audio import tone, white_noise

T0 = 1_764_399_960.0  # a multiple of 60
RATE = 16000


def stream(n: int, first_seq: int = 0, start: float = T0) -> list[AudioChunk]:
    """`n` contiguous 1 s chunks whose level changes from one to the next."""
    return [
        AudioChunk.from_float(
            "yor",
            first_seq + i,
            start + i,
            RATE,
            tone(500 + 100 * i, 1.0, RATE, 0.05 * (1 + i % 3)) + white_noise(1.0, RATE, 0.01, i),
        )
        for i in range(n)
    ]


def core() -> LevelsCore:
    return LevelsCore(DeviceRegistry(), summary_seconds=4, indices_seconds=4)


def deliver(
    core: LevelsCore, chunks: list[AudioChunk]
) -> tuple[list[ChunkOutput], list[LevelsSummary], list[IndicesJob], int]:
    """What the service does: drop a repeat, measure the rest, flush at the end."""
    outs: list[ChunkOutput] = []
    summaries: list[LevelsSummary] = []
    jobs: list[IndicesJob] = []
    repeats = 0
    for ch in chunks:
        if core.repeated(ch):
            repeats += 1
            continue
        out = core.process(ch)
        outs.append(out)
        summaries.extend(out.summaries)
        jobs.extend(out.jobs)
    for flushed in core.flush_all():
        summaries.extend(flushed.summaries)
        jobs.extend(flushed.jobs)
    return outs, summaries, jobs, repeats


def same_jobs(got: list[IndicesJob], want: list[IndicesJob]) -> None:
    assert [(j.start, j.seq, j.rate, len(j.samples)) for j in got] == [
        (j.start, j.seq, j.rate, len(j.samples)) for j in want
    ]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.samples, w.samples)


def levels(outs: list[ChunkOutput]) -> list[LevelsResult]:
    return [o.levels for o in outs]


def test_a_chunk_delivered_twice_is_measured_once() -> None:
    chunks = stream(10)
    once = deliver(core(), chunks)
    twice = deliver(core(), [c for ch in chunks for c in (ch, ch)])  # each right after itself
    late_copies = deliver(core(), chunks[:6] + chunks[2:4] + chunks[6:] + chunks[8:])
    for outs, summaries, jobs, _repeats in (twice, late_copies):
        assert levels(outs) == levels(once[0])
        assert summaries == once[1] and [s.coverage for s in summaries] == [1.0, 1.0, 0.5]
        same_jobs(jobs, once[2])
        assert not any(o.late for o in outs)
    assert (once[3], twice[3], late_copies[3]) == (0, 10, 4)


def test_a_repeat_that_reaches_process_anyway_stays_out_of_the_intervals() -> None:
    """`process` alone never measures a chunk into the stream twice: a repeat is late."""
    chunks = stream(6)
    ref = core()
    want = [s for ch in chunks for s in ref.process(ch).summaries]
    c = core()
    got: list[LevelsSummary] = []
    for ch in chunks:
        got.extend(c.process(ch).summaries)
        again = c.process(ch)
        assert again.late and not again.summaries and not again.jobs
        assert again.levels.seq == ch.seq
    assert got == want


def test_a_late_chunk_is_measured_but_kept_out_of_intervals_and_windows() -> None:
    chunks = stream(10)
    order = [*chunks[:2], chunks[3], chunks[2], *chunks[4:]]  # seq 2 arrives after seq 3
    outs, summaries, jobs, repeats = deliver(core(), order)
    without = deliver(core(), chunks[:2] + chunks[3:])
    assert repeats == 0 and [o.late for o in outs] == [i == 3 for i in range(10)]
    late = outs[3]
    assert late.levels.seq == 2 and not late.continuous and not late.summaries and not late.jobs
    # Measured on its own, from fresh filters: the level of its own audio.
    alone = LevelsCore(DeviceRegistry()).process(chunks[2]).levels
    assert late.levels == alone
    # The intervals and windows are those of the stream without it: no interval re-opened,
    # none closed early, no audio out of place.
    assert summaries == without[1] and [s.start for s in summaries] == [T0, T0 + 4, T0 + 8]
    assert summaries[0].coverage == 0.75
    same_jobs(jobs, without[2])
    # The chunk after the late one is continuous with the stream.
    assert outs[4].continuous and outs[4].levels == without[0][3].levels


def test_a_capture_restart_is_a_new_stream_not_a_repeat() -> None:
    first, restarted = stream(5), stream(5, start=T0 + 8)  # seq 0..4 again, 3 s later
    outs, summaries, jobs, repeats = deliver(core(), first + restarted)
    assert repeats == 0 and not any(o.late for o in outs) and len(outs) == 10
    assert [o.continuous for o in outs] == [False, True, True, True, True] * 2
    assert [(s.start, s.coverage) for s in summaries] == [
        (T0, 1.0),
        (T0 + 4, 0.25),
        (T0 + 8, 1.0),
        (T0 + 12, 0.25),
    ]
    assert [j.start for j in jobs] == [T0, T0 + 8]


def test_a_stream_far_behind_is_a_new_stream_not_late_forever() -> None:
    """A capture restarted with its clock stepped back by more than LATE_HORIZON must not be
    kept out of the intervals for as long as it runs."""
    c = core()
    deliver_now = [c.process(ch) for ch in stream(3, start=T0 + LATE_HORIZON + 60)]
    back = [c.process(ch) for ch in stream(5)]
    assert not any(o.late for o in deliver_now + back)
    assert [o.continuous for o in back] == [False, True, True, True, True]
    assert [s.start for o in back for s in o.summaries] == [T0 + LATE_HORIZON + 60, T0]


def test_the_memory_of_keys_is_bounded() -> None:
    c = core()
    chunks = stream(RECENT_KEYS + 10)
    for ch in chunks:
        c.process(ch)
    assert not c.repeated(chunks[9]) and c.repeated(chunks[10]) and c.repeated(chunks[-1])
    assert len(c._devices["yor"].recent) == RECENT_KEYS
    # Forgotten with the device when it goes idle.
    c.flush_all()
    assert not c.repeated(chunks[-1])


@pytest.mark.parametrize("shift", [0.01, -0.01])
def test_jitter_within_the_tolerance_is_neither_late_nor_a_repeat(shift: float) -> None:
    c = core()
    a, b = stream(2)
    nudged = AudioChunk.from_float("yor", 1, b.start + shift, RATE, b.mono())
    c.process(a)
    assert not c.repeated(nudged)
    out = c.process(nudged)
    assert not out.late and out.continuous
