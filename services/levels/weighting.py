"""IEC 61672-1 frequency weightings (A, C) and the Fast time weighting, as stateful filters.

The analogue weightings are products of real poles (IEC 61672-1:2013, annex E):

    A(f) ~ f4^2 f^4 / ((f^2+f1^2) sqrt(f^2+f2^2) sqrt(f^2+f3^2) (f^2+f4^2))
    C(f) ~ f4^2 f^2 / ((f^2+f1^2) (f^2+f4^2))

A plain bilinear transform of the whole filter is wrong near the Nyquist limit (at 16 kHz it
puts a zero at 8 kHz, where A is -1.1 dB). So the digital filter is two parts: the low-frequency
poles and zeros through the bilinear transform (accurate where they act, far below Nyquist), then
a short linear-phase FIR that multiplies in whatever is left of the analogue response (the
12.2 kHz double pole and the bilinear warping). At 8-96 kHz the result is within 0.005 dB of the
analogue weighting at every IEC table frequency below Nyquist; the tests check class 1 limits.

Filters keep their state between calls, so a stream cut into chunks is filtered as one signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.signal as sig

Weighting = Literal["A", "C"]

#: Pole frequencies of IEC 61672-1:2013, Hz.
F1, F2, F3, F4 = 20.598997, 107.65265, 737.86223, 12194.217
#: Fast time constant, seconds (IEC 61672-1).
FAST_TAU = 0.125
#: Taps of the high-frequency correction FIR (odd: linear phase, 31 samples of delay).
FIR_TAPS = 63


def analog_db(kind: Weighting, freq: np.ndarray | float) -> np.ndarray:
    """The analogue weighting in dB, normalised to 0 dB at 1 kHz."""

    def raw(f: np.ndarray) -> np.ndarray:
        f2 = f * f
        if kind == "A":
            den = (f2 + F1**2) * np.sqrt(f2 + F2**2) * np.sqrt(f2 + F3**2) * (f2 + F4**2)
            return np.asarray(F4**2 * f2 * f2 / den)
        return np.asarray(F4**2 * f2 / ((f2 + F1**2) * (f2 + F4**2)))

    f = np.asarray(freq, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(20 * np.log10(raw(f)) - 20 * np.log10(raw(np.array(1000.0))))


@dataclass(frozen=True)
class Design:
    """One weighting at one sample rate: bilinear SOS, then correction FIR."""

    sos: np.ndarray
    fir: np.ndarray


@lru_cache(maxsize=32)
def design(kind: Weighting, rate: int) -> Design:
    """The digital weighting filter for `rate`, 0 dB at 1 kHz (cached per rate)."""
    w = 2 * math.pi
    if kind == "A":
        zeros, poles = [0.0] * 4, [-w * F1, -w * F1, -w * F2, -w * F3]
    else:
        zeros, poles = [0.0] * 2, [-w * F1, -w * F1]
    zd, pd, kd = sig.bilinear_zpk(zeros, poles, 1.0, rate)
    sos = sig.zpk2sos(zd, pd, kd)
    grid = np.linspace(0.0, rate / 2, 2049)
    probe = grid.copy()
    probe[0] = grid[1] / 4  # the ratio is finite at DC; evaluate it just above
    _, h_lf = sig.sosfreqz(sos, worN=probe, fs=rate)
    target = 10 ** (analog_db(kind, probe) / 20) / np.maximum(np.abs(h_lf), 1e-300)
    fir = sig.firwin2(FIR_TAPS, grid, target, fs=rate, window=None)
    # Exactly 0 dB at 1 kHz (or at the highest frequency below Nyquist when rate <= 2 kHz).
    f_ref = min(1000.0, rate / 4)
    _, h1 = sig.sosfreqz(sos, worN=[f_ref], fs=rate)
    _, h2 = sig.freqz(fir, worN=[f_ref], fs=rate)
    gain = 10 ** (float(analog_db(kind, f_ref)) / 20) / abs(complex(h1[0] * h2[0]))
    return Design(sos=sos, fir=fir * gain)


def response_db(kind: Weighting, rate: int, freq: np.ndarray) -> np.ndarray:
    """The digital filter's magnitude response in dB at `freq` Hz."""
    d = design(kind, rate)
    _, h1 = sig.sosfreqz(d.sos, worN=np.asarray(freq, dtype=np.float64), fs=rate)
    _, h2 = sig.freqz(d.fir, worN=np.asarray(freq, dtype=np.float64), fs=rate)
    return np.asarray(20 * np.log10(np.abs(h1 * h2)))


@dataclass
class WeightingFilter:
    """A or C weighting of a sample stream; state carries over from one call to the next."""

    kind: Weighting
    rate: int
    _zi_sos: np.ndarray | None = field(default=None, init=False)
    _zi_fir: np.ndarray | None = field(default=None, init=False)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Weighted samples (float64) for the next block of the stream."""
        d = design(self.kind, self.rate)
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return x
        if self._zi_sos is None or self._zi_fir is None:
            # Start as if the first sample had always been there: a DC offset gives no transient.
            self._zi_sos = sig.sosfilt_zi(d.sos) * x[0]
            self._zi_fir = np.zeros(len(d.fir) - 1)
        y, self._zi_sos = sig.sosfilt(d.sos, x, zi=self._zi_sos)
        out, self._zi_fir = _fir(d.fir, y, self._zi_fir)
        return out


def _fir(b: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`scipy.signal.lfilter(b, [1.0], x, zi=zi)` for 1-D float64, operation for operation
    (its FIR path: one `np.convolve`, the state added to the head), without the per-call
    argument handling and `apply_along_axis` that cost a tenth of a chunk's measurement."""
    full = np.convolve(b, x)
    full[: len(zi)] += zi
    return full[: len(x)], full[len(x) :]


@dataclass
class FastWeighting:
    """Exponential (Fast, 125 ms) time weighting of a squared signal, continuous across calls."""

    rate: int
    tau: float = FAST_TAU
    _state: float | None = field(default=None, init=False)

    def process(self, squared: np.ndarray) -> np.ndarray:
        """The running mean square for each sample of the next block."""
        if squared.size == 0:
            return np.asarray(squared, dtype=np.float64)
        a = math.exp(-1.0 / (self.tau * self.rate))
        if self._state is None:
            # Settled on the first 125 ms rather than rising from zero (no fake LAmin at start).
            head = squared[: max(1, round(self.tau * self.rate))]
            self._state = float(np.mean(head))
        out, _ = sig.lfilter([1.0 - a], [1.0, -a], squared, zi=[a * self._state])
        self._state = float(out[-1])
        return np.asarray(out)
