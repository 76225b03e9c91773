"""Hand-written fakes and small helpers for the inference tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.messages import AudioChunk

T0 = 1_764_400_000.0
RATE = 16_000

#: A few AudioSet names, including speech-family ones, for the fake classifier.
FAKE_LABELS = ("Speech", "Whispering", "Music", "Sine wave", "Silence", "Dog", "Car", "Rain")


@dataclass
class FakeClassifier:
    """A `Classifier` whose scores are a pure function of the audio: loudness and pitch.

    Score of "Silence" falls with RMS, "Sine wave" rises with the share of energy in one FFT
    bin; everything else is a fixed small ramp. `delay` makes it slow, to overload a service.
    """

    model_id: str = "fake-model"
    labels: Sequence[str] = FAKE_LABELS
    sample_rate: int = RATE
    delay: float = 0.0
    calls: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        with self.lock:
            self.calls.append(len(windows))
        if self.delay:
            time.sleep(self.delay)
        out = np.tile(np.linspace(0.05, 0.01, len(self.labels)), (len(windows), 1))
        for i, w in enumerate(windows):
            rms = float(np.sqrt(np.mean(np.square(w)))) if len(w) else 0.0
            spectrum = np.abs(np.fft.rfft(w)) ** 2
            peak = float(spectrum.max() / max(spectrum.sum(), 1e-12))
            out[i, self.labels.index("Silence")] = 1.0 - min(1.0, rms * 20)
            out[i, self.labels.index("Sine wave")] = min(1.0, peak * 2)
        return out.astype(np.float32)


def chunk(
    device: str, seq: int, samples: np.ndarray, rate: int = RATE, start: float | None = None
) -> AudioChunk:
    """An S16 chunk whose start time follows from its sequence number (1 s chunks)."""
    begin = T0 + seq * len(samples) / rate if start is None else start
    return AudioChunk.from_float(device, seq, begin, rate, samples)


def ramp(n: int, offset: int = 0) -> np.ndarray:
    """Samples that encode their own index (exactly representable in S16), to trace cuts."""
    return ((np.arange(offset, offset + n) % 30000) / 32768.0).astype(np.float32)


def sample_index(samples: np.ndarray) -> np.ndarray:
    """Inverse of `ramp`: the index each sample encodes (mod 30000)."""
    return np.round(np.asarray(samples) * 32768.0).astype(int)
