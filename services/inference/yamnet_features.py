"""YAMNet's log-mel input, in numpy (the same maths as YAMNet's own `features.py`).

16 kHz mono -> STFT (25 ms periodic Hann window, 10 ms hop, 512-point FFT, no centring)
-> magnitude -> 64 mel bands from 125 to 7500 Hz (HTK mel scale, triangles in mel space,
no DC bin) -> log(mel + 0.001) -> patches of 96 frames (0.96 s), every 48 frames (0.48 s).

`batch_patches` does this for a batch of windows in one pass: windows of one length are
framed, transformed and projected together (one FFT call, one matrix product, one log for
all of them), which is what the service does with each batch; `patches` is one window's.
Both give the same numbers (the FFT works row by row either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
#: Windows framed and transformed together in `batch_patches`.
ROWS_AT_ONCE = 8


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
    spec: np.ndarray = _log_mel_rows(x[None])[0]
    return spec


def _log_mel_rows(x: np.ndarray) -> np.ndarray:
    """(n, frames, 64) log-mel of n float32 windows of one length, (n, samples) >= WINDOW.

    `ROWS_AT_ONCE` windows at a time: their frames and spectra (about 1.3 MB for 8 windows of
    1 s) stay in the CPU's cache, which a whole batch's would not.
    """
    frames = 1 + (x.shape[1] - WINDOW) // HOP
    out = np.empty((len(x), frames, MEL_BANDS), np.float32)
    for first in range(0, len(x), ROWS_AT_ONCE):
        part = x[first : first + ROWS_AT_ONCE]
        framed = sliding_window_view(part, WINDOW, axis=1)[:, ::HOP] * _hann()
        magnitude = np.abs(np.fft.rfft(framed, FFT, axis=2))
        mel = magnitude.astype(np.float32, copy=False) @ mel_matrix()
        np.log(mel + LOG_OFFSET, out=out[first : first + len(part)])
    return out


def patch_starts(frames: int) -> list[int]:
    """First frames of the patches that cover a spectrogram of `frames` (>= 96) frames."""
    starts = list(range(0, frames - PATCH_FRAMES + 1, PATCH_HOP_FRAMES))
    if frames - (starts[-1] + PATCH_FRAMES) > MAX_UNCOVERED_FRAMES:
        starts.append(frames - PATCH_FRAMES)
    return starts


def batch_patches(windows: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """The patches of every window in window order, (total, 1, 96, 64) float32, and how many
    belong to each window: what `patches` gives for each, computed a length at a time."""
    arrays = [np.asarray(w, dtype=np.float32) for w in windows]
    if any(a.ndim != 1 for a in arrays):
        raise ValueError("expected mono samples")
    by_length: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        by_length.setdefault(len(a), []).append(i)
    groups: list[tuple[list[int], np.ndarray]] = []  # (windows, their (n, p, 96, 64) patches)
    for length, members in by_length.items():
        if length < WINDOW + (PATCH_FRAMES - 1) * HOP:  # shorter than a patch: padded
            groups += [([i], patches(arrays[i])[None, :, 0]) for i in members]
            continue
        spec = _log_mel_rows(np.stack([arrays[i] for i in members]))
        starts = patch_starts(spec.shape[1])
        groups.append((members, np.stack([spec[:, s : s + PATCH_FRAMES] for s in starts], 1)))
    if len(groups) == 1:  # the usual batch: windows of one length, in order
        members, group = groups[0]
        n, p = group.shape[:2]
        return np.ascontiguousarray(group.reshape(n * p, 1, PATCH_FRAMES, MEL_BANDS)), [p] * n
    per_window = [np.zeros((0, 1, PATCH_FRAMES, MEL_BANDS), np.float32)] * len(arrays)
    for members, group in groups:
        for j, i in enumerate(members):
            per_window[i] = group[j][:, None]
    if not per_window:
        return np.zeros((0, 1, PATCH_FRAMES, MEL_BANDS), np.float32), []
    return np.concatenate(per_window), [len(p) for p in per_window]


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
    starts = patch_starts(len(spec))
    return np.stack([spec[s : s + PATCH_FRAMES] for s in starts])[:, None].astype(np.float32)
