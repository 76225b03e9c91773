"""The dashboard's bird species section (BirdNET): a query, a figure and a renderer.

`species_summary` reads ingest's `species` table (migration 0007): per species in the range,
how many windows it was detected in, on how many devices, its best and mean score and when
it was last heard. `species_figure` draws that as bars; `render_species(conn, devices, start,
end)` shows the section with Streamlit (nothing but a note when the table does not exist or
holds nothing in the range). Every value travels as a query parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import pandas as pd
import plotly.graph_objects as go

#: Species shown in the figure (the table below it lists every one).
MAX_BARS: Final = 25
#: What the section says about the model wherever species are shown.
LICENCE_NOTE: Final = (
    "Species by BirdNET GLOBAL 6K V2.4 (K. Lisa Yang Center for Conservation Bioacoustics, "
    "Cornell Lab of Ornithology), licensed CC BY-NC-SA 4.0: non-commercial use only."
)
SUMMARY_COLUMNS: Final = (
    "scientific_name",
    "common_name",
    "detections",
    "devices",
    "max_score",
    "mean_score",
    "last_heard",
)


def species_table_exists(conn: Any) -> bool:
    """Whether the database has ingest's species table (migration 0007)."""
    row = conn.execute("SELECT to_regclass('species') IS NOT NULL").fetchone()
    return bool(row and row[0])


def species_summary(
    conn: Any,
    devices: Sequence[str],
    start: datetime,
    end: datetime,
    min_score: float = 0.0,
) -> pd.DataFrame:
    """Species detected on `devices` in [start, end) with a score of at least `min_score`,
    most detected first. Columns: SUMMARY_COLUMNS (detections: windows it was found in)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT scientific_name, min(common_name) AS common_name,
                   count(*) AS detections, count(DISTINCT device) AS devices,
                   max(score)::double precision AS max_score,
                   avg(score)::double precision AS mean_score,
                   max(window_start + make_interval(secs => window_duration)) AS last_heard
            FROM species
            WHERE device = ANY(%(devices)s) AND window_start >= %(start)s
              AND window_start < %(end)s AND score >= %(min_score)s
            GROUP BY scientific_name
            ORDER BY detections DESC, max_score DESC, scientific_name
            """,
            {"devices": list(devices), "start": start, "end": end, "min_score": min_score},
        )
        rows = cur.fetchall()
    return pd.DataFrame.from_records(rows, columns=list(SUMMARY_COLUMNS))


def species_figure(summary: pd.DataFrame) -> go.Figure:
    """Horizontal bars: windows with each species, most detected on top, coloured by best
    score."""
    title = "Bird species detected (BirdNET)"
    fig = go.Figure()
    if summary.empty:
        fig.add_annotation(text="No species in this range", showarrow=False)
        fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False)
        return fig
    rows = summary.head(MAX_BARS).iloc[::-1]  # plotly draws the first category at the bottom
    fig.add_trace(
        go.Bar(
            x=rows["detections"],
            y=rows["common_name"],
            orientation="h",
            customdata=rows[["scientific_name", "max_score", "devices"]].to_numpy(),
            hovertemplate="%{y} (<i>%{customdata[0]}</i>): %{x} windows<br>best score "
            "%{customdata[1]:.2f}, %{customdata[2]} device(s)<extra></extra>",
            marker={"color": rows["max_score"], "colorscale": "Viridis", "cmin": 0, "cmax": 1},
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="windows with the species",
        height=max(300, 28 * len(rows) + 120),
        margin={"l": 10},
    )
    return fig


def render_species(conn: Any, devices: list[str], start: datetime, end: datetime) -> None:
    """The species section of the page for `devices` and [start, end)."""
    import streamlit as st

    from services.dashboard import plot

    st.header("Bird species")
    if not species_table_exists(conn):
        st.info("No species table in this database yet: ingest's migration 0007 creates it.")
        return
    summary = species_summary(conn, devices, start, end)
    if summary.empty:
        st.info(
            "No species detected in this range. Species come from an inference worker with "
            "the birdnet backend (docs/inference.md)."
        )
        return
    plot.plot(species_figure(summary), key="species", config={"displaylogo": False})
    st.dataframe(summary, hide_index=True)
    st.caption(LICENCE_NOTE)
