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

from services.levels.weighting import spectrum
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


def bin_powers(x_spectrum: np.ndarray, n: int) -> np.ndarray:
    """Mean-square contribution of each real-FFT bin of each row (the spectrum of n samples);
    along a row they sum to the row's mean(x**2)."""
    power = (x_spectrum.real**2 + x_spectrum.imag**2) / (n * n)
    power[..., 1 : (n + 1) // 2] *= 2  # every bin but DC and (n even) Nyquist stands for two
    return np.asarray(power)


def band_rows(x_spectrum: np.ndarray, n: int, rate: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The band labels, and the mean square of each row in each band (rows, bands), from the
    rows' real FFT (`weighting.spectrum`) of n samples at `rate`."""
    bands = partition(rate, n) if n >= 2 else ()
    labels = tuple(label for label, _, _ in bands)
    if not bands:
        return labels, np.empty((x_spectrum.shape[0], 0))
    power = bin_powers(x_spectrum, n)
    # Bands are contiguous runs of bins (each upper edge is the next band's lower edge, and
    # bands without a bin are left out), so one reduceat sums them all.
    starts = [first for _, first, _ in bands]
    sums = np.add.reduceat(power[:, : bands[-1][2]], starts, axis=-1)
    return labels, np.asarray(sums)


def band_mean_squares(x: np.ndarray, rate: int) -> dict[str, float]:
    """Mean square of `x` in each 1/3-octave band, keyed by nominal centre frequency."""
    rows = np.asarray(x, dtype=np.float64)[np.newaxis]
    labels, sums = band_rows(spectrum(rows), rows.shape[1], rate)
    return dict(zip(labels, sums[0].tolist(), strict=True))
