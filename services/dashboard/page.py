"""The Streamlit page (`soundscape dashboard` runs it). Layout only: the queries live in
`queries`, the figures in `charts`, the decisions in `core`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import streamlit as st
from pydantic import ValidationError

from services.dashboard import charts, core, db, queries, report_view
from services.dashboard.gate import unlocked
from services.dashboard.settings import DashboardSettings
from shared.runtime import setup_logging

log = logging.getLogger("services.dashboard.page")

DB = st.column_config.NumberColumn(format="%.1f")
SCORE = st.column_config.NumberColumn(format="%.3f")
TIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    """A part of the page whose query failure becomes a warning, not a traceback."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        log.warning("dashboard: %s query cancelled: %s", name, exc)
        st.warning(
            f"{name}: the query took longer than SOUNDSCAPE_DASHBOARD_STATEMENT_TIMEOUT_S "
            "allows; choose a shorter time range or fewer devices."
        )
    except psycopg.Error as exc:
        log.warning("dashboard: %s query failed: %s", name, exc)
        st.warning(f"{name} could not be loaded: {exc}")


def pick_range(now: datetime) -> core.TimeRange | None:
    """Sidebar: the time range to show (None when the custom range is invalid)."""
    choice = st.sidebar.radio("Time range", [*core.PRESETS, core.CUSTOM], index=1, key="range")
    if choice != core.CUSTOM:
        return core.preset_range(choice, now)
    hour = now.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    start = st.sidebar.datetime_input("From", hour - timedelta(days=7), key="from")
    end = st.sidebar.datetime_input("To", hour + timedelta(hours=1), key="to")
    try:
        return core.TimeRange(start.replace(tzinfo=now.tzinfo), end.replace(tzinfo=now.tzinfo))
    except ValueError as exc:
        st.sidebar.error(str(exc))
        return None


def show_devices(overview: pd.DataFrame, tz: str) -> None:
    """Counts, the map and the devices table."""
    st.header("Devices")
    counts = overview["state"].value_counts()
    cols = st.columns(4)
    cols[0].metric("Devices", len(overview))
    cols[1].metric("Online", int(counts.get("online", 0)))
    cols[2].metric("Offline", int(counts.get("offline", 0)))
    newest = overview["age_s"].min()
    cols[3].metric("Newest data", core.describe_age(None if pd.isna(newest) else float(newest)))
    fig = charts.device_map(overview)
    if fig is None:
        st.info("No device has coordinates yet: add latitude and longitude to the device registry.")
    else:
        st.plotly_chart(fig, key="map", config={"scrollZoom": True})
    unplaced = overview[overview["latitude"].isna() | overview["longitude"].isna()]
    if fig is not None and not unplaced.empty:
        st.caption("Not on the map (no coordinates): " + ", ".join(unplaced["device"]))
    table = overview.assign(
        last_seen_ago=[core.describe_age(a) for a in overview["age_s"]],
        calibrated=~overview["uncalibrated"].astype("boolean"),  # NA: no levels yet
    )
    st.dataframe(
        table,
        hide_index=True,
        key="devices",
        column_order=[
            "device",
            "name",
            "state",
            "last_seen_ago",
            "last_seen",
            "leq_db",
            "laeq_db",
            "calibrated",
            "latitude",
            "longitude",
            "model",
            "sync_interval",
        ],
        column_config={
            "last_seen_ago": "last seen",
            "last_seen": st.column_config.DatetimeColumn(
                f"newest result ({tz})", format="YYYY-MM-DD HH:mm:ss"
            ),
            "leq_db": st.column_config.NumberColumn("latest Leq dB", format="%.1f"),
            "laeq_db": st.column_config.NumberColumn("latest LAeq dB(A)", format="%.1f"),
            "sync_interval": st.column_config.NumberColumn("sync s", format="%.0f"),
        },
    )
    uncalibrated = overview.loc[overview["uncalibrated"].astype("boolean").fillna(False), "device"]
    if not uncalibrated.empty:
        st.warning(
            "Levels of "
            + ", ".join(uncalibrated)
            + " use default calibration values: their absolute dB values are nominal."
        )


def show_coverage(coverage: pd.DataFrame) -> None:
    """Chunks of the last hour that were measured but never classified: a gap, not silence."""
    if coverage.empty:
        return
    missing = coverage[coverage["classified"] < coverage["measured"]]
    if missing.empty:
        st.caption("Every chunk measured in the last hour was classified.")
        return
    lines = [
        f"{row.device}: {row.classified} of {row.measured} chunks classified "
        f"({100 * row.classified / row.measured:.0f} %)"
        for row in missing.itertuples()
    ]
    st.warning(
        "Measured but never classified in the last hour (inference down, overloaded, or "
        "audio lost on the way; see its status): " + "; ".join(lines)
    )


def show_levels(conn: Any, devices: list[str], span: core.TimeRange, bucket: timedelta,
                tables: set[str]) -> None:  # fmt: skip
    """Level over time, and the A-weighted statistics when summaries exist."""
    st.header("Sound level")
    with section("Levels"):
        levels = queries.level_series(conn, devices, span.start, span.end, bucket)
        if levels.empty:
            st.info("No sound levels in this range yet.")
        else:
            st.plotly_chart(charts.level_figure(levels, bucket), key="levels")
    if "level_summaries" in tables:
        with section("Level summaries"):
            summaries = queries.summary_series(conn, devices, span.start, span.end, bucket)
            if not summaries.empty:
                st.plotly_chart(charts.summary_figure(summaries, bucket), key="summaries")


