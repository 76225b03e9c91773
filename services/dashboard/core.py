"""Pure decisions of the dashboard: time ranges, bucket widths, device state, formatting.

No database, no Streamlit: plain values in, plain values (or DataFrames) out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import pandas as pd

#: The preset time ranges offered in the sidebar, in display order.
PRESETS: Final[dict[str, timedelta]] = {
    "Last hour": timedelta(hours=1),
    "Last day": timedelta(days=1),
    "Last week": timedelta(weeks=1),
    "Last 30 days": timedelta(days=30),
}
CUSTOM: Final = "Custom"

#: Bucket widths a chart may use: readable on an axis, and each divides the next sensibly.
NICE_BUCKETS: Final[tuple[timedelta, ...]] = tuple(
    timedelta(seconds=s)
    for s in (
        1, 2, 5, 10, 15, 30,
        60, 120, 300, 600, 900, 1800,
        3600, 7200, 10800, 21600, 43200,
        86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400,
    )
)  # fmt: skip

#: Origin of every time bucket: buckets of a day start at midnight UTC, of an hour on the hour.
BUCKET_ORIGIN: Final = datetime.fromisoformat("2000-01-03T00:00:00+00:00")  # a Monday

#: Ranges longer than this are drawn from ingest's rollups (per minute, per hour), not raw rows.
ROLLUP_AFTER: Final = timedelta(hours=6)
#: Ranges longer than this are drawn in buckets of at least an hour (from the hourly rollups).
HOURLY_AFTER: Final = timedelta(days=2)

DeviceState = Literal["online", "offline", "never seen"]


@dataclass(frozen=True)
class TimeRange:
    """A half-open interval [start, end) of aware datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("time range bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("the end of the time range must be after its start")

    @property
    def span(self) -> timedelta:
        """Length of the range."""
        return self.end - self.start


def preset_range(name: str, now: datetime) -> TimeRange:
    """The range `name` (one of PRESETS) ending at `now`."""
    try:
        return TimeRange(now - PRESETS[name], now)
    except KeyError:
        raise ValueError(f"unknown time range {name!r}; one of {list(PRESETS)}") from None


def bucket_for(span: timedelta, max_points: int) -> timedelta:
    """The smallest nice bucket width that keeps `span` within `max_points` buckets."""
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    needed = span / max_points
    for width in NICE_BUCKETS:
        if width >= needed:
            return width
    # Longer than 28-day buckets allow: whole multiples of 28 days.
    return NICE_BUCKETS[-1] * math.ceil(needed / NICE_BUCKETS[-1])


def chart_bucket(span: timedelta, max_points: int) -> timedelta:
    """The bucket width of the page's time series: `bucket_for`, but at least a minute for a
    range longer than `ROLLUP_AFTER` and at least an hour beyond `HOURLY_AFTER`, so that
    long ranges read whole buckets of the per-minute or hourly rollups."""
    bucket = bucket_for(span, max_points)
    if span > HOURLY_AFTER:
        return max(bucket, timedelta(hours=1))
    if span > ROLLUP_AFTER:
        return max(bucket, timedelta(minutes=1))
    return bucket


def describe_bucket(width: timedelta) -> str:
    """'1 s', '5 min', '3 h', '2 d': a bucket width in words for chart titles."""
    seconds = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def offline_after(sync_interval_s: float | None, default_sync_s: float, grace_s: float) -> float:
    """Seconds without a new result after which a device counts as offline.

    Ingest writes a batch every `sync_interval`, so a healthy device's newest row can be up
    to one interval old, plus the time to fill a window; two intervals plus a grace is a
    quiet device, not a slow sync.
    """
    interval = sync_interval_s if sync_interval_s and sync_interval_s > 0 else default_sync_s
    return 2.0 * interval + grace_s


def device_state(
    last_seen: datetime | None, now: datetime, limit_s: float
) -> tuple[DeviceState, float | None]:
    """(state, age in seconds) of a device whose newest result ended at `last_seen`."""
    if last_seen is None or pd.isna(last_seen):
        return "never seen", None
    age = (now - last_seen).total_seconds()
    return ("online" if age <= limit_s else "offline"), max(age, 0.0)


def with_states(
    overview: pd.DataFrame, now: datetime, default_sync_s: float, grace_s: float
) -> pd.DataFrame:
    """The device overview with `state` and `age_s` columns added (a new frame)."""
    out = overview.copy()
    states: list[str] = []
    ages: list[float | None] = []
    for row in overview.itertuples(index=False):
        limit = offline_after(_float_or_none(row.sync_interval), default_sync_s, grace_s)
        state, age = device_state(_time_or_none(row.last_seen), now, limit)
        states.append(state)
        ages.append(age)
    out["state"] = pd.Series(states, index=out.index, dtype=object)
    out["age_s"] = pd.Series(ages, index=out.index, dtype=float)
    return out


def describe_age(seconds: float | None) -> str:
    """'never', '12 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    if seconds is None or math.isnan(seconds):
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def format_classes(classes: Any, limit: int = 5) -> str:
    """A noise event's `classes` JSON ([{label, score}, ...]) as 'Car 0.81, Horn 0.30'."""
    if not isinstance(classes, list):
        return ""
    parts: list[str] = []
    for item in classes[:limit]:
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            continue
        score = item.get("score")
        if isinstance(score, int | float) and not isinstance(score, bool):
            parts.append(f"{item['label']} {score:.2f}")
        else:
            parts.append(item["label"])
    return ", ".join(parts)


#: The plot area a web map is framed for, in pixels (the overview map's 440 px figure less its
#: title, legend and colour bar, in a narrow column): every point lands inside it.
MAP_PLOT_PX: tuple[int, int] = (500, 280)


def mercator_y(latitude: float) -> float:
    """Web Mercator's y of a latitude (radians of the projection; the world is 2 pi high)."""
    lat = math.radians(max(min(latitude, 85.0), -85.0))
    return math.log(math.tan(math.pi / 4 + lat / 2))


def map_view(
    latitudes: list[float], longitudes: list[float], plot_px: tuple[int, int] = MAP_PLOT_PX
) -> tuple[float, float, float]:
    """(centre latitude, centre longitude, zoom) that frames every point on a web map whose
    plot area is `plot_px` (width, height) pixels, with a margin of a sixth on each side."""
    if not latitudes or len(latitudes) != len(longitudes):
        raise ValueError("map_view needs as many latitudes as longitudes, at least one")
    lat_min, lat_max = min(latitudes), max(latitudes)
    lon_min, lon_max = min(longitudes), max(longitudes)
    y_min, y_max = mercator_y(lat_min), mercator_y(lat_max)
    # The centre is the middle in projected y, so the margins above and below are equal.
    y_mid = (y_min + y_max) / 2
    centre_lat = math.degrees(2 * math.atan(math.exp(y_mid)) - math.pi / 2)
    if lat_max == lat_min:
        centre_lat = lat_min
    centre = (centre_lat, (lon_min + lon_max) / 2)
    if lat_max - lat_min <= 0 and lon_max - lon_min <= 0:
        return centre[0], centre[1], 14.0
    # At zoom z the world is 512 * 2**z pixels wide (MapLibre's 512 px tiles) and as high.
    width, height = (2 / 3 * plot_px[0], 2 / 3 * plot_px[1])
    zooms = []
    if lon_max - lon_min > 0:
        zooms.append(math.log2(width * 360.0 / (512 * (lon_max - lon_min))))
    if y_max - y_min > 0:
        zooms.append(math.log2(height * 2 * math.pi / (512 * (y_max - y_min))))
    return centre[0], centre[1], float(min(max(min(zooms), 1.0), 16.0))


def _float_or_none(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return float(value)


def _time_or_none(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    if isinstance(value, pd.Timestamp):
        result: datetime = value.to_pydatetime()
        return result
    if isinstance(value, datetime):
        return value
    raise TypeError(f"expected a datetime, got {type(value).__name__}")
