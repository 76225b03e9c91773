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
They run on a batch of rows at once (one row per device's chunk, all of one rate and length):
`weigh` and `fast_weigh` take a 2-D array and one filter object per row, `process` is the
one-row case. The FIR runs first (the two stages commute: both are linear and time-invariant,
and a fresh filter starts as if the first sample had always been there, which both orders
model), as a circular convolution on the chunk's own FFT (which the 1/3-octave bands share),
its wrap-around replaced by the previous chunk's last samples. Against a direct convolution
followed by the IIR this differs only by rounding (about 1e-15 of the signal's scale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.fft as sfft
import scipy.signal as sig

Weighting = Literal["A", "C"]

#: Pole frequencies of IEC 61672-1:2013, Hz.
F1, F2, F3, F4 = 20.598997, 107.65265, 737.86223, 12194.217
#: Fast time constant, seconds (IEC 61672-1).
FAST_TAU = 0.125
#: Taps of the high-frequency correction FIR (odd: linear phase, 31 samples of delay).
FIR_TAPS = 63
#: Input samples the FIR remembers from one chunk to the next.
HISTORY = FIR_TAPS - 1


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
    """One weighting at one sample rate: correction FIR, then bilinear SOS."""

    sos: np.ndarray
    fir: np.ndarray
    zi: np.ndarray  # the SOS state that a constant input of 1 settles to (sosfilt_zi)


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
    return Design(sos=sos, fir=fir * gain, zi=sig.sosfilt_zi(sos))


def response_db(kind: Weighting, rate: int, freq: np.ndarray) -> np.ndarray:
    """The digital filter's magnitude response in dB at `freq` Hz."""
    d = design(kind, rate)
    _, h1 = sig.sosfreqz(d.sos, worN=np.asarray(freq, dtype=np.float64), fs=rate)
    _, h2 = sig.freqz(d.fir, worN=np.asarray(freq, dtype=np.float64), fs=rate)
    return np.asarray(20 * np.log10(np.abs(h1 * h2)))


@dataclass(frozen=True)
class _CircularFir:
    """The FIR as an n-point circular convolution plus the fix of its first outputs.

    With `ext` = the last HISTORY input samples of the previous chunk, then the chunk's n:
    out[k] = sum_j b[j] ext[HISTORY + k - j] = circ[k] + (prev @ from_prev - tail @ from_tail)[k]
    for the first `m` = min(n, HISTORY) outputs, where circ is the circular convolution of x
    with b (b folded modulo n when n < FIR_TAPS), which wraps around onto `tail`, the last m
    samples of x; from the m-th output on, circ is exact.
    """

    spectrum: np.ndarray  # rfft of b folded to n points
    from_prev: np.ndarray  # (HISTORY, m)
    from_tail: np.ndarray  # (m, m)


@lru_cache(maxsize=64)
def _circular_fir(kind: Weighting, rate: int, n: int) -> _CircularFir:
    b = design(kind, rate).fir
    taps = np.arange(FIR_TAPS)
    folded = np.bincount(taps % n, weights=b, minlength=n)
    m = min(n, HISTORY)
    from_prev = np.zeros((HISTORY, m))
    from_tail = np.zeros((m, m))
    for k in range(m):
        for j in range(k + 1, FIR_TAPS):  # the taps that reach before the chunk's start
            from_prev[HISTORY + k - j, k] += b[j]
            from_tail[(k - j) % n - (n - m), k] += b[j]
    return _CircularFir(sfft.rfft(folded), from_prev, from_tail)


def spectrum(x: np.ndarray) -> np.ndarray:
    """The real FFT of each row of `x` (float64), as `weigh` and the bands take it."""
    return np.asarray(sfft.rfft(x, axis=-1))


@dataclass
class WeightingFilter:
    """A or C weighting of a sample stream; state carries over from one call to the next."""

    kind: Weighting
    rate: int
    _history: np.ndarray | None = field(default=None, init=False)  # last HISTORY inputs
    _zi: np.ndarray | None = field(default=None, init=False)  # SOS state, (sections, 2)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Weighted samples (float64) for the next block of the stream."""
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return x
        rows = x[np.newaxis]
        return np.asarray(weigh(self.kind, self.rate, rows, spectrum(rows), [self])[0])


def weigh(
    kind: Weighting,
    rate: int,
    x: np.ndarray,
    x_spectrum: np.ndarray,
    filters: Sequence[WeightingFilter],
) -> np.ndarray:
    """Weighted samples of each row of `x` (rows, n: float64, n >= 1), row i the next block of
    `filters[i]`'s stream (each filter at most once); `x_spectrum` is `spectrum(x)`."""
    d = design(kind, rate)
    rows, n = x.shape
    plan = _circular_fir(kind, rate, n)
    history = np.empty((rows, HISTORY))
    zi = np.empty((len(d.sos), rows, 2))
    for i, f in enumerate(filters):
        if f._history is None or f._zi is None:
            # Start as if the first sample had always been there: a DC offset gives no transient.
            f._history = np.full(HISTORY, x[i, 0])
            f._zi = d.zi * (x[i, 0] * float(np.sum(d.fir)))
        history[i] = f._history
        zi[:, i, :] = f._zi
    y = sfft.irfft(x_spectrum * plan.spectrum, n, axis=-1, overwrite_x=True)
    m = plan.from_tail.shape[1]
    y[:, :m] += history @ plan.from_prev - x[:, n - m :] @ plan.from_tail
    out, zf = sig.sosfilt(d.sos, y, axis=-1, zi=zi)
    keep = x[:, n - HISTORY :] if n >= HISTORY else np.concatenate([history, x], axis=1)[:, n:]
    for i, f in enumerate(filters):
        f._history = keep[i].copy()
        f._zi = zf[:, i, :].copy()
    return np.asarray(out)


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
        return np.asarray(fast_weigh(np.asarray(squared)[np.newaxis], [self])[0])


def fast_weigh(squared: np.ndarray, filters: Sequence[FastWeighting]) -> np.ndarray:
    """The running mean square of each row of `squared` (rows, n >= 1), row i the next block
    of `filters[i]`'s stream (each at most once, all of one rate and time constant)."""
    rate, tau = filters[0].rate, filters[0].tau
    a = math.exp(-1.0 / (tau * rate))
    zi = np.empty((len(filters), 1))
    head = max(1, round(tau * rate))
    for i, f in enumerate(filters):
        if f._state is None:
            # Settled on the first 125 ms rather than rising from zero (no fake LAmin at start).
            f._state = float(np.mean(squared[i, :head]))
        zi[i, 0] = a * f._state
    out, _ = sig.lfilter([1.0 - a], [1.0, -a], squared, axis=-1, zi=zi)
    for i, f in enumerate(filters):
        f._state = float(out[i, -1])
    return np.asarray(out)
