"""Synthetic rollup buckets for report tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from services.report.core import Bucket, Interval


def bucket(start: datetime, level_db: float, seconds: float = 3600.0, width: int = 3600) -> Bucket:
    """A bucket measured for `seconds` at a steady `level_db`."""
    return Bucket(start, float(width), seconds, seconds * 10 ** (level_db / 10))


def hourly(span: Interval, levels: Sequence[float | None]) -> list[Bucket]:
    """One full hourly bucket per hour of `span` with the given levels (None: not measured)."""
    starts = [span.start + timedelta(hours=k) for k in range(int(span.seconds // 3600))]
    assert len(starts) == len(levels), (len(starts), len(levels))
    return [bucket(s, level) for s, level in zip(starts, levels, strict=True) if level is not None]


#: The minute rollups: the same columns (IF NOT EXISTS, as above).
