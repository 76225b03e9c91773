"""Chart functions: a DataFrame in, a figure with the expected traces out (charts, figures)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go

from services.dashboard import charts, core, figures, queries

T0 = datetime(2025, 5, 26, 14, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
DAY = timedelta(days=1)


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


def summaries_frame(minutes: list[int]) -> pd.DataFrame:
    n = len(minutes)
    return pd.DataFrame(
        {
            "device": ["yor"] * n,
            "bucket": [T0 + m * MIN for m in minutes],
            "laeq_db": [57.0] * n,
            "lamax_db": [75.0] * n,
            "lamin_db": [45.0] * n,
            "l10_db": [64.0] * n,
            "l50_db": [58.0] * n,
            "l90_db": [52.0] * n,
            "coverage": [1.0] * n,
        }
    )


def overview(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["last_seen"] = pd.to_datetime(frame["last_seen"], utc=True)
    return core.with_states(frame, T0, 30.0, 60.0)


def test_missing_buckets_break_the_line() -> None:
    fig = figures.level_timeline(levels_frame("yor", [0, 1, 5, 6]), summaries_frame([]), "#000",
                                 MIN, T0, T0 + DAY, "UTC")  # fmt: skip
    ys = list(fig.data[0].y)
    assert len(ys) == 5
    assert math.isnan(ys[2])
    assert fig.data[0].connectgaps is False
    assert len(charts.break_gaps(levels_frame("yor", [0, 1, 2]), MIN)) == 3


def test_one_bucket_is_a_point_on_the_range_axis_inside_the_plot() -> None:
    """The prototype's 'single dot on an axis ticked in milliseconds, drawn above the plot'."""
    fig = figures.level_timeline(levels_frame("yor", [0]), summaries_frame([0]), "#000", MIN,
                                 T0 - DAY / 2, T0 + DAY / 2, "Europe/London")  # fmt: skip
    assert list(fig.layout.xaxis.range) == [T0 - DAY / 2, T0 + DAY / 2]
    assert fig.layout.xaxis.title.text == "time (Europe/London)"
    lo, hi = fig.layout.yaxis.range
    assert lo < 50 - 2 and hi > 75 + 2  # LAeq 50 and LAFmax 75 both well inside
    assert fig.layout.yaxis.title.text == "dB(A)"
    assert [t.name for t in fig.data] == ["L90", "L10-L90", "LAFmax", "LAeq"]
    assert fig.data[1].fill == "tonexty"


def test_device_colours_do_not_depend_on_the_selection() -> None:
    every = figures.device_colours(["ouse", "yor", "lab"])
    again = figures.device_colours(["yor", "lab", "ouse", "lab"])
    assert every == again and len(set(every.values())) == 3


def test_fleet_map_is_tile_free_and_marks_the_never_seen() -> None:
    frame = overview(
        [
            {"device": "yor", "name": "York Road", "latitude": 53.959, "longitude": -1.081,
             "sync_interval": 30.0, "last_seen": T0, "laeq_db": 62.0},
            {"device": "ouse", "name": None, "latitude": 53.957, "longitude": -1.084,
             "sync_interval": 30.0, "last_seen": T0 - DAY, "laeq_db": 48.0},
            {"device": "spare", "name": None, "latitude": 53.95, "longitude": -1.09,
             "sync_interval": 30.0, "last_seen": None, "laeq_db": None},
            {"device": "lab", "name": None, "latitude": None, "longitude": None,
             "sync_interval": 30.0, "last_seen": T0, "laeq_db": 55.0},
        ]
    )  # fmt: skip
    fig = figures.fleet_map(frame)
    assert fig is not None
    assert all(isinstance(t, go.Scatter) for t in fig.data)  # plain axes: no tiles
    by_state = {t.name: list(t.text) for t in fig.data}
    assert by_state == {"online": ["yor"], "offline": ["ouse (offline)"],
                        "never seen": ["spare (never seen)"]}  # fmt: skip
    assert figures.points(fig) == 3
    assert fig.layout.coloraxis.colorbar.title.text == "LAeq dB(A)"
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio > 1.5
    tiled = figures.fleet_map(frame, "open-street-map")
    assert tiled is not None and all(isinstance(t, go.Scattermap) for t in tiled.data)
    assert figures.fleet_map(frame[frame["device"] == "lab"]) is None


def test_hour_class_heat_map_fills_every_hour() -> None:
    counts = pd.DataFrame({"hour": [7, 8, 22], "label": ["Car", "Car", "Bird"],
                           "windows": [10, 20, 5]})  # fmt: skip
    fig = figures.hour_class_heatmap(counts, "UTC")
    (heat,) = fig.data
    assert list(heat.x) == list(range(24))
    assert list(heat.y) == ["Bird", "Car"]  # most heard on top (plotly draws the last on top)
    assert heat.z[1][8] == 20 and heat.z[0][7] == 0
    assert fig.layout.xaxis.title.text == "hour of day (UTC)"


def test_spectrogram_orders_bands_by_frequency() -> None:
    bands = pd.DataFrame(
        {
            "bucket": [T0] * 3,
            "band": ["1000", "63", "8000"],
            "centre_hz": [1000.0, 63.1, 7943.0],
            "db": [50.0, 40.0, 30.0],
        }
    )
    fig = figures.spectrogram(bands, MIN, T0, T0 + MIN, "UTC")
    assert list(fig.data[0].y) == ["63 Hz", "1000 Hz", "8000 Hz"]
    assert fig.data[0].colorbar.title.text == "dB SPL"


def test_class_levels_boxes_loudest_first() -> None:
    frame = pd.DataFrame({"label": ["Bird", "Siren"], "windows": [10, 4], "laeq_db": [52.0, 75.0],
                          "p05": [45.0, 70.0], "p25": [48.0, 72.0], "p50": [50.0, 74.0],
                          "p75": [53.0, 76.0], "p95": [58.0, 80.0], "min_db": [40.0, 68.0],
                          "max_db": [60.0, 82.0]})  # fmt: skip
    fig = figures.class_levels_figure(frame)
    (box,) = fig.data
    assert list(box.x) == ["Siren (4)", "Bird (10)"]
    assert list(box.median) == [74.0, 50.0]
    assert fig.layout.yaxis.title.text == "LAeq dB(A)"


def test_empty_frames_give_empty_figures() -> None:
    empty = pd.DataFrame(columns=["device", "bucket", "leq_db", "laeq_db"])
    for fig in (
        figures.fleet_levels(empty, {}, MIN, T0, T0 + DAY, "UTC"),
        figures.level_timeline(empty, empty, "#000", MIN, T0, T0 + DAY, "UTC"),
        figures.hour_class_heatmap(pd.DataFrame(), "UTC"),
        figures.spectrogram(pd.DataFrame(), MIN, T0, T0 + DAY, "UTC"),
        figures.indices_figure(pd.DataFrame(), "#000", MIN, T0, T0 + DAY, "UTC"),
        figures.class_levels_figure(pd.DataFrame()),
        charts.top_classes_figure(pd.DataFrame(columns=["label", "detections"])),
    ):
        assert isinstance(fig, go.Figure)
        assert len(fig.data) == 0
        assert fig.layout.annotations[0].text.startswith("No ")


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
    assert list(bar.y) == ["Car", "Speech", "Bird"]  # plotly draws the last on top
    assert list(bar.x) == [9, 10, 11]


def test_index_names_cover_the_index_columns() -> None:
    assert set(queries.INDEX_COLUMNS) == set(charts.INDEX_NAMES)


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
