"""Demo audio for the synthetic source (pure): a noise bed, mains hum and bird-like chirps.

Computed from the absolute frame index, so any block size gives the same signal. Nothing here
is a recording of anybody.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Seconds between chirps, and chirp length.
CHIRP_EVERY = 2.0
CHIRP_SECONDS = 0.25
#: Length of the repeating noise bed, seconds (not a multiple of common chunk lengths).
NOISE_SECONDS = 1.37


@lru_cache(maxsize=4)
def _noise(rate: int) -> np.ndarray:
    return 0.02 * np.random.default_rng(0).standard_normal(round(NOISE_SECONDS * rate))


def synthetic_pcm(first_frame: int, frames: int, rate: int, channels: int = 1) -> bytes:
    """S16_LE interleaved PCM for frames `first_frame .. first_frame + frames - 1`."""
    index = first_frame + np.arange(frames)
    t = index / rate
    noise = _noise(rate)
    signal = noise[index % len(noise)] + 0.03 * np.sin(2 * np.pi * 100.0 * t)
    phase = np.mod(t, CHIRP_EVERY)
    # Linear sweep 2 -> 4 kHz: instantaneous phase 2*pi*(f0*p + (f1-f0)/(2*T)*p^2).
    sweep = 2 * np.pi * (2000.0 * phase + 2000.0 / (2 * CHIRP_SECONDS) * phase**2)
    envelope = np.sin(np.pi * np.clip(phase / CHIRP_SECONDS, 0, 1)) ** 2
    signal += np.where(phase < CHIRP_SECONDS, 0.3 * envelope * np.sin(sweep), 0.0)
    pcm = np.clip(np.round(signal * 32767.0), -32768, 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm, channels)
    return pcm.tobytes()
