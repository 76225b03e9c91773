"""The Streamlit app (`soundscape dashboard` runs it): the sidebar and the pages (overview,
device, health, report; `view_*`). Layout only: the queries live in `queries*`, the figures
in `charts` and `figures`, the decisions in `core`."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import psycopg
import streamlit as st
from pydantic import ValidationError

from services.dashboard import (
    core,
    db,
    figures,
    queries,
    report_view,
    ui,
    view_device,
    view_health,
    view_overview,
)
from services.dashboard.gate import unlocked
from services.dashboard.preload import preload_frontend
from services.dashboard.settings import DashboardSettings
from services.dashboard.ui import section
from shared.runtime import setup_logging

log = logging.getLogger("services.dashboard.page")


def pick_range(now: datetime) -> core.TimeRange | None:
    """Sidebar: the time range to show (None when the custom range is invalid); a preset
    starts at the URL's `range` (e.g. ?range=Last week), else "Last day"."""
    names = [*core.PRESETS, core.CUSTOM]
    wanted = st.query_params.get("range")
    index = names.index(wanted) if wanted in core.PRESETS else 1
    choice = st.sidebar.radio("Time range", names, index=index, key="range")
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


PAGES: Final = {
    "Overview": view_overview.show,
    "Device": view_device.show,
    "Health": view_health.show,
    "Report": None,  # the noise report (report_view), drawn with the connection alone
}


def pick_page() -> str:
    """Sidebar: which page; it starts at the URL's `page` (e.g. ?page=Device&device=yor)."""
    wanted = st.query_params.get("page")
    names = list(PAGES)
    index = names.index(wanted) if wanted in names else 0
    choice = str(st.sidebar.radio("Page", names, index=index, key="page"))
    if st.query_params.get("page") != choice:
        st.query_params["page"] = choice
    return choice


def render(conn: Any, settings: DashboardSettings, clock: datetime) -> None:
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
    began = time.perf_counter()
    choice = pick_page()
    forced = st.sidebar.button("Refresh", key="refresh")
    now = ui.refresh_now(clock, settings.refresh_s, forced)
    span = pick_range(now)
    min_score = st.sidebar.slider("Minimum score", 0.0, 1.0, settings.min_score, 0.05, key="score")
    st.caption(f"Data as of {now:%Y-%m-%d %H:%M:%S %Z} (Refresh for newer)")
    known = queries.device_ids(conn)
    if not known:
        st.info("No data yet: no device has reported. Results appear here once ingest syncs.")
        return
    if span is None:
        return
    if choice == "Report":
        report_view.show_report(conn, known, now)
        if not st.session_state.get("report_on"):
            st.info("Turn on *Noise report (Lden)* in the sidebar to compute the report.")
        return
    bucket = core.chart_bucket(span.span, settings.max_points)
    page = ui.Page(
        conn=conn,
        settings=settings,
        now=now,
        span=span,
        bucket=bucket,
        known=known,
        tables=tables,
        min_score=min_score,
        colours=figures.device_colours(known),
    )
    st.caption(
        f"{span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} {settings.timezone} · "
        f"time series in {core.describe_bucket(bucket)} buckets"
    )
    view = PAGES[choice]
    assert view is not None
    view(page)
    with st.container(key="page-done"):  # the browser test waits for this
        st.caption(f"Page queried and laid out in {time.perf_counter() - began:.2f} s.")


def main() -> None:
    """Build the settings, connect read-only, draw the page."""
    st.set_page_config(page_title="Soundscape monitor", layout="wide")
    preload_frontend()
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
    st.caption(f"Database {target}")
    with conn, section("Database"):
        render(conn, settings, now)


if __name__ == "__main__":
    main()
