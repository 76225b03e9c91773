"""Per-interval statistics of the Fast A-weighted level: LAeq, LAmax, LAmin, L10, L50, L90.

LAeq is the energy mean of the A-weighted signal over the interval. LAmax and LAmin are the
extremes of the Fast (125 ms) time-weighted level at full sample rate. The statistical levels
come from the Fast level sampled every 10 ms on a grid that runs on across chunks: L10 is the
level exceeded 10 % of that time (the 90th percentile), L50 the median, L90 the 10th percentile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.levels.intervals import split
from services.levels.measure import ms_to_spl
from shared.messages import Calibration, LevelsSummary

#: Sampling period of the Fast level for the statistical levels, seconds.
STAT_STEP = 0.01


@dataclass
class _Interval:
    index: int
    first_seq: int
    energy: float = 0.0  # sum of A-weighted squares / rate: mean square x seconds
    seconds: float = 0.0
    fast_max: float = 0.0
    fast_min: float = float("inf")
    picks: list[np.ndarray] = field(default_factory=list)


@dataclass
class SummaryTracker:
    """Accumulates one device's Fast A-weighted level into intervals of `length` seconds."""

    device: str
    length: float
    _open: _Interval | None = field(default=None, init=False)
    _count: int = field(default=0, init=False)  # samples seen, for the 10 ms sampling grid

    def add(
        self,
        start: float,
        rate: int,
        seq: int,
        squared: np.ndarray,
        fast: np.ndarray,
        cal: Calibration,
        uncalibrated: bool,
    ) -> list[LevelsSummary]:
        """Add one chunk (A-weighted squares and their Fast mean square); finished intervals."""
        done: list[LevelsSummary] = []
        step = max(1, round(STAT_STEP * rate))
        for k, first, end in split(start, rate, len(squared), self.length):
            if self._open is not None and self._open.index != k:
                done.extend(self._finish(cal, uncalibrated))
            if self._open is None:
                self._open = _Interval(index=k, first_seq=seq)
            cur = self._open
            cur.energy += float(np.sum(squared[first:end], dtype=np.float64)) / rate
            cur.seconds += (end - first) / rate
            piece = fast[first:end]
            cur.fast_max = max(cur.fast_max, float(piece.max()))
            cur.fast_min = min(cur.fast_min, float(piece.min()))
            offset = (-(self._count + first)) % step
            cur.picks.append(piece[offset::step].astype(np.float32))
        self._count += len(squared)
        return done

    def flush(self, cal: Calibration, uncalibrated: bool) -> list[LevelsSummary]:
        """The open interval as it is (coverage < 1), if any."""
        return self._finish(cal, uncalibrated)

    def restart_grid(self) -> None:
        """A gap in the stream: the sampling grid starts again with the next sample."""
        self._count = 0

    def _finish(self, cal: Calibration, uncalibrated: bool) -> list[LevelsSummary]:
        cur, self._open = self._open, None
        if cur is None or cur.seconds <= 0:
            return []
        values = np.concatenate(cur.picks) if cur.picks else np.empty(0, np.float32)
        if values.size == 0:
            values = np.array([cur.fast_min, cur.fast_max])
        p90, p50, p10 = np.percentile(values.astype(np.float64), [90, 50, 10])
        l10, l50, l90 = ms_to_spl(p90, cal), ms_to_spl(p50, cal), ms_to_spl(p10, cal)
        return [
            LevelsSummary(
                device=self.device,
                seq=cur.first_seq,
                start=cur.index * self.length,
                duration=self.length,
                laeq_db=ms_to_spl(cur.energy / cur.seconds, cal),
                lamax_db=ms_to_spl(cur.fast_max, cal),
                lamin_db=ms_to_spl(cur.fast_min, cal),
                l10_db=l10,
                l50_db=min(l50, l10),
                l90_db=min(l90, l50, l10),
                coverage=min(1.0, cur.seconds / self.length),
                uncalibrated=uncalibrated,
            )
        ]
