"""Acoustic indices with scikit-maad over windows aligned on multiples of their length.

One amplitude spectrogram (Hann, 1024 points, 50 % overlap) feeds the spectral indices:
- ACI: Acoustic Complexity Index (Pieretti 2011), maad's sum over all bins and frames, so it
  grows with the window length;
- ADI / AEI: Acoustic Diversity (Shannon) / Evenness (Gini) over 1 kHz bands from 0 to
  min(10 kHz, Nyquist), -50 dB threshold (Villanueva-Rivera 2011, soundecology defaults);
- BI: Bioacoustic Index over 2 kHz to min(8 kHz, Nyquist) (Boelman 2007, soundecology);
- NDSI: (biophony - anthropophony) / (sum), biophony 1 kHz to min(10 kHz, Nyquist),
  anthropophony 0-1 kHz (Kasten 2012);
- Hf: spectral entropy of the mean power spectrum; Ht: temporal entropy of the squared
  envelope (Sueur 2008, QUT flavour), both in [0, 1];
- events: acoustic events (Towsey): envelope 3 dB above the median background for at least
  100 ms, counted.

Digital silence (or a constant code: a stuck or muted converter often sends -1 LSB) has no
spectrum to normalise: every index is then None, events 0, rather than the "flat spectrum"
maximum diversity and entropy that rounding noise would give. An index that
comes out NaN (0/0 on degenerate input) is None, never NaN.

A window with gaps is analysed over the audio it has, joined end to end; `coverage` (seconds
analysed / window length) says how much that was, so sums such as ACI can be read for what
they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from maad import features, sound

from services.levels.intervals import split
from shared.messages import IndicesResult

NPERSEG = 1024
EVENT_DB = 3.0
EVENT_MIN_SECONDS = 0.1


@dataclass(frozen=True)
class IndicesJob:
    """One window of one device's audio (one rate; gaps left out), to analyse off the loop."""

    device: str
    seq: int
    start: float
    duration: float
    rate: int
    samples: np.ndarray


def _finite(value: object, lo: float | None = None, hi: float | None = None) -> float | None:
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        return None
    if lo is not None:
        v = max(lo, v)
    if hi is not None:
        v = min(hi, v)
    return v


def event_count(samples: np.ndarray, rate: int) -> int:
    """Acoustic events (maad `temporal_events`), counted as runs of the event mask."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        mask = features.temporal_events(
            samples, rate, dB_threshold=EVENT_DB, rejectDuration=EVENT_MIN_SECONDS
        )[3]
    m = np.asarray(mask, dtype=np.int8).ravel()
    return int(np.count_nonzero(np.diff(np.concatenate(([0], m))) == 1))


def compute(job: IndicesJob) -> IndicesResult | None:
    """The indices of one window; None when it is too short for a spectrogram."""
    x = np.asarray(job.samples, dtype=np.float64)
    base = {
        "device": job.device,
        "seq": job.seq,
        "start": job.start,
        "duration": job.duration,
        "coverage": min(1.0, len(x) / (job.rate * job.duration)),
    }
    if len(x) < 4 * NPERSEG:
        return None
    if np.ptp(x) == 0:  # digital silence, or a stuck converter's constant code: no spectrum
        return IndicesResult(**base, events=0)  # type: ignore[arg-type]
    rate = job.rate
    nyq = rate / 2
    top = min(10_000.0, nyq)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        amp, _, fn, _ = sound.spectrogram(x, rate, window="hann", nperseg=NPERSEG, mode="amplitude")
        power = amp**2
        aci = features.acoustic_complexity_index(amp)[2]
        adi = features.acoustic_diversity_index(
            amp, fn, fmin=0, fmax=top, bin_step=1000, dB_threshold=-50
        )
        aei = features.acoustic_eveness_index(
            amp, fn, fmin=0, fmax=top, bin_step=1000, dB_threshold=-50
        )
        bi = features.bioacoustics_index(amp, fn, flim=(2000, min(8000.0, nyq)))
        ndsi = features.soundscape_index(power, fn, flim_bioPh=(1000, top), flim_antroPh=(0, 1000))[
            0
        ]
        hf = features.frequency_entropy(power)[0]
        ht = features.temporal_entropy(x)
    return IndicesResult(
        **base,  # type: ignore[arg-type]
        aci=_finite(aci),
        adi=_finite(adi),
        aei=_finite(aei),
        bi=_finite(bi),
        ndsi=_finite(ndsi, -1.0, 1.0),
        ht=_finite(ht, 0.0, 1.0),
        hf=_finite(hf, 0.0, 1.0),
        events=event_count(x, rate),
    )


@dataclass
class _Window:
    index: int
    rate: int
    first_seq: int
    parts: list[np.ndarray] = field(default_factory=list)
    samples: int = 0


@dataclass
class IndicesWindows:
    """Collects one device's audio into windows of `length` seconds."""

    device: str
    length: float
    min_coverage: float
    _open: _Window | None = field(default=None, init=False)

    def add(self, start: float, rate: int, seq: int, samples: np.ndarray) -> list[IndicesJob]:
        """Add one chunk of mono samples; the jobs of the windows it completes."""
        jobs: list[IndicesJob] = []
        for k, first, end in split(start, rate, len(samples), self.length):
            cur = self._open
            if cur is not None and (cur.index != k or cur.rate != rate):
                jobs.extend(self.flush())
            if self._open is None:
                self._open = _Window(index=k, rate=rate, first_seq=seq)
            piece = np.asarray(samples[first:end], dtype=np.float32)
            self._open.parts.append(piece)
            self._open.samples += len(piece)
        return jobs

    def flush(self) -> list[IndicesJob]:
        """The open window, if it has enough audio; it is closed either way."""
        cur, self._open = self._open, None
        if cur is None or cur.samples < self.min_coverage * self.length * cur.rate:
            return []
        return [
            IndicesJob(
                device=self.device,
                seq=cur.first_seq,
                start=cur.index * self.length,
                duration=self.length,
                rate=cur.rate,
                samples=np.concatenate(cur.parts),
            )
        ]
