"""The levels core's per-chunk measurement as it was before batching (commit a9d177f), kept
as the reference that the batched measurement is checked against and timed beside.

One chunk at a time: the weighting's bilinear SOS (`sosfilt`, state carried), then its
correction FIR (`np.convolve` with the state added to the head, operation for operation
`lfilter`'s FIR path), the Fast time weighting (`lfilter`), the prototype's Leq through
scikit-maad itself (`mean_dB(wav2dBSPL(...))` on the float32 samples) and the 1/3-octave bands
from `np.fft.rfft`. Only the arithmetic is here: which chunks are continuous is the core's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.signal as sig
from maad.spl import wav2dBSPL
from maad.util import mean_dB

from services.levels.bands import partition
from services.levels.measure import floor_spl, ms_to_dbfs, ms_to_spl
from services.levels.weighting import FAST_TAU, Weighting, design
from shared.messages import AudioChunk, Calibration


@dataclass
class OldWeighting:
    """sosfilt then the FIR by direct convolution, state carried (a9d177f)."""

    kind: Weighting
    rate: int
    zi_sos: np.ndarray | None = None
    zi_fir: np.ndarray | None = None

    def process(self, x: np.ndarray) -> np.ndarray:
        d = design(self.kind, self.rate)
        if self.zi_sos is None or self.zi_fir is None:
            self.zi_sos = sig.sosfilt_zi(d.sos) * x[0]
            self.zi_fir = np.zeros(len(d.fir) - 1)
        y, self.zi_sos = sig.sosfilt(d.sos, x, zi=self.zi_sos)
        full = np.convolve(d.fir, y)
        full[: len(self.zi_fir)] += self.zi_fir
        self.zi_fir = full[len(y) :]
        return np.asarray(full[: len(y)])


@dataclass
class OldFast:
    """The Fast time weighting by lfilter, one call per chunk (a9d177f)."""

    rate: int
    state: float | None = None

    def process(self, squared: np.ndarray) -> np.ndarray:
        a = math.exp(-1.0 / (FAST_TAU * self.rate))
        if self.state is None:
            self.state = float(np.mean(squared[: max(1, round(FAST_TAU * self.rate))]))
        out, _ = sig.lfilter([1.0 - a], [1.0, -a], squared, zi=[a * self.state])
        self.state = float(out[-1])
        return np.asarray(out)


@dataclass
class OldFilters:
    """One stream's filters."""

    rate: int
    a: OldWeighting = field(init=False)
    c: OldWeighting = field(init=False)
    fast: OldFast = field(init=False)

    def __post_init__(self) -> None:
        self.a = OldWeighting("A", self.rate)
        self.c = OldWeighting("C", self.rate)
        self.fast = OldFast(self.rate)


def old_leq(samples: np.ndarray, cal: Calibration) -> float:
    """The prototype's Leq through scikit-maad (a9d177f `prototype_leq`)."""
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        levels = wav2dBSPL(
            samples, gain=cal.gain_db, sensitivity=cal.sensitivity_dbv, Vadc=cal.vadc
        )
        value = float(mean_dB(levels))
    floor = floor_spl(cal)
    return floor if not math.isfinite(value) or value < floor else value


def old_measure(
    chunk: AudioChunk, cal: Calibration, filters: OldFilters
) -> tuple[dict[str, float], dict[str, float], np.ndarray, np.ndarray]:
    """One chunk's levels (dB fields), bands (dB), A-weighted squares and Fast mean square."""
    x = chunk.mono()
    x64 = x.astype(np.float64)
    a = filters.a.process(x64)
    a2 = a * a
    c = filters.c.process(x64)
    fast = filters.fast.process(a2)
    n = len(x64)
    spec = np.fft.rfft(x64)
    power = (spec.real**2 + spec.imag**2) / (n * n)
    power[1 : (n + 1) // 2] *= 2
    bands = {
        label: ms_to_spl(float(power[first:end].sum()), cal)
        for label, first, end in (partition(chunk.rate, n) if n >= 2 else ())
    }
    levels = {
        "leq_db": old_leq(x, cal),
        "laeq_db": ms_to_spl(float(np.mean(a2)), cal),
        "lceq_db": ms_to_spl(float(np.mean(c * c)), cal),
        "peak_db": ms_to_spl(float(np.max(np.abs(x64))) ** 2, cal),
        "dbfs": ms_to_dbfs(float(np.mean(x64 * x64))),
        "lafmax_db": ms_to_spl(float(fast.max()), cal),
    }
    return levels, bands, a2, fast
