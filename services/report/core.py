"""Noise-report figures from rollup buckets: pure functions, no I/O.

Per device and local calendar day `d` (in the device's time zone):

- Lday: LAeq over 07:00-19:00 of `d`; Levening: 19:00-23:00 of `d`; Lnight: 23:00 of `d` to
  07:00 of `d + 1` (the night that starts on that day's evening, as in Directive 2002/49/EC,
  Annex I). Each is the energetic mean `10 log10(sum energy / sum seconds)` of the buckets whose
  start falls in the period; a period with no measured second is None.
- Lden weights each period by its real length in hours (12, 4 and 8 on an ordinary day; the
  night is 7 or 9 hours when the clocks change during it):
  `10 log10((Td 10^(Ld/10) + Te 10^((Le+5)/10) + Tn 10^((Ln+10)/10)) / (Td + Te + Tn))`.
  None when any of the three periods is None.
- Hourly LAeq over the local hours of `d` (23 or 25 of them on a day the clocks change).
- Coverage of a period or hour: seconds measured with an A-weighted level / its length.
- Events: noise events whose window starts in the period or hour.

Period boundaries are the first instant at which the local clock reads the boundary's time;
a boundary inside a daylight-saving gap is the moment the clocks jump.
"""

from __future__ import annotations

import bisect
import itertools
import math
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

#: The periods of the Lden day: name, first local hour, local hour it ends (next day if <=).
PERIODS: tuple[tuple[str, int, int], ...] = (("day", 7, 19), ("evening", 19, 23), ("night", 23, 7))
#: Penalty added to each period's level in Lden, dB.
PENALTY_DB: dict[str, float] = {"day": 0.0, "evening": 5.0, "night": 10.0}


