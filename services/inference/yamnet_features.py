"""YAMNet's log-mel input, in numpy (the same maths as YAMNet's own `features.py`).

16 kHz mono -> STFT (25 ms periodic Hann window, 10 ms hop, 512-point FFT, no centring)
-> magnitude -> 64 mel bands from 125 to 7500 Hz (HTK mel scale, triangles in mel space,
no DC bin) -> log(mel + 0.001) -> patches of 96 frames (0.96 s), every 48 frames (0.48 s).
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 400  #: 25 ms
HOP = 160  #: 10 ms
FFT = 512
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96  #: 0.96 s
PATCH_HOP_FRAMES = 48  #: 0.48 s
#: Frames past the last patch that are left out rather than covered by one more patch, set
#: at the end (a 1 s window's last 2 frames, 25 ms, are not worth twice the work).
MAX_UNCOVERED_FRAMES = 10


def hertz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, as tf.signal and YAMNet use it."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


@cache
def mel_matrix() -> np.ndarray:
    """(257, 64) weights from FFT magnitude bins to mel bands (tf.signal's construction)."""
    bins = FFT // 2 + 1
    linear = np.linspace(0.0, SAMPLE_RATE / 2, bins)[1:]  # the DC bin gets no weight
    spec_mel = hertz_to_mel(linear)[:, None]
    edges = np.linspace(hertz_to_mel(MEL_MIN_HZ), hertz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (spec_mel - lower) / (center - lower)
    down = (upper - spec_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.vstack([np.zeros((1, MEL_BANDS)), weights]).astype(np.float32)


@cache
def _hann() -> np.ndarray:
    n = np.arange(WINDOW)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / WINDOW)).astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(frames, 64) log-mel spectrogram of 16 kHz mono float samples (at least one frame:
    shorter input is zero-padded to 25 ms)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {x.shape}")
    if len(x) < WINDOW:
        x = np.pad(x, (0, WINDOW - len(x)))
    frames = 1 + (len(x) - WINDOW) // HOP
    index = np.arange(WINDOW)[None, :] + HOP * np.arange(frames)[:, None]
    magnitude = np.abs(np.fft.rfft(x[index] * _hann(), FFT, axis=1))
    out: np.ndarray = np.log(magnitude.astype(np.float32) @ mel_matrix() + LOG_OFFSET)
    return out


def patches(samples: np.ndarray) -> np.ndarray:
    """(n, 1, 96, 64) float32 patches covering the samples, every 0.48 s.

    A window shorter than one patch is padded with silence (log of the offset). When more
    than `MAX_UNCOVERED_FRAMES` frames are left after the last patch, one more patch ends at
    the window's end (YAMNet itself pads the audio with silence for that): the next window
    does not start there, so a sound in that tail would otherwise never be seen.
    """
    spec = log_mel(samples)
    if len(spec) < PATCH_FRAMES:
        pad = np.full((PATCH_FRAMES - len(spec), MEL_BANDS), np.log(LOG_OFFSET), np.float32)
        spec = np.vstack([spec, pad])
    starts = list(range(0, len(spec) - PATCH_FRAMES + 1, PATCH_HOP_FRAMES))
    if len(spec) - (starts[-1] + PATCH_FRAMES) > MAX_UNCOVERED_FRAMES:
        starts.append(len(spec) - PATCH_FRAMES)
    return np.stack([spec[s : s + PATCH_FRAMES] for s in starts])[:, None].astype(np.float32)
