"""Plotly figures shared by the pages (the rest are in `figures`). Pure: a DataFrame in, a
Figure out, no I/O.

An empty frame gives an empty figure with a 'no data' note, never an error.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

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
