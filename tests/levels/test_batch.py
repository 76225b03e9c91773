"""A batch of many devices' chunks measured at once gives what one chunk at a time gives, and
what the per-chunk measurement before batching gave (tests/levels/per_chunk_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as sig

from services.demo_audio import street_scene
from services.levels.core import ChunkOutput, Flushed, LevelsCore
from services.levels.summary import SummaryTracker
from shared.devices import DeviceRegistry
from shared.errors import MessageError
from shared.messages import AudioChunk, LevelsSummary
from tests.levels.per_chunk_reference import OldFilters, old_measure

T0 = 1_764_400_000.0
RATE = 16000
SECONDS = 8
DB_FIELDS = ("leq_db", "laeq_db", "lceq_db", "peak_db", "dbfs")
SUMMARY_FIELDS = ("laeq_db", "lamax_db", "lamin_db", "l10_db", "l50_db", "l90_db", "coverage")


def _fleet() -> list[AudioChunk]:
    """Twelve devices' chunks of the street scene, in arrival order, with everything that
    does not stack: a gap, a rate change, a late chunk, stereo, odd lengths, a repeat, and a
    device whose chunks come in bursts (several in one batch)."""
    scene = street_scene(30, seed=4)
    per_second: list[list[AudioChunk]] = [[] for _ in range(SECONDS + 3)]
    for d in range(12):
        dev = f"dev-{d:02d}"
        x = np.roll(scene, d * 20_011)
        for s in range(SECONDS):
            audio = x[s * RATE : (s + 1) * RATE]
            rate = RATE
            if dev == "dev-03" and s == 3:
                continue  # lost: fresh filters for seq 4
            if dev == "dev-05" and s >= 4:
                rate = 48000
                audio = sig.resample_poly(audio, 3, 1).astype(np.float32)
            if dev == "dev-09":
                audio = np.stack([audio, 0.5 * np.roll(audio, 7)], axis=1)
            if dev == "dev-10":
                audio = audio[: RATE // 2] if s % 3 else audio[:777]
            chunk = AudioChunk.from_float(dev, s, T0 + s, rate, audio)
            when = s + (2 - s % 3 if dev == "dev-02" else 0)  # dev-02: bursts of three
            per_second[when].append(chunk)
            if dev == "dev-11" and s == 2:
                per_second[when].append(chunk)  # delivered twice
            if dev == "dev-07" and s == 5:  # seq 2 again, shifted: late, not a repeat
                late = AudioChunk.from_float(dev, 2, T0 + 2.5, rate, audio)
                per_second[when].append(late)
    return [c for second in per_second for c in second]


@pytest.fixture(scope="module")
def fleet() -> list[AudioChunk]:
    return _fleet()


def _core() -> LevelsCore:
    return LevelsCore(DeviceRegistry(), summary_seconds=2.0, indices_seconds=4.0)


def _one_at_a_time(chunks: list[AudioChunk]) -> list[ChunkOutput | MessageError | None]:
    core = _core()
    return [core.process_all([(c, 0.0)])[0] for c in chunks]


def _summaries_close(got: list[LevelsSummary], want: list[LevelsSummary], tol: float) -> None:
    assert [(s.device, s.seq, s.start) for s in got] == [(s.device, s.seq, s.start) for s in want]
    for g, w in zip(got, want, strict=True):
        for name in SUMMARY_FIELDS:
            assert getattr(g, name) == pytest.approx(getattr(w, name), abs=tol), (g, name)


@pytest.mark.parametrize("batch", [2, 8, 32, 1000])
def test_batches_measure_what_single_chunks_do(fleet: list[AudioChunk], batch: int) -> None:
    single = _one_at_a_time(fleet)
    core = _core()
    batched = []
    for first in range(0, len(fleet), batch):
        batched += core.process_all([(c, 0.0) for c in fleet[first : first + batch]])
    assert [type(o) for o in batched] == [type(o) for o in single]
    assert sum(o is None for o in batched) == 1  # the repeat
    outputs = [(b, s) for b, s in zip(batched, single, strict=True) if isinstance(s, ChunkOutput)]
    assert sum(s.late for _, s in outputs) == 1
    assert sum(not s.continuous for _, s in outputs) >= 12 + 3  # first chunks, gap, rate, late
    for b, s in outputs:
        assert isinstance(b, ChunkOutput)
        assert (b.levels.device, b.levels.seq, b.levels.start) == (
            s.levels.device,
            s.levels.seq,
            s.levels.start,
        )
        assert (b.continuous, b.late, b.lost) == (s.continuous, s.late, s.lost)
        for name in DB_FIELDS:
            assert getattr(b.levels, name) == pytest.approx(getattr(s.levels, name), abs=1e-9)
        assert b.levels.bands is not None and s.levels.bands is not None
        assert b.levels.bands.keys() == s.levels.bands.keys()
        for k, v in s.levels.bands.items():
            assert b.levels.bands[k] == pytest.approx(v, abs=1e-9), k
        assert b.lafmax_db == pytest.approx(s.lafmax_db, abs=1e-9)
        _summaries_close(b.summaries, s.summaries, 1e-9)
        assert [(j.device, j.start, j.seq) for j in b.jobs] == [
            (j.device, j.start, j.seq) for j in s.jobs
        ]
        for jb, js in zip(b.jobs, s.jobs, strict=True):
            assert np.array_equal(jb.samples, js.samples)
    _summaries_close(
        [x for f in core.flush_all() for x in f.summaries],
        [x for f in _flushed(fleet) for x in f.summaries],
        1e-9,
    )


def _flushed(chunks: list[AudioChunk]) -> list[Flushed]:
    core = _core()
    for c in chunks:
        core.process_all([(c, 0.0)])
    return core.flush_all()


def test_batches_measure_what_the_per_chunk_path_before_batching_did(
    fleet: list[AudioChunk],
) -> None:
    core = _core()
    outs = []
    for first in range(0, len(fleet), 32):
        outs += core.process_all([(c, 0.0) for c in fleet[first : first + 32]])
    filters: dict[str, OldFilters] = {}
    trackers: dict[str, SummaryTracker] = {}
    checked = 0
    for chunk, out in zip(fleet, outs, strict=True):
        if not isinstance(out, ChunkOutput):
            continue
        cal = out.levels.calibration
        if out.late:
            own = OldFilters(chunk.rate)
        else:
            if not out.continuous:
                filters[chunk.device] = OldFilters(chunk.rate)
            own = filters[chunk.device]
        levels, bands, a2, fast = old_measure(chunk, cal, own)
        # maad computes the old Leq in float32: its resolution near 70 dB is 7.6e-6 dB.
        assert out.levels.leq_db == pytest.approx(levels.pop("leq_db"), abs=2e-5)
        for name, want in levels.items():
            got = out.lafmax_db if name == "lafmax_db" else getattr(out.levels, name)
            assert got == pytest.approx(want, abs=1e-6), (chunk.device, chunk.seq, name)
        assert out.levels.bands == pytest.approx(bands, abs=1e-6)
        if not out.late:
            tracker = trackers.setdefault(chunk.device, SummaryTracker(chunk.device, 2.0))
            if not out.continuous:
                tracker.restart_grid()
            want_summaries = tracker.add(
                chunk.start, chunk.rate, chunk.seq, a2, fast, cal, out.levels.uncalibrated
            )
            _summaries_close(out.summaries, want_summaries, 1e-6)
        checked += 1
    assert checked == len(fleet) - 1
