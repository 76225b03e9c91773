"""The pure core of species detection (BirdNET): scores to detections, weeks, the filter.

No I/O here: the BirdNET backend (`backends/birdnet.py`) runs the models and calls these.

- `flat_sigmoid` is BirdNET's score: 1 / (1 + exp(-slope * clip(logit, -20, 20))) with
  slope = 2 - sensitivity, `sensitivity` 0.5..1.5 (BirdNET-Analyzer's `--sensitivity`,
  default 1): a higher sensitivity flattens the sigmoid, so weak calls (negative logits)
  score higher and more of them pass the minimum confidence.
- `week_of` is BirdNET's week of the year: 48 weeks, four per month (days 1-7, 8-14, 15-21,
  22-end), the calendar its metadata model was trained on.
- `expected` keeps the species whose metadata-model occurrence score at the device's
  coordinates and week reaches the threshold (BirdNET-Analyzer's `--sf_thresh`, 0.03).
- `detections` turns one window's scores into `SpeciesScore`s at or above the minimum
  confidence, highest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from shared.messages.species import MAX_SPECIES, SpeciesScore

#: Weeks of BirdNET's year (four per month); -1 asks its metadata model for the whole year.
WEEKS = 48
YEAR_ROUND = -1


def flat_sigmoid(logits: np.ndarray, sensitivity: float = 1.0) -> np.ndarray:
    """BirdNET's sigmoid of its logits with its sensitivity setting, float32."""
    slope = min(1.5, max(0.5, 2.0 - sensitivity))
    x = np.clip(np.asarray(logits, dtype=np.float64), -20.0, 20.0)
    return (1.0 / (1.0 + np.exp(-slope * x))).astype(np.float32)


def week_of(t: float) -> int:
    """BirdNET's week (1-48) of Unix time `t` (the UTC date)."""
    day = datetime.fromtimestamp(t, UTC)
    return (day.month - 1) * 4 + min(4, (day.day - 1) // 7 + 1)


def expected(occurrence: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of the species the metadata model expects (occurrence >= threshold)."""
    return np.asarray(occurrence) >= threshold


def detections(
    scores: np.ndarray,
    species: Sequence[tuple[str, str]],
    min_confidence: float,
    allowed: np.ndarray | None = None,
) -> list[SpeciesScore]:
    """Species of one window scored at or above `min_confidence` (and `allowed`, when given),
    highest first, at most MAX_SPECIES; ties keep the model's order."""
    row = np.asarray(scores, dtype=np.float64)
    if row.ndim != 1 or len(row) != len(species):
        raise ValueError(f"score vector of shape {row.shape} for {len(species)} species")
    if not np.all(np.isfinite(row)):
        raise ValueError("non-finite score from the model")
    keep = row >= min_confidence
    if allowed is not None:
        keep &= allowed
    found = np.flatnonzero(keep)
    order = found[np.argsort(-row[found], kind="stable")][:MAX_SPECIES]
    return [
        SpeciesScore(
            scientific_name=species[i][0],
            common_name=species[i][1],
            score=float(np.clip(row[i], 0.0, 1.0)),
        )
        for i in order
    ]
