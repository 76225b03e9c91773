"""1/3-octave band levels (IEC 61260-1, base-10 band centres) by partitioning FFT bins.

Band centres are fm = 1000 * 10^(x/10) Hz, edges fm * 10^(+-1/20). Each FFT bin of the chunk
goes to the band whose edges hold its frequency, so the band energies add up, by Parseval, to
the chunk's mean square minus only the bins below the lowest band (DC to 17.8 Hz). Bands run
from 20 Hz up to the band that holds the Nyquist frequency (that top band is cut at Nyquist);
bands that hold no bin (very short chunks) are left out rather than reported as silence.
A rectangular window keeps the partition exact; its leakage limits how far a band can read
below a loud neighbour (about 50 dB a few bands away), which is not a class 1 filter bank.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from shared.messages.bands import LOWEST_X, exact_centre, lower_edge, nominal


@lru_cache(maxsize=64)
def partition(rate: int, n: int) -> tuple[tuple[str, int, int], ...]:
    """(label, first bin, end bin) of each band for an n-point real FFT at `rate`."""
    nyquist = rate / 2
    freqs = np.arange(n // 2 + 1) * rate / n
    out = []
    x = LOWEST_X
    while lower_edge(x) < nyquist:
        lo = lower_edge(x)
        hi = exact_centre(x) * 10 ** (1 / 20)
        first = int(np.searchsorted(freqs, lo, side="left"))
        end = len(freqs) if hi >= nyquist else int(np.searchsorted(freqs, hi, side="left"))
        if end > first:
            out.append((nominal(x), first, end))
        x += 1
    return tuple(out)


def bin_powers(x: np.ndarray) -> np.ndarray:
    """Mean-square contribution of each real-FFT bin; they sum to mean(x**2)."""
    n = len(x)
    spec = np.fft.rfft(np.asarray(x, dtype=np.float64))
    power = (spec.real**2 + spec.imag**2) / (n * n)
    power[1 : (n + 1) // 2] *= 2  # every bin but DC and (n even) Nyquist stands for two
    return np.asarray(power)


def band_mean_squares(x: np.ndarray, rate: int) -> dict[str, float]:
    """Mean square of `x` in each 1/3-octave band, keyed by nominal centre frequency."""
    if len(x) < 2:
        return {}
    power = bin_powers(x)
    return {label: float(power[first:end].sum()) for label, first, end in partition(rate, len(x))}