def zone_of(name: str | None) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; None is UTC. Raises ValueError for an unknown name."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class Interval:
    """[start, end) as aware UTC datetimes."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return (self.end - self.start).total_seconds()

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, datetime) and self.start <= instant < self.end


@dataclass(frozen=True)
class Bucket:
    """One rollup bucket (a row of levels_hourly or levels_minute)."""

    start: datetime  # aware; UTC start of the bucket
    width_s: float  # 3600 for hourly rollups, 60 for minute rollups
    laeq_seconds: float  # seconds measured with an LAeq
    laeq_energy: float  # sum of window seconds x 10^(LAeq/10)


@dataclass(frozen=True)
class Figure:
    """LAeq, coverage and event count of one period or hour."""

    name: str  # day, evening or night (the period an hour lies in, for hours)
    span: Interval
    laeq_db: float | None
    coverage: float
    events: int

    @property
    def hours(self) -> float:
        """The real length of the span in hours."""
        return self.span.seconds / 3600


@dataclass(frozen=True)
class DayReport:
    """The Lden day of one device: local date `day`, 07:00 that day to 07:00 the next."""

    device: str
    day: date
    timezone: str
    periods: dict[str, Figure]  # day, evening, night
    lden_db: float | None


@dataclass(frozen=True)
class HourReport:
    """One local hour of one device."""

    device: str
    day: date  # local calendar date the hour belongs to
    timezone: str
    figure: Figure


def wall_start(day: date, hour: int, zone: zoneinfo.ZoneInfo) -> datetime:
    """The first UTC instant at which the local clock of `zone` reads `hour`:00 on `day`
    (`hour` 24 is midnight of the next day). In a repeated hour, the first occurrence; in a
    skipped hour, the moment the clocks jump."""
    naive = datetime.combine(day, time(0)) + timedelta(hours=hour)
    candidates = sorted(naive.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))
    for instant in candidates:
        if instant.astimezone(zone).replace(tzinfo=None) == naive:
            return instant
    # A gap: local time rises through it; find the jump to the second (transitions fall on
    # whole seconds).
    lo, hi = (int(c.timestamp()) for c in candidates)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def period_spans(day: date, zone: zoneinfo.ZoneInfo) -> dict[str, Interval]:
    """The day, evening and night of the Lden day `day`."""
    spans = {}
    for name, first, last in PERIODS:
        end_day = day + timedelta(days=1) if last <= first else day
        spans[name] = Interval(wall_start(day, first, zone), wall_start(end_day, last, zone))
    return spans


def hour_spans(day: date, zone: zoneinfo.ZoneInfo) -> list[tuple[str, Interval]]:
    """The local hours of calendar day `day` with the period each lies in: hour-long steps
    from local midnight, also cut at period boundaries (which matters only in zones whose
    clocks move by less than an hour)."""
    start, end = wall_start(day, 0, zone), wall_start(day, 24, zone)
    cuts = {start + timedelta(hours=k) for k in range(26)}
    previous = period_spans(day - timedelta(days=1), zone)
    current = period_spans(day, zone)
    named = [("night", previous["night"]), *current.items()]
    cuts |= {s.start for _, s in named} | {s.end for _, s in named}
    points = sorted(c for c in cuts if start <= c <= end)
    out = []
    for a, b in itertools.pairwise(points):
        name = next(n for n, s in named if a in s)
        out.append((name, Interval(a, b)))
    return out


def needed_span(first: date, last: date, zone: zoneinfo.ZoneInfo) -> Interval:
    """The UTC range a report of local days first..last reads: from local midnight of
    `first` to the end of the night after `last`."""
    return Interval(wall_start(first, 0, zone), wall_start(last + timedelta(days=1), 7, zone))


def bucket_width(first: date, last: date, zone: zoneinfo.ZoneInfo) -> int:
    """3600 when every hour and period boundary of the report falls on a whole UTC hour (so
    hourly rollups serve it exactly), else 60 (minute rollups; e.g. UTC+05:30)."""
    day = first
    while day <= last:
        for _, span in hour_spans(day, zone):
            if span.start.timestamp() % 3600 or span.end.timestamp() % 3600:
                return 60
        day += timedelta(days=1)
    night_end = period_spans(last, zone)["night"].end
    return 60 if night_end.timestamp() % 3600 else 3600


def energetic_mean(energy: float, seconds: float) -> float | None:
    """10 log10(energy / seconds); None for no measured second."""
    if seconds <= 0 or energy <= 0:
        return None
    return 10 * math.log10(energy / seconds)


def lden(figures: dict[str, Figure]) -> float | None:
    """Lden from the three periods, each weighted by its real length in hours."""
    total = 0.0
    weight = 0.0
    for name, fig in figures.items():
        if fig.laeq_db is None:
            return None
        total += fig.hours * 10 ** ((fig.laeq_db + PENALTY_DB[name]) / 10)
        weight += fig.hours
    return 10 * math.log10(total / weight)


class _Index:
    """Sorted buckets and event starts, for summing over spans."""

    def __init__(self, buckets: Sequence[Bucket], events: Sequence[datetime]) -> None:
        self.buckets = sorted(buckets, key=lambda b: b.start)
        self.starts = [b.start for b in self.buckets]
        self.events = sorted(events)

    def figure(self, name: str, span: Interval) -> Figure:
        lo = bisect.bisect_left(self.starts, span.start)
        hi = bisect.bisect_left(self.starts, span.end)
        energy = seconds = 0.0
        for b in self.buckets[lo:hi]:
            if b.start + timedelta(seconds=b.width_s) > span.end:
                raise ValueError(
                    f"a {b.width_s:g} s bucket at {b.start.isoformat()} crosses the boundary "
                    f"{span.end.isoformat()}: use finer rollups"
                )
            energy += b.laeq_energy
            seconds += b.laeq_seconds
        events = bisect.bisect_left(self.events, span.end) - bisect.bisect_left(
            self.events, span.start
        )
        return Figure(name, span, energetic_mean(energy, seconds), seconds / span.seconds, events)


def _days(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"the last day {last} is before the first {first}")
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def day_reports(
    device: str,
    timezone: str | None,
    first: date,
    last: date,
    buckets: Sequence[Bucket],
    events: Sequence[datetime],
) -> list[DayReport]:
    """One report per local day first..last (inclusive)."""
    zone = zone_of(timezone)
    index = _Index(buckets, events)
    out = []
    for day in _days(first, last):
        figures = {name: index.figure(name, span) for name, span in period_spans(day, zone).items()}
        out.append(DayReport(device, day, str(zone), figures, lden(figures)))
    return out


def hour_reports(
    device: str,
    timezone: str | None,
    first: date,
    last: date,
    buckets: Sequence[Bucket],
    events: Sequence[datetime],
) -> list[HourReport]:
    """The local hours of the calendar days first..last (inclusive)."""
    zone = zone_of(timezone)
    index = _Index(buckets, events)
    return [
        HourReport(device, day, str(zone), index.figure(name, span))
        for day in _days(first, last)
        for name, span in hour_spans(day, zone)
    ]


def _db(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


#: Columns of a day row, in order.
DAY_COLUMNS: tuple[str, ...] = (
    "device",
    "date",
    "timezone",
    "lden_db",
    *(f"l{p}_db" for p, _, _ in PERIODS),
    *(f"{p}_coverage" for p, _, _ in PERIODS),
    *(f"{p}_hours" for p, _, _ in PERIODS),
    *(f"{p}_events" for p, _, _ in PERIODS),
)
#: Columns of an hour row, in order.
HOUR_COLUMNS: tuple[str, ...] = (
    "device",
    "date",
    "timezone",
    "start_local",
    "start_utc",
    "period",
    "laeq_db",
    "coverage",
    "events",
)


def day_row(report: DayReport) -> dict[str, Any]:
    """A flat row (dB to 0.01, coverage to 0.0001) in DAY_COLUMNS order."""
    row: dict[str, Any] = {
        "device": report.device,
        "date": report.day,
        "timezone": report.timezone,
        "lden_db": _db(report.lden_db),
    }
    for name, fig in report.periods.items():
        row[f"l{name}_db"] = _db(fig.laeq_db)
    for name, fig in report.periods.items():
        row[f"{name}_coverage"] = round(fig.coverage, 4)
    for name, fig in report.periods.items():
        row[f"{name}_hours"] = round(fig.hours, 4)
    for name, fig in report.periods.items():
        row[f"{name}_events"] = fig.events
    return {c: row[c] for c in DAY_COLUMNS}


def hour_row(report: HourReport) -> dict[str, Any]:
    """A flat row in HOUR_COLUMNS order; start_local is ISO 8601 text with its UTC offset."""
    fig = report.figure
    return {
        "device": report.device,
        "date": report.day,
        "timezone": report.timezone,
        "start_local": fig.span.start.astimezone(zone_of(report.timezone)).isoformat(),
        "start_utc": fig.span.start,
        "period": fig.name,
        "laeq_db": _db(fig.laeq_db),
        "coverage": round(fig.coverage, 4),
        "events": fig.events,
    }
