"""Plotly figures of the overview, device and health pages. Pure: DataFrames in, Figures out.

Habits every figure keeps, so that sparse data reads well:
- the time axis spans the chosen range (`time_axis`), so one bucket is a point on a day's
  axis, not a lone dot on an axis ticked in milliseconds;
- the value axis is padded around the data (`value_axis`), so points sit inside the plot;
- every axis names its unit; a device has the same colour on every page (`device_colours`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from services.dashboard.charts import INDEX_NAMES, break_gaps
from services.dashboard.core import describe_age, describe_bucket, map_view

_PALETTE: Final[tuple[str, ...]] = tuple(qualitative.Dark24)
#: Marker symbol of each device state on the map.
STATE_SYMBOLS: Final = {"online": "circle", "offline": "square", "never seen": "x"}
NEVER_SEEN_COLOUR: Final = "#9e9e9e"
LEVEL_SCALE: Final = "YlOrRd"
#: Most points of a line drawn with markers.
MARKERS_UP_TO: Final = 200


def device_colours(devices: Iterable[str]) -> dict[str, str]:
    """A colour per device, from the sorted list of every known device: the same device has
    the same colour on every page, whatever the selection."""
    return {d: _PALETTE[i % len(_PALETTE)] for i, d in enumerate(sorted(set(devices)))}


def _empty(title: str, note: str = "No data in this range") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def time_axis(fig: go.Figure, start: datetime, end: datetime, tz: str, **where: Any) -> None:
    """The x axis spans [start, end] and says its time zone."""
    fig.update_xaxes(range=[start, end], title_text=f"time ({tz})", **where)


def value_axis(fig: go.Figure, values: Iterable[Any], unit: str, pad: float = 3.0,
               **where: Any) -> None:  # fmt: skip
    """The y axis covers the finite `values` with `pad` (at least) on each side, and is
    titled with `unit`."""
    finite = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    if finite:
        lo, hi = min(finite), max(finite)
        margin = max(pad, 0.08 * (hi - lo))
        fig.update_yaxes(range=[lo - margin, hi + margin], **where)
    fig.update_yaxes(title_text=unit, **where)


def line_mode(n: int) -> str:
    """Markers on a sparse line (a lone bucket is visible), none on a dense one (thousands of
    SVG markers are what makes a browser slow to draw a chart)."""
    return "lines+markers" if n <= MARKERS_UP_TO else "lines"


def points(fig: go.Figure) -> int:
    """Data points a figure draws: x values of its traces, or z cells of its heat maps."""
    total = 0
    for trace in fig.data:
        z = getattr(trace, "z", None)
        if z is not None:
            total += int(np.size(np.asarray(z, dtype=object)))
            continue
        for attr in ("x", "lon", "q1"):
            values = getattr(trace, attr, None)
            if values is not None:
                total += len(values)
                break
    return total


def fleet_map(overview: pd.DataFrame, tiles: str | None = None) -> go.Figure | None:
    """Every device with coordinates; colour: its newest LAeq (dB(A)); symbol: its state;
    "never seen" devices grey crosses. Tile-free (plain longitude/latitude axes, true aspect)
    unless `tiles` names a map style (then its tiles load in the browser). None when no
    device has coordinates. Expects `core.with_states`' overview."""
    placed = overview[overview["latitude"].notna() & overview["longitude"].notna()]
    if placed.empty:
        return None
    levels = pd.to_numeric(placed["laeq_db"], errors="coerce")
    known = levels.dropna()
    cmin, cmax = (float(known.min()), float(known.max())) if not known.empty else (40.0, 80.0)
    if cmax - cmin < 1:
        cmin, cmax = cmin - 1, cmax + 1
    fig = go.Figure()
    scatter = go.Scattermap if tiles else go.Scatter
    for state, symbol in STATE_SYMBOLS.items():
        rows = placed[placed["state"] == state]
        if rows.empty:
            continue
        level = pd.to_numeric(rows["laeq_db"], errors="coerce")
        colour: Any = NEVER_SEEN_COLOUR
        if state != "never seen" and level.notna().any():
            colour = level.where(level.notna(), cmin).astype(float).tolist()
        where = {"lat": rows["latitude"], "lon": rows["longitude"]}
        if not tiles:
            where = {"y": rows["latitude"], "x": rows["longitude"]}
        marker: dict[str, Any] = {"size": 18, "color": colour}
        if not tiles:
            marker["symbol"] = symbol
            marker["line"] = {"width": 1, "color": "#333"}
        if isinstance(colour, list):
            marker["coloraxis"] = "coloraxis"
        fig.add_trace(
            scatter(
                **where,
                mode="markers+text",
                marker=marker,
                text=[f"{d} ({state})" if state != "online" else d for d in rows["device"]],
                textposition="top center",
                name=state,
                hovertext=[_hover(r) for r in rows.to_dict("records")],
                hoverinfo="text",
            )
        )
    lats = placed["latitude"].astype(float)
    lons = placed["longitude"].astype(float)
    fig.update_layout(
        coloraxis={
            "colorscale": LEVEL_SCALE,
            "cmin": cmin,
            "cmax": cmax,
            "colorbar": {"title": {"text": "LAeq dB(A)"}},
        },
        height=440,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"title": {"text": "state"}, "orientation": "h", "y": -0.12},
        title="Devices (colour: newest LAeq)",
    )
    if tiles:
        lat, lon, zoom = map_view(lats.tolist(), lons.tolist())
        fig.update_layout(map={"style": tiles, "center": {"lat": lat, "lon": lon}, "zoom": zoom})
        return fig
    pad = max(0.002, 0.15 * max(lats.max() - lats.min(), lons.max() - lons.min()))
    ratio = 1 / max(math.cos(math.radians(float(lats.mean()))), 0.05)
    fig.update_xaxes(range=[lons.min() - pad, lons.max() + pad], title_text="longitude (°)")
    fig.update_yaxes(
        range=[lats.min() - pad, lats.max() + pad],
        title_text="latitude (°)",
        scaleanchor="x",
        scaleratio=ratio,
    )
    # The legend under the longitude axis's title, not across it.
    fig.update_layout(plot_bgcolor="#f4f6f4", legend={"yanchor": "top", "y": -0.22})
    return fig


