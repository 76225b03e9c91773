"""The overview page: the fleet at a glance. Fleet-wide charts aggregate across devices or
show the few loudest, so the page stays small and fast with a fleet (one device's detail
lives on its page)."""

from __future__ import annotations

from typing import Final

import pandas as pd
import streamlit as st

from services.dashboard import core, figures, queries, queries_fleet
from services.dashboard.charts import top_classes_figure
from services.dashboard.species import render_species
from services.dashboard.ui import Page, chart, section, table

#: Devices drawn in the fleet level chart (the loudest of the range).
LOUDEST: Final = 5
#: Rows of the latest noise events table.
EVENTS: Final = 20

TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")
DB = st.column_config.NumberColumn(format="%.1f")


def fleet(page: Page) -> pd.DataFrame:
    """Every known device with its state (`core.with_states`)."""
    return core.with_states(
        page.query(queries.device_overview, page.known),
        page.now,
        page.settings.default_sync_interval_s,
        page.settings.offline_grace_s,
    )


def show(page: Page) -> None:
    """Counts, map, fleet table, loudest devices, top classes, latest noise events."""
    st.header("Overview")
    with section("Devices"):
        devices = fleet(page)
        states = devices["state"].value_counts()
        uncalibrated = devices["uncalibrated"].astype("boolean").fillna(False)
        with st.container(key="fleet-metrics"):
            cols = st.columns(5)
            cols[0].metric("Devices", len(devices))
            cols[1].metric("Online", int(states.get("online", 0)))
            cols[2].metric("Offline", int(states.get("offline", 0)))
            cols[3].metric("Never seen", int(states.get("never seen", 0)))
            cols[4].metric("Uncalibrated", int(uncalibrated.sum()))
        fig = figures.fleet_map(devices, page.settings.map_tiles)
        if fig is None:
            st.info("No device has coordinates yet: add latitude and longitude to the registry.")
        else:
            data = devices[["device", "name", "state", "latitude", "longitude", "laeq_db"]]
            chart("map", fig, data)
        unplaced = devices[devices["latitude"].isna() | devices["longitude"].isna()]
        if not unplaced.empty:
            st.caption("Not on the map (no coordinates): " + ", ".join(unplaced["device"]))
        never = devices.loc[devices["state"] == "never seen", "device"]
        if not never.empty:
            st.caption(
                "In the registry but never reported (not counted online): " + ", ".join(never)
            )
        glance = devices.assign(
            last_seen_ago=[core.describe_age(a) for a in devices["age_s"]],
            calibrated=~devices["uncalibrated"].astype("boolean"),
        )
        table(
            "fleet",
            glance[["device", "name", "state", "last_seen_ago", "last_seen", "laeq_db",
                    "calibrated"]],
            column_config={
                "last_seen_ago": "last seen",
                "last_seen": st.column_config.DatetimeColumn(
                    f"newest result ({page.tz})", format="YYYY-MM-DD HH:mm:ss"
                ),
                "laeq_db": st.column_config.NumberColumn("newest LAeq dB(A)", format="%.1f"),
            },
        )  # fmt: skip
    span = page.span
    with section("Sound level"):
        ranked = page.query(queries_fleet.range_laeq, page.known, span.start, span.end)
        loudest = ranked["device"].head(LOUDEST).tolist() if not ranked.empty else []
        if not loudest:
            reported = devices.loc[devices["state"] != "never seen", "device"]
            loudest = reported.head(LOUDEST).tolist()
        if loudest:
            levels = page.query(queries.level_series, loudest, span.start, span.end, page.bucket)
            chart(
                "fleet-levels",
                figures.fleet_levels(
                    levels, page.colours, page.bucket, span.start, span.end, page.tz
                ),
                levels,
                caption=f"The {len(loudest)} loudest of {len(page.known)} devices over the "
                "range (LAeq of the hourly rollups); every device on its own page.",
            )
    with section("Detections"):
        top = page.query(
            queries.top_classes, page.known, span.start, span.end,
            page.settings.top_classes, page.min_score,
        )  # fmt: skip
        if top.empty:
            st.info("No detections in this range yet.")
        else:
            chart("classes", top_classes_figure(top), top)
    with section("Bird species"):
        render_species(page.conn, page.known, span.start, span.end)
    if "noise_events" in page.tables:
        with section("Noise events"):
            events = page.query(queries.noise_events, page.known, span.start, span.end, EVENTS)
            st.subheader("Latest noise events")
            if events.empty:
                st.info("No noise events in this range.")
            else:
                events = events.assign(classes=[core.format_classes(c) for c in events["classes"]])
                table(
                    "events",
                    events,
                    column_config={
                        "window_start": TIME,
                        "threshold_db": DB,
                        "laeq_db": DB,
                        "lamax_db": DB,
                        "window_duration": st.column_config.NumberColumn("seconds"),
                    },
                )
