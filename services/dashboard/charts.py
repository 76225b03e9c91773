"""Plotly figures from query results. Pure: a DataFrame in, a Figure out, no I/O.

An empty frame gives an empty figure with a 'no data' note, never an error.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final, TypeGuard

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from services.dashboard.core import describe_age, describe_bucket, map_view

#: Colour of each device state on the map.
STATE_COLOURS: Final = {"online": "#2ca02c", "offline": "#d62728", "never seen": "#7f7f7f"}
#: Long names of the acoustic indices, for axis titles.
INDEX_NAMES: Final = {
    "aci": "ACI (complexity)",
    "adi": "ADI (diversity)",
    "aei": "AEI (evenness)",
    "bi": "BI (bioacoustic)",
    "ndsi": "NDSI",
    "ht": "Ht (temporal entropy)",
    "hf": "Hf (spectral entropy)",
    "events": "Events",
}
_PALETTE: Final = qualitative.Plotly


def _colour(i: int) -> str:
    colour: str = _PALETTE[i % len(_PALETTE)]
    return colour


def _empty(title: str, note: str = "No data in this range") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False})
    fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].notna().any())


def break_gaps(series: pd.DataFrame, bucket: timedelta, time_col: str = "bucket") -> pd.DataFrame:
    """One device's rows with an all-NaN row inserted wherever buckets are missing.

    Plotly draws a line across missing buckets; a NaN row breaks it, so an outage shows as a
    hole instead of a straight line that looks like data.
    """
    if len(series) < 2:
        return series
    times = pd.to_datetime(series[time_col])
    steps = times.diff()
    holes = steps > pd.Timedelta(bucket) * 1.5
    if not holes.any():
        return series
    fillers = pd.DataFrame({time_col: times[holes] - pd.Timedelta(bucket)})
    fillers.index = series.index[holes]
    merged = pd.concat([series.assign(**{time_col: times}), fillers])
    return merged.sort_values(time_col, kind="stable").reset_index(drop=True)


def level_figure(levels: pd.DataFrame, bucket: timedelta) -> go.Figure:
    """Leq (solid) and, where measured, LAeq (dashed) over time, one colour per device."""
    title = f"Sound level, energetic mean per {describe_bucket(bucket)}"
    if levels.empty:
        return _empty(title)
    fig = go.Figure()
    for i, (device, rows) in enumerate(levels.groupby("device", sort=True)):
        rows = break_gaps(rows, bucket)
        colour = _colour(i)
        fig.add_trace(
            go.Scatter(
                x=rows["bucket"],
                y=rows["leq_db"],
                mode="lines+markers",
                marker={"size": 4},
                name=f"{device} Leq",
                legendgroup=str(device),
                line={"color": colour},
                customdata=rows[["leq_min_db", "leq_max_db"]].to_numpy(),
                hovertemplate="%{y:.1f} dB (min %{customdata[0]:.1f}, "
                "max %{customdata[1]:.1f})<extra>" + f"{device} Leq</extra>",
                connectgaps=False,
            )
        )
        if _has(rows, "laeq_db"):
            fig.add_trace(
                go.Scatter(
                    x=rows["bucket"],
                    y=rows["laeq_db"],
                    mode="lines+markers",
                    marker={"size": 4},
                    name=f"{device} LAeq",
                    legendgroup=str(device),
                    line={"color": colour, "dash": "dash"},
                    hovertemplate="%{y:.1f} dB(A)<extra>" + f"{device} LAeq</extra>",
                    connectgaps=False,
                )
            )
    fig.update_layout(
        title=title, yaxis_title="dB SPL", hovermode="x unified", legend_title="device"
    )
    return fig


def summary_figure(summaries: pd.DataFrame, bucket: timedelta) -> go.Figure:
    """LAeq (solid) with L10 and L90 (dotted) from the level summaries, per device."""
    title = f"A-weighted statistics per {describe_bucket(bucket)}"
    if summaries.empty:
        return _empty(title)
    fig = go.Figure()
    for i, (device, rows) in enumerate(summaries.groupby("device", sort=True)):
        rows = break_gaps(rows, bucket)
        colour = _colour(i)
        for column, label, dash in (
            ("laeq_db", "LAeq", "solid"),
            ("l10_db", "L10", "dot"),
            ("l90_db", "L90", "dot"),
        ):
            if not _has(rows, column):
                continue
            fig.add_trace(
                go.Scatter(
                    x=rows["bucket"],
                    y=rows[column],
                    mode="lines+markers",
                    marker={"size": 4},
                    name=f"{device} {label}",
                    legendgroup=str(device),
                    line={"color": colour, "dash": dash},
                    hovertemplate="%{y:.1f} dB(A)<extra>" + f"{device} {label}</extra>",
                    connectgaps=False,
                )
            )
    fig.update_layout(
        title=title, yaxis_title="dB(A)", hovermode="x unified", legend_title="device"
    )
    return fig


def top_classes_figure(classes: pd.DataFrame) -> go.Figure:
    """Horizontal bars: how often each class was detected, most frequent on top."""
    title = "Most detected classes"
    if classes.empty:
        return _empty(title)
    rows = classes.iloc[::-1]  # plotly draws the first category at the bottom
    fig = go.Figure(
        go.Bar(
            x=rows["detections"],
            y=rows["label"],
            orientation="h",
            customdata=rows[["mean_rating", "max_rating", "devices"]].to_numpy(),
            hovertemplate="%{y}: %{x} detections<br>mean score %{customdata[0]:.2f}, "
            "max %{customdata[1]:.2f}<br>%{customdata[2]} device(s)<extra></extra>",
            marker={"color": rows["mean_rating"], "colorscale": "Viridis", "cmin": 0, "cmax": 1},
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="detections (label rows)",
        height=max(300, 28 * len(rows) + 120),
        margin={"l": 10},
    )
    return fig


def gaps_figure(by_cause: pd.DataFrame) -> go.Figure:
    """Stacked horizontal bars: per device, the seconds of the range lost, by cause."""
    title = "Time lost, by cause"
    if by_cause.empty:
        return _empty(title, "No gaps recorded in this range")
    devices = sorted(by_cause["device"].unique(), reverse=True)  # first device on top
    fig = go.Figure()
    for i, (kind, rows) in enumerate(by_cause.groupby("kind", sort=True)):
        seconds = rows.set_index("device")["seconds"].reindex(devices).fillna(0.0)
        counts = rows.set_index("device")["gaps"].reindex(devices).fillna(0).astype(int)
        fig.add_trace(
            go.Bar(
                x=seconds,
                y=devices,
                name=str(kind),
                orientation="h",
                marker={"color": _colour(i)},
                customdata=counts.to_numpy(),
                hovertemplate="%{y}: %{x:.0f} s lost in %{customdata} gap(s)<extra>"
                + str(kind)
                + "</extra>",
            )
        )
    fig.update_layout(
        title=title,
        barmode="stack",
        xaxis_title="seconds (device * is the broker)",
        height=max(250, 40 * len(devices) + 150),
        margin={"l": 10},
    )
    return fig


def indices_figure(indices: pd.DataFrame, bucket: timedelta) -> go.Figure:
    """One small chart per acoustic index that has values, one line per device."""
    title = f"Acoustic indices, mean per {describe_bucket(bucket)}"
    present = [c for c in INDEX_NAMES if _has(indices, c)]
    if indices.empty or not present:
        return _empty(title)
    fig = make_subplots(
        rows=len(present),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        subplot_titles=[INDEX_NAMES[c] for c in present],
    )
    for i, (device, rows) in enumerate(indices.groupby("device", sort=True)):
        rows = break_gaps(rows, bucket)
        for r, column in enumerate(present, start=1):
            fig.add_trace(
                go.Scatter(
                    x=rows["bucket"],
                    y=rows[column],
                    mode="lines+markers",
                    marker={"size": 4},
                    name=str(device),
                    legendgroup=str(device),
                    showlegend=r == 1,
                    line={"color": _colour(i)},
                    connectgaps=False,
                ),
                row=r,
                col=1,
            )
    fig.update_layout(title=title, height=160 * len(present) + 120, legend_title="device")
    return fig


def device_map(overview: pd.DataFrame) -> go.Figure | None:
    """Devices with coordinates on an OpenStreetMap map, coloured by state; None if none has.

    Expects the overview with states (`core.with_states`). The tiles load in the browser,
    which needs internet access; the data does not.
    """
    if overview.empty or not {"latitude", "longitude"} <= set(overview.columns):
        return None
    placed = overview[overview["latitude"].notna() & overview["longitude"].notna()]
    if placed.empty:
        return None
    fig = go.Figure()
    for state, colour in STATE_COLOURS.items():
        rows = placed[placed["state"] == state]
        if rows.empty:
            continue
        fig.add_trace(
            go.Scattermap(
                lat=rows["latitude"].astype(float),
                lon=rows["longitude"].astype(float),
                mode="markers+text",
                marker={"size": 16, "color": colour},
                text=rows["device"],
                textposition="top right",
                name=state,
                hovertext=[_hover(row) for row in rows.to_dict("records")],
                hoverinfo="text",
            )
        )
    lat, lon, zoom = map_view(
        placed["latitude"].astype(float).tolist(), placed["longitude"].astype(float).tolist()
    )
    fig.update_layout(
        map={"style": "open-street-map", "center": {"lat": lat, "lon": lon}, "zoom": zoom},
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=420,
        legend={"title": "state", "x": 0.01, "y": 0.99},
    )
    return fig


def _hover(row: dict[str, Any]) -> str:
    name = row.get("name") or ""
    lines = [f"<b>{row['device']}</b> {name}".strip(), f"{row['state']}, {_seen(row)}"]
    if _number(row.get("leq_db")):
        lines.append(f"Leq {row['leq_db']:.1f} dB SPL")
    if _number(row.get("laeq_db")):
        lines.append(f"LAeq {row['laeq_db']:.1f} dB(A)")
    return "<br>".join(lines)


def _seen(row: dict[str, Any]) -> str:
    age = row.get("age_s")
    if not _number(age):
        return "never seen"
    return f"last seen {describe_age(float(age))}"


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not pd.isna(value)
