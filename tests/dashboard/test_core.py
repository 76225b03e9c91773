"""Pure decisions: ranges, bucket widths, device state, formatting, map framing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from services.dashboard import core, queries

NOW = datetime(2025, 5, 26, 14, 57, 49, tzinfo=UTC)


def test_presets_end_now() -> None:
    day = core.preset_range("Last day", NOW)
    assert (day.start, day.end, day.span) == (NOW - timedelta(days=1), NOW, timedelta(days=1))
    assert core.preset_range("Last week", NOW).span == timedelta(weeks=1)
    with pytest.raises(ValueError, match="unknown time range"):
        core.preset_range("Last century", NOW)


def test_time_range_must_be_aware_and_ordered() -> None:
    with pytest.raises(ValueError, match="after its start"):
        core.TimeRange(NOW, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        core.TimeRange(NOW.replace(tzinfo=None), NOW.replace(tzinfo=None) + timedelta(1))


@pytest.mark.parametrize(
    ("span", "points", "width"),
    [
        (timedelta(minutes=10), 1500, timedelta(seconds=1)),
        (timedelta(hours=1), 1500, timedelta(seconds=5)),
        (timedelta(days=1), 1500, timedelta(minutes=1)),
        (timedelta(weeks=1), 1500, timedelta(minutes=10)),
        (timedelta(days=365), 1500, timedelta(hours=6)),
        (timedelta(days=3650), 50, timedelta(days=28 * 3)),
    ],
)
def test_bucket_keeps_points_bounded(span: timedelta, points: int, width: timedelta) -> None:
    got = core.bucket_for(span, points)
    assert got == width
    assert span / got <= points


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        core.bucket_for(timedelta(hours=1), 0)


@pytest.mark.parametrize(
    ("seconds", "text"), [(1, "1 s"), (90, "90 s"), (300, "5 min"), (10800, "3 h"), (172800, "2 d")]
)
def test_describe_bucket(seconds: int, text: str) -> None:
    assert core.describe_bucket(timedelta(seconds=seconds)) == text


def test_device_state_from_freshness() -> None:
    limit = core.offline_after(30.0, 30.0, 60.0)
    assert limit == 120.0
    assert core.offline_after(None, 3600.0, 60.0) == 7260.0
    assert core.offline_after(0.0, 10.0, 0.0) == 20.0
    assert core.device_state(NOW - timedelta(seconds=100), NOW, limit) == ("online", 100.0)
    assert core.device_state(NOW - timedelta(seconds=121), NOW, limit) == ("offline", 121.0)
    assert core.device_state(None, NOW, limit) == ("never seen", None)
    assert core.device_state(NOW + timedelta(seconds=2), NOW, limit) == ("online", 0.0)


def test_with_states_uses_each_device_interval() -> None:
    frame = pd.DataFrame(
        {
            "device": ["a", "b", "c"],
            "sync_interval": [30.0, 3600.0, None],
            "last_seen": pd.to_datetime(
                [NOW - timedelta(minutes=10), NOW - timedelta(minutes=10), pd.NaT], utc=True
            ),
        }
    )
    out = core.with_states(frame, NOW, 30.0, 60.0)
    assert list(out["state"]) == ["offline", "online", "never seen"]
    assert out["age_s"].tolist()[:2] == [600.0, 600.0]
    assert pd.isna(out["age_s"].iloc[2])
    assert "state" not in frame.columns


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "never"), (float("nan"), "never"), (5.5, "5 s ago"), (61, "1 min ago"),
     (7300, "2 h ago"), (90000, "1 d ago")],
)  # fmt: skip
def test_describe_age(seconds: float | None, text: str) -> None:
    assert core.describe_age(seconds) == text


@pytest.mark.parametrize(
    ("classes", "text"),
    [
        (
            [{"label": "Car", "score": 0.812}, {"label": "Horn", "score": 0.3}],
            "Car 0.81, Horn 0.30",
        ),
        ([{"label": "Car"}], "Car"),
        (None, ""),
        ("Car", ""),
        ([1, {"score": 1}, {"label": 3}, {"label": "Dog", "score": True}], "Dog"),
        (
            [{"label": str(i), "score": 0.5} for i in range(9)],
            "0 0.50, 1 0.50, 2 0.50, 3 0.50, 4 0.50",
        ),
    ],
)
def test_format_classes_tolerates_any_json(classes: Any, text: str) -> None:
    assert core.format_classes(classes) == text


def test_map_view_frames_the_points() -> None:
    lat, lon, zoom = core.map_view([53.959], [-1.081])
    assert (lat, lon, zoom) == (53.959, -1.081, 14.0)
    lat, lon, zoom = core.map_view([53.9, 54.0], [-1.2, -1.0])
    assert lat == pytest.approx(53.95, abs=1e-3)
    assert lon == pytest.approx(-1.1)
    assert 8 < zoom < 11
    # Spread north-south (as a street of sensors): every point inside the plot area, none
    # closer to its edge than a sixth of it, and one edge reached at that margin.
    width, height = core.MAP_PLOT_PX
    cases: list[tuple[list[float], list[float]]] = [
        ([53.95, 53.96, 53.97], [-1.08, -1.081, -1.079]),
        ([0.0, 0.01], [5.0, 6.0]),
    ]
    for lats, lons in cases:
        lat, lon, zoom = core.map_view(lats, lons)
        world = 512 * 2**zoom
        xs = [(x - lon) / 360 * world for x in lons]
        ys = [(core.mercator_y(y) - core.mercator_y(lat)) / (2 * math.pi) * world for y in lats]
        assert max(abs(x) for x in xs) <= width / 3 + 1e-6
        assert max(abs(y) for y in ys) <= height / 3 + 1e-6
        assert max(max(abs(x) for x in xs) / width, max(abs(y) for y in ys) / height) == (
            pytest.approx(1 / 3)
        )
    assert core.map_view([-60, 70], [-170, 170])[2] == 1.0
    with pytest.raises(ValueError):
        core.map_view([], [])


def test_rollup_for_picks_raw_minute_or_hourly() -> None:
    h, day, minute = timedelta(hours=1), timedelta(days=1), timedelta(minutes=1)
    assert queries.rollup_for(6 * h, h, "h", "m") is None
    assert queries.rollup_for(day, 2 * h, "h", "m") == ("h", h)
    assert queries.rollup_for(day, 10 * minute, "h", "m") == ("m", minute)
    assert queries.rollup_for(day, 10 * minute, "h") is None
    assert queries.rollup_for(day, timedelta(seconds=90), "h", "m") is None
    assert queries.rollup_for(day, None, "h") == ("h", h)
    assert core.chart_bucket(day, 1500) == minute  # 57.6 s per point, raised to a minute
    assert core.chart_bucket(timedelta(weeks=1), 1500) == h
    assert core.chart_bucket(h, 1500) == timedelta(seconds=5)