def show_detections(conn: Any, devices: list[str], span: core.TimeRange,
                    settings: DashboardSettings, min_score: float) -> None:  # fmt: skip
    """Top classes (bar chart) and the latest detections (table)."""
    st.header("Detections")
    with section("Detections"):
        top = queries.top_classes(
            conn, devices, span.start, span.end, settings.top_classes, min_score
        )
        if top.empty:
            st.info("No detections in this range yet.")
            return
        left, right = st.columns([2, 3])
        left.plotly_chart(charts.top_classes_figure(top), key="classes")
        latest = queries.latest_detections(
            conn, devices, span.start, span.end, settings.detections_limit, min_score
        )
        right.subheader("Latest detections")
        right.dataframe(
            latest,
            hide_index=True,
            key="detections",
            column_order=["window_start", "device", "label", "rating", "rank", "model"],
            column_config={"window_start": TIME, "rating": SCORE},
        )


def show_extras(conn: Any, devices: list[str], span: core.TimeRange, bucket: timedelta,
                tables: set[str], settings: DashboardSettings) -> None:  # fmt: skip
    """Acoustic indices, noise events and gaps, each when its table exists."""
    if "indices" in tables:
        st.header("Acoustic indices")
        with section("Acoustic indices"):
            indices = queries.indices_series(conn, devices, span.start, span.end, bucket)
            if indices.empty:
                st.info("No acoustic indices in this range.")
            else:
                st.plotly_chart(charts.indices_figure(indices, bucket), key="indices")
    if "noise_events" in tables:
        st.header("Noise events")
        with section("Noise events"):
            events = queries.noise_events(
                conn, devices, span.start, span.end, settings.events_limit
            )
            if events.empty:
                st.info("No noise events in this range.")
            else:
                events["classes"] = [core.format_classes(c) for c in events["classes"]]
                st.dataframe(
                    events,
                    hide_index=True,
                    key="events",
                    column_config={
                        "window_start": TIME,
                        "threshold_db": DB,
                        "laeq_db": DB,
                        "lamax_db": DB,
                        "window_duration": st.column_config.NumberColumn("seconds"),
                    },
                )
    if "gaps" in tables:
        st.header("Gaps")
        with section("Gaps"):
            found = queries.gaps(conn, devices, span.start, span.end, settings.events_limit)
            if found.empty:
                st.success("No gaps recorded in this range.")
            else:
                by_cause = queries.gaps_by_cause(conn, devices, span.start, span.end)
                st.plotly_chart(charts.gaps_figure(by_cause), key="gaps_by_cause")
                st.dataframe(
                    found,
                    hide_index=True,
                    key="gaps",
                    column_config={"first_start": TIME, "last_start": TIME, "recorded_at": TIME},
                )


def render(conn: Any, settings: DashboardSettings, now: datetime) -> None:
    """Everything below the title, for one open connection."""
    tables = queries.existing_tables(conn)
    missing = [t for t in queries.CORE_TABLES if t not in tables]
    if missing:
        st.info(
            "No data yet: the database has no soundscape tables "
            f"({', '.join(missing)} missing). Start `soundscape ingest` against it; "
            "it creates them."
        )
        return
    known = queries.device_ids(conn)
    if not known:
        st.info("No data yet: no device has reported. Results appear here once ingest syncs.")
        return
    span = pick_range(now)
    chosen = st.sidebar.multiselect("Devices", known, default=known, key="devices_shown")
    min_score = st.sidebar.slider("Minimum score", 0.0, 1.0, settings.min_score, 0.05, key="score")
    st.sidebar.button("Refresh", key="refresh")
    if span is None:
        return
    if not chosen:
        st.info("Choose at least one device in the sidebar.")
        return
    bucket = core.chart_bucket(span.span, settings.max_points)
    st.caption(
        f"{span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} {settings.timezone} · "
        f"charts in {core.describe_bucket(bucket)} buckets"
    )
    with section("Devices"):
        overview = core.with_states(
            queries.device_overview(conn, chosen),
            now,
            settings.default_sync_interval_s,
            settings.offline_grace_s,
        )
        show_devices(overview, settings.timezone)
        show_coverage(queries.classification_coverage(conn, chosen, now - timedelta(hours=1), now))
    show_levels(conn, chosen, span, bucket, tables)
    show_detections(conn, chosen, span, settings, min_score)
    show_extras(conn, chosen, span, bucket, tables, settings)
    report_view.show_report(conn, chosen, now)


def main() -> None:
    """Build the settings, connect read-only, draw the page."""
    st.set_page_config(page_title="Soundscape monitor", layout="wide")
    setup_logging()
    st.title("Soundscape monitor")
    try:
        settings = DashboardSettings()
    except ValidationError as exc:
        st.error(
            "The dashboard is not configured: set SOUNDSCAPE_DASHBOARD_DATABASE_URL "
            f"(and check the other SOUNDSCAPE_DASHBOARD_ settings).\n\n{exc}"
        )
        return
    if not unlocked(settings):  # the password gate: nothing from the database before it
        return
    now = datetime.now(ZoneInfo(settings.timezone))
    target = db.describe_target(settings)
    try:
        conn = db.connect(settings)
    except psycopg.OperationalError as exc:
        log.warning("dashboard: cannot connect to %s: %s", target, exc)
        st.error(f"Cannot reach the database ({target}): {exc}")
        return
    st.caption(f"Database {target} · updated {now:%Y-%m-%d %H:%M:%S %Z}")
    with conn, section("Database"):
        render(conn, settings, now)


if __name__ == "__main__":
    main()
