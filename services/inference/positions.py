"""Run AST on a window's true length: frames, patch grid and position embeddings.

AST adds a learned position embedding to each 16x16 patch of its (frames x 128 mel) input;
the embeddings exist for the length it was trained on (1024 frames, 10.24 s). To run it on a
shorter input without padding, the embedding grid (frequency x time) is cut to the shorter
time axis:

- `start`: the first columns, the positions a short clip padded to 1024 frames occupies in
  the prototype's path (so only the padding tokens are left out);
- `center`: the middle columns, as the AST authors do when they shorten the input;
- `interpolate`: the whole time axis resampled linearly to the new length.

None of these is validated for accuracy on real weights: measure before relying on it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

PositionMode = Literal["start", "center", "interpolate"]

#: Kaldi fbank framing used by the AST feature extractor.
FRAME_LENGTH = 400  #: 25 ms at 16 kHz
FRAME_SHIFT = 160  #: 10 ms at 16 kHz


def frames_for(seconds: float) -> int:
    """Fbank frames the AST feature extractor makes from `seconds` of 16 kHz audio."""
    samples = round(seconds * 16_000)
    if samples < FRAME_LENGTH:
        return 0
    return 1 + (samples - FRAME_LENGTH) // FRAME_SHIFT


def grid_shape(
    frames: int, mel_bins: int = 128, patch: int = 16, fstride: int = 10, tstride: int = 10
) -> tuple[int, int]:
    """(frequency, time) patches of an AST input of `frames` x `mel_bins`."""
    if frames < patch:
        raise ValueError(f"{frames} frames is shorter than one {patch}-frame patch")
    return (mel_bins - patch) // fstride + 1, (frames - patch) // tstride + 1


def adapt_positions(
    embeddings: np.ndarray, freq: int, time_old: int, time_new: int, mode: PositionMode
) -> np.ndarray:
    """Position embeddings (1, 2 + freq * time_old, hidden) -> (1, 2 + freq * time_new, hidden).

    The first two rows (class and distillation tokens) are kept; the patch rows, ordered
    frequency-major like AST's patch embedding, are cut or resampled along time.
    """
    emb = np.asarray(embeddings)
    if emb.ndim != 3 or emb.shape[0] != 1 or emb.shape[1] != 2 + freq * time_old:
        raise ValueError(
            f"position embeddings of shape {emb.shape} do not match a {freq}x{time_old} grid"
        )
    if time_new < 1:
        raise ValueError("the new time axis needs at least one patch")
    hidden = emb.shape[2]
    grid = emb[0, 2:].reshape(freq, time_old, hidden)
    if mode == "interpolate" or time_new > time_old:
        grid = _resample_time(grid, time_new)
    elif mode == "center":
        first = time_old // 2 - time_new // 2
        grid = grid[:, first : first + time_new]
    elif mode == "start":
        grid = grid[:, :time_new]
    else:
        raise ValueError(f"unknown position mode {mode!r}")
    out = np.concatenate([emb[0, :2], grid.reshape(freq * time_new, hidden)])
    return out[None].astype(emb.dtype, copy=False)


def _resample_time(grid: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of axis 1 (half-pixel centres, like align_corners=False)."""
    old = grid.shape[1]
    pos = np.clip((np.arange(length) + 0.5) * old / length - 0.5, 0, old - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, old - 1)
    frac = (pos - lo)[None, :, None]
    out: np.ndarray = grid[:, lo] * (1 - frac) + grid[:, hi] * frac
    return out
