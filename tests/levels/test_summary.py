"""Per-interval Fast A-weighted statistics on a loud/quiet signal of known duty cycle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.levels.core import LevelsCore
from services.levels.measure import ms_to_spl
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk, Calibration, LevelsSummary
from tests.support.audio import tone

T0 = 1_764_399_960.0  # a multiple of 60: intervals start with the signal
RATE = 16000
LOUD, QUIET = 0.5, 0.5 / 10 ** (30 / 20)  # 30 dB apart


def level_of(amplitude: float) -> float:
    return ms_to_spl(amplitude**2 / 2, Calibration())


def alternating(seconds: int, period: int, loud: int) -> np.ndarray:
    """A 1 kHz tone (A-weighting 0 dB) `loud` s loud then quiet for the rest of each period."""
    carrier = tone(1000, seconds, RATE, amplitude=1.0)
    gain = np.array([LOUD if (s % period) < loud else QUIET for s in range(seconds)])
    return carrier * np.repeat(gain, RATE).astype(np.float32)


def run(samples: np.ndarray, chunk_seconds: float, length: float = 60.0) -> list[LevelsSummary]:
    core = LevelsCore(DeviceRegistry(), summary_seconds=length, indices_seconds=3600)
    n = round(chunk_seconds * RATE)
    out: list[LevelsSummary] = []
    for seq, first in enumerate(range(0, len(samples), n)):
        chunk = AudioChunk.from_float(
            "yor", seq, T0 + first / RATE, RATE, samples[first : first + n]
        )
        out.extend(core.process(chunk).summaries)
    for flushed in core.flush_all():
        out.extend(flushed.summaries)
    return out


@pytest.mark.parametrize(("loud_seconds", "l50_is_loud"), [(3, False), (6, True)])
def test_statistical_levels_follow_the_duty_cycle(loud_seconds: int, l50_is_loud: bool) -> None:
    summaries = run(alternating(60, period=10, loud=loud_seconds), chunk_seconds=1.0)
    assert len(summaries) == 1
    s = summaries[0]
    loud, quiet = level_of(LOUD), level_of(QUIET)
    duty = loud_seconds / 10
    laeq = 10 * math.log10(duty * 10 ** (loud / 10) + (1 - duty) * 10 ** (quiet / 10))
    assert s.start == T0 and s.duration == 60 and s.coverage == pytest.approx(1.0)
    assert s.laeq_db == pytest.approx(laeq, abs=0.1)
    assert s.lamax_db == pytest.approx(loud, abs=0.1)
    assert s.lamin_db == pytest.approx(quiet, abs=0.1)
    assert s.l10_db >= s.l50_db >= s.l90_db
    assert s.l10_db == pytest.approx(loud, abs=0.1)  # loud more than 10 % of the time
    assert s.l50_db == pytest.approx(loud if l50_is_loud else quiet, abs=0.1)
    assert s.l90_db == pytest.approx(quiet, abs=0.1)  # quiet (settled) more than 10 %
    assert s.uncalibrated is True


def test_chunking_does_not_change_the_summary() -> None:
    signal = alternating(60, period=10, loud=3)
    whole = run(signal, chunk_seconds=1.0)[0]
    odd = run(signal, chunk_seconds=0.7)  # chunks straddle the loud/quiet edges
    assert len(odd) == 1
    for name in ("laeq_db", "lamax_db", "lamin_db", "l10_db", "l50_db", "l90_db"):
        assert getattr(odd[0], name) == pytest.approx(getattr(whole, name), abs=0.02), name


def test_intervals_are_aligned_and_partial_ones_show_their_coverage() -> None:
    signal = alternating(25, period=10, loud=3)
    summaries = run(signal, chunk_seconds=1.0, length=10.0)
    assert [s.start for s in summaries] == [T0, T0 + 10, T0 + 20]
    assert [s.coverage for s in summaries] == pytest.approx([1.0, 1.0, 0.5])
    assert [s.seq for s in summaries] == [0, 10, 20]


def test_a_gap_restarts_the_filters_but_not_the_interval() -> None:
    core = LevelsCore(DeviceRegistry(), summary_seconds=10.0, indices_seconds=3600)
    x = tone(1000, 1.0, RATE, amplitude=0.5)
    outs = [core.process(AudioChunk.from_float("yor", s, T0 + s, RATE, x)) for s in (0, 1, 2, 5, 6)]
    assert [o.continuous for o in outs] == [False, True, True, False, True]
    summaries = [s for flushed in core.flush_all() for s in flushed.summaries]
    assert len(summaries) == 1 and summaries[0].coverage == pytest.approx(0.5)
    assert summaries[0].laeq_db == pytest.approx(level_of(0.5), abs=0.05)