def _hover(row: dict[str, Any]) -> str:
    lines = [f"<b>{row['device']}</b> {row.get('name') or ''}".strip()]
    age = row.get("age_s")
    seen = "never seen" if age is None or pd.isna(age) else f"last seen {describe_age(age)}"
    lines.append(f"{row['state']}, {seen}")
    laeq = row.get("laeq_db")
    if laeq is not None and not pd.isna(laeq):
        lines.append(f"LAeq {float(laeq):.1f} dB(A)")
    return "<br>".join(lines)


def fleet_levels(levels: pd.DataFrame, colours: dict[str, str], bucket: timedelta,
                 start: datetime, end: datetime, tz: str) -> go.Figure:  # fmt: skip
    """LAeq (Leq where a device has no LAeq) per bucket, one line per device shown."""
    title = f"LAeq per {describe_bucket(bucket)}, loudest devices of the range"
    if levels.empty:
        return _empty(title)
    fig = go.Figure()
    shown: list[Any] = []
    for device, rows in levels.groupby("device", sort=True):
        rows = break_gaps(rows, bucket)
        y = rows["laeq_db"] if rows["laeq_db"].notna().any() else rows["leq_db"]
        shown += list(y)
        fig.add_trace(
            go.Scatter(
                x=rows["bucket"],
                y=y,
                mode=line_mode(len(rows)),
                marker={"size": 4},
                name=str(device),
                line={"color": colours.get(str(device))},
                connectgaps=False,
            )
        )
    fig.update_layout(title=title, legend_title="device", hovermode="x unified")
    time_axis(fig, start, end, tz)
    value_axis(fig, shown, "dB(A)")
    return fig


def level_timeline(levels: pd.DataFrame, summaries: pd.DataFrame, colour: str,
                   bucket: timedelta, start: datetime, end: datetime,
                   tz: str) -> go.Figure:  # fmt: skip
    """One device: LAeq per bucket (line), LAFmax (dotted) and the L10-L90 band (shaded)
    from the level summaries."""
    title = f"LAeq per {describe_bucket(bucket)}, LAFmax and the L10-L90 band"
    if levels.empty and summaries.empty:
        return _empty(title)
    fig = go.Figure()
    shown: list[Any] = []
    if not summaries.empty:
        rows = break_gaps(summaries, bucket)
        fig.add_trace(
            go.Scatter(x=rows["bucket"], y=rows["l90_db"], mode="lines", name="L90",
                       line={"width": 0.5, "color": colour}, connectgaps=False)
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=rows["bucket"], y=rows["l10_db"], mode="lines", name="L10-L90",
                       fill="tonexty", line={"width": 0.5, "color": colour},
                       opacity=0.3, connectgaps=False)
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=rows["bucket"], y=rows["lamax_db"], mode=line_mode(len(rows)),
                       name="LAFmax", marker={"size": 3},
                       line={"dash": "dot", "color": "#444"}, connectgaps=False)
        )  # fmt: skip
        shown += [*rows["l90_db"], *rows["lamax_db"]]
    if not levels.empty:
        rows = break_gaps(levels, bucket)
        has_a = rows["laeq_db"].notna().any()
        y = rows["laeq_db"] if has_a else rows["leq_db"]
        fig.add_trace(
            go.Scatter(x=rows["bucket"], y=y, mode=line_mode(len(rows)), marker={"size": 4},
                       name="LAeq" if has_a else "Leq (no LAeq)",
                       line={"color": colour, "width": 2}, connectgaps=False)
        )  # fmt: skip
        shown += list(y)
    fig.update_layout(title=title, hovermode="x unified")
    time_axis(fig, start, end, tz)
    value_axis(fig, shown, "dB(A)")
    return fig


