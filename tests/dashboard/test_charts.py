"""Chart functions: a DataFrame in, a figure with the expected traces out."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go

from services.dashboard import charts, core, queries

T0 = datetime(2025, 5, 26, 14, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def levels_frame(device: str, minutes: list[int], laeq: bool = True) -> pd.DataFrame:
    n = len(minutes)
    return pd.DataFrame(
        {
            "device": [device] * n,
            "bucket": [T0 + m * MIN for m in minutes],
            "leq_db": [60.0] * n,
            "leq_max_db": [65.0] * n,
            "leq_min_db": [55.0] * n,
            "laeq_db": [50.0] * n if laeq else [None] * n,
            "windows": [60] * n,
        }
    )


def test_level_figure_one_line_per_device_and_weighting() -> None:
    frame = pd.concat([levels_frame("yor", [0, 1, 2]), levels_frame("ouse", [0, 1], laeq=False)])
    fig = charts.level_figure(frame, MIN)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["ouse Leq", "yor Leq", "yor LAeq"]
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert fig.data[2].line.dash == "dash"
    assert fig.data[1].line.color == fig.data[2].line.color
    assert "1 min" in fig.layout.title.text


def test_missing_buckets_break_the_line() -> None:
    frame = levels_frame("yor", [0, 1, 5, 6])
    fig = charts.level_figure(frame, MIN)
    ys = list(fig.data[0].y)
    assert len(ys) == 5
    assert math.isnan(ys[2])
    assert not any(math.isnan(y) for y in ys[:2] + ys[3:])
    assert fig.data[0].connectgaps is False
    # Contiguous buckets are drawn as they are.
    assert len(charts.break_gaps(levels_frame("yor", [0, 1, 2]), MIN)) == 3


def test_empty_frames_give_empty_figures() -> None:
    empty = pd.DataFrame(columns=["device", "bucket", "leq_db", "laeq_db"])
    for fig in (
        charts.level_figure(empty, MIN),
        charts.summary_figure(empty, MIN),
        charts.top_classes_figure(pd.DataFrame(columns=["label", "detections"])),
        charts.indices_figure(pd.DataFrame(columns=["device", "bucket", "aci"]), MIN),
    ):
        assert isinstance(fig, go.Figure)
        assert len(fig.data) == 0
        assert fig.layout.annotations[0].text == "No data in this range"


def test_summary_figure_draws_laeq_and_percentiles() -> None:
    frame = pd.DataFrame(
        {
            "device": ["yor", "yor"],
            "bucket": [T0, T0 + MIN],
            "laeq_db": [57.0, 58.0],
            "lamax_db": [75.0, 76.0],
            "lamin_db": [45.0, 44.0],
            "l10_db": [65.0, 66.0],
            "l50_db": [58.0, 58.0],
            "l90_db": [50.0, 51.0],
            "coverage": [1.0, 1.0],
        }
    )
    fig = charts.summary_figure(frame, MIN)
    assert [t.name for t in fig.data] == ["yor LAeq", "yor L10", "yor L90"]


def test_top_classes_bars_most_frequent_on_top() -> None:
    frame = pd.DataFrame(
        {
            "label": ["Bird", "Speech", "Car"],
            "detections": [11, 10, 9],
            "devices": [2, 1, 1],
            "mean_rating": [0.35, 0.9, 0.5],
            "max_rating": [0.8, 0.9, 0.5],
        }
    )
    fig = charts.top_classes_figure(frame)
    (bar,) = fig.data
    assert isinstance(bar, go.Bar)
    assert bar.orientation == "h"
    assert list(bar.y) == ["Car", "Speech", "Bird"]  # plotly draws the last on top
    assert list(bar.x) == [9, 10, 11]


def test_indices_figure_one_panel_per_present_index() -> None:
    frame = pd.DataFrame(
        {
            "device": ["yor", "yor", "ouse"],
            "bucket": [T0, T0 + MIN, T0],
            "aci": [100.0, 101.0, 90.0],
            "adi": [2.0, 2.1, 1.5],
            "aei": [None, None, None],
            "events": [2, 3, 0],
        }
    )
    fig = charts.indices_figure(frame, MIN)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["ACI (complexity)", "ADI (diversity)", "Events"]
    assert len(fig.data) == 3 * 2  # three indices x two devices
    assert sum(bool(t.showlegend) for t in fig.data) == 2
    assert set(queries.INDEX_COLUMNS) == set(charts.INDEX_NAMES)


def overview(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["last_seen"] = pd.to_datetime(frame["last_seen"], utc=True)
    return core.with_states(frame, T0, 30.0, 60.0)


def test_device_map_places_devices_with_coordinates() -> None:
    frame = overview(
        [
            {"device": "yor", "name": "York Road", "latitude": 53.959, "longitude": -1.081,
             "sync_interval": 30.0, "last_seen": T0 - MIN, "leq_db": 61.2, "laeq_db": 55.0},
            {"device": "ouse", "name": None, "latitude": 53.957, "longitude": -1.084,
             "sync_interval": 30.0, "last_seen": T0 - 10 * MIN, "leq_db": 45.0, "laeq_db": None},
            {"device": "lab", "name": None, "latitude": None, "longitude": None,
             "sync_interval": None, "last_seen": None, "leq_db": None, "laeq_db": None},
        ]
    )  # fmt: skip
    fig = charts.device_map(frame)
    assert fig is not None
    assert [t.name for t in fig.data] == ["online", "offline"]
    assert all(isinstance(t, go.Scattermap) for t in fig.data)
    assert list(fig.data[0].text) == ["yor"]
    assert "Leq 61.2 dB SPL" in fig.data[0].hovertext[0]
    assert "1 min ago" in fig.data[0].hovertext[0]
    assert "10 min ago" in fig.data[1].hovertext[0]
    assert fig.layout.map.style == "open-street-map"
    assert 53.95 < fig.layout.map.center.lat < 53.96


def test_device_map_none_without_coordinates() -> None:
    frame = overview(
        [{"device": "lab", "latitude": None, "longitude": None, "sync_interval": None,
          "last_seen": None}]
    )  # fmt: skip
    assert charts.device_map(frame) is None
    assert charts.device_map(frame.iloc[0:0]) is None


def test_gaps_figure_stacks_seconds_by_cause_per_device() -> None:
    by_cause = pd.DataFrame(
        {
            "device": ["ouse", "yor", "yor"],
            "kind": ["spool_overflow", "inference_overload", "service_down"],
            "gaps": [1, 2, 1],
            "seconds": [0.0, 60.0, 30.0],
        }
    )
    fig = charts.gaps_figure(by_cause)
    assert fig.layout.barmode == "stack"
    assert [t.name for t in fig.data] == ["inference_overload", "service_down", "spool_overflow"]
    overload = fig.data[0]
    assert list(overload.y) == ["yor", "ouse"]
    assert list(overload.x) == [60.0, 0.0]
    assert charts.gaps_figure(by_cause.iloc[0:0]).layout.annotations[0].text == (
        "No gaps recorded in this range"
    )
