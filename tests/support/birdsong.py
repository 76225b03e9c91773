"""Generated bird-like sounds: a Great Tit's two-note "tea-cher" song, at any sample rate."""

from __future__ import annotations

import numpy as np


def note(freq: float, seconds: float, rate: int) -> np.ndarray:
    """A pure whistle with a soft (square-root sine) envelope."""
    n = int(seconds * rate)
    envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
    return (np.sin(2 * np.pi * freq * np.arange(n) / rate) * envelope).astype(np.float32)


def great_tit_song(seconds: float = 3.0, rate: int = 48_000, amplitude: float = 0.3) -> np.ndarray:
    """Repeated "tea-cher" phrases: 70 ms at 6.5 kHz, 30 ms pause, 100 ms at 3.8 kHz, 80 ms
    pause (the shape of Parus major's commonest song type)."""
    phrase = np.concatenate(
        [
            note(6500, 0.07, rate),
            np.zeros(int(0.03 * rate), np.float32),
            note(3800, 0.10, rate),
            np.zeros(int(0.08 * rate), np.float32),
        ]
    )
    total = int(seconds * rate)
    reps = -(-total // len(phrase))
    return (amplitude * np.tile(phrase, reps)[:total]).astype(np.float32)