def hour_class_heatmap(counts: pd.DataFrame, tz: str) -> go.Figure:
    """Hour of day x class: analysis windows in which each class was heard."""
    title = "Detections by hour of day"
    if counts.empty:
        return _empty(title, "No detections in this range")
    table = counts.pivot_table(index="label", columns="hour", values="windows", aggfunc="sum")
    table = table.reindex(columns=range(24)).fillna(0)
    table = table.loc[table.sum(axis=1).sort_values().index]  # most heard on top
    fig = go.Figure(
        go.Heatmap(
            x=list(range(24)),
            y=list(table.index),
            z=table.to_numpy(),
            colorscale="Viridis",
            colorbar={"title": {"text": "windows"}},
            hovertemplate="%{y} at %{x}:00: %{z} windows<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=f"hour of day ({tz})", range=[-0.5, 23.5], dtick=2)
    fig.update_yaxes(title_text="class")
    fig.update_layout(title=title, height=max(300, 26 * len(table) + 140))
    return fig


def spectrogram(bands: pd.DataFrame, bucket: timedelta, start: datetime, end: datetime,
                tz: str, note: str = "") -> go.Figure:  # fmt: skip
    """1/3-octave band levels over time (dB SPL, energetic mean per bucket)."""
    title = f"1/3-octave band levels per {describe_bucket(bucket)}{note}"
    if bands.empty:
        return _empty(title, "No band levels in this range")
    order = bands.drop_duplicates("band").sort_values("centre_hz")["band"].tolist()
    table = bands.pivot_table(index="band", columns="bucket", values="db").reindex(order)
    fig = go.Figure(
        go.Heatmap(
            x=list(table.columns),
            y=[f"{b} Hz" for b in table.index],
            z=table.to_numpy(),
            colorscale="Inferno",
            colorbar={"title": {"text": "dB SPL"}},
            hovertemplate="%{y}, %{x}: %{z:.1f} dB<extra></extra>",
        )
    )
    fig.update_layout(title=title, height=480)
    time_axis(fig, start, end, tz)
    fig.update_yaxes(title_text="band centre (Hz)")
    return fig


def indices_figure(indices: pd.DataFrame, colour: str, bucket: timedelta,
                   start: datetime, end: datetime, tz: str) -> go.Figure:  # fmt: skip
    """One device's acoustic indices, one small chart each (unitless, events a count)."""
    title = f"Acoustic indices, mean per {describe_bucket(bucket)}"
    present = [c for c in INDEX_NAMES if c in indices and indices[c].notna().any()]
    if indices.empty or not present:
        return _empty(title)
    fig = make_subplots(
        rows=len(present), cols=1, shared_xaxes=True, vertical_spacing=0.04,
        subplot_titles=[INDEX_NAMES[c] for c in present],
    )  # fmt: skip
    rows = break_gaps(indices, bucket)
    for r, column in enumerate(present, start=1):
        fig.add_trace(
            go.Scatter(x=rows["bucket"], y=rows[column], mode=line_mode(len(rows)),
                       marker={"size": 5}, line={"color": colour}, name=INDEX_NAMES[column],
                       showlegend=False, connectgaps=False),
            row=r, col=1,
        )  # fmt: skip
        unit = "count" if column == "events" else "index"
        value_axis(fig, rows[column], unit, pad=0.05 * (abs(rows[column].max()) or 1), row=r, col=1)
    fig.update_layout(title=title, height=130 * len(present) + 120)
    time_axis(fig, start, end, tz, row=len(present), col=1)
    for r in range(1, len(present)):
        fig.update_xaxes(range=[start, end], row=r, col=1)
    return fig


def class_levels_figure(levels: pd.DataFrame, note: str = "") -> go.Figure:
    """What makes the noise: LAeq of the 1 s windows of each class (box: 25-75 %, line:
    median, whiskers: 5-95 %), loudest median first."""
    title = f"What makes the noise: LAeq of the seconds each class was heard{note}"
    if levels.empty:
        return _empty(title, "No classified levels in this range")
    rows = levels.sort_values("p50", ascending=False)
    labels = [f"{lbl} ({n})" for lbl, n in zip(rows["label"], rows["windows"], strict=True)]
    fig = go.Figure(
        go.Box(
            x=labels,
            q1=rows["p25"], median=rows["p50"], q3=rows["p75"],
            lowerfence=rows["p05"], upperfence=rows["p95"],
            mean=rows["laeq_db"],
            name="LAeq",
            marker={"color": "#d62728"},
            boxmean=True,
        )
    )  # fmt: skip
    fig.update_layout(title=title, showlegend=False)
    fig.update_xaxes(title_text="class (seconds heard)")
    value_axis(fig, [*rows["p05"], *rows["p95"]], "LAeq dB(A)")
    return fig
