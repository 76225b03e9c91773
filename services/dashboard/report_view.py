"""The dashboard's noise-report section: the figures of `soundscape report` (the same core and
queries), shown as a table with download buttons. Off until its sidebar toggle is on, so the
page runs no report query unless asked."""

from __future__ import annotations

import importlib.util
import logging
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
import streamlit as st
from pydantic import ValidationError

from services.dashboard import queries
from services.report import app as report_app
from services.report import core as report_core
from services.report.export import ExportError, Format, render
from shared.devices import DeviceRegistry
from shared.errors import ConfigError
from shared.settings import RegistrySettings

log = logging.getLogger(__name__)

#: Longest range of days the section computes at once.
MAX_DAYS = 366


def _registry() -> DeviceRegistry | None:
    try:
        return DeviceRegistry.load(RegistrySettings().devices_file)
    except (ConfigError, ValidationError) as exc:
        log.warning("dashboard: report: cannot read the device registry: %s", exc)
        st.warning(f"Noise report: cannot read the device registry: {exc}")
        return None


def _downloads(name: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    formats: list[Format] = ["csv", "json"]
    if importlib.util.find_spec("pyarrow") is not None:
        formats.append("parquet")
    mime = {"csv": "text/csv", "json": "application/json", "parquet": "application/octet-stream"}
    cols = st.columns(len(formats))
    for col, fmt in zip(cols, formats, strict=True):
        try:
            data = render(rows, columns, fmt)
        except ExportError as exc:
            col.caption(str(exc))
            continue
        col.download_button(
            f"{name} as {fmt.upper()}",
            data,
            file_name=f"{name.lower().replace(' ', '-')}.{fmt}",
            mime=mime[fmt],
            key=f"report_{name}_{fmt}",
        )


def show_report(conn: Any, devices: list[str], now: datetime) -> None:
    """Lden, Lday, Levening, Lnight per device-day, and hourly LAeq, when toggled on."""
    if not st.sidebar.toggle("Noise report (Lden)", value=False, key="report_on"):
        return
    st.header("Noise report")
    if "levels_hourly" not in queries.existing_tables(conn, ["levels_hourly"]):
        st.info("No hourly rollups (levels_hourly) in this database yet: ingest creates them.")
        return
    registry = _registry()
    if registry is None:
        return
    last_default = now.date() - timedelta(days=1)
    left, right = st.columns(2)
    first = left.date_input("First day", last_default - timedelta(days=6), key="report_from")
    last = right.date_input("Last day", last_default, key="report_to")
    if not isinstance(first, type(last_default)) or not isinstance(last, type(last_default)):
        return
    if last < first or (last - first).days >= MAX_DAYS:
        st.warning(f"Choose a last day on or after the first, at most {MAX_DAYS} days on.")
        return
    try:
        days, hours = report_app.build(conn, registry, devices, first, last)
    except (psycopg.Error, ValueError) as exc:
        log.warning("dashboard: report failed: %s", exc)
        st.warning(f"The noise report could not be computed: {exc}")
        return
    zones = {d.device: d.timezone for d in days}
    st.caption(
        "Local days per device: "
        + ", ".join(f"{device} ({zone})" for device, zone in zones.items())
        + ". Lden weights each period by its real length; see docs/reports.md."
    )
    day_rows = [report_core.day_row(d) for d in days]
    st.dataframe(pd.DataFrame(day_rows, columns=list(report_core.DAY_COLUMNS)), hide_index=True,
                 key="report_days")  # fmt: skip
    _downloads("Noise report", day_rows, report_core.DAY_COLUMNS)
    hour_rows = [report_core.hour_row(h) for h in hours]
    with st.expander("Hourly LAeq"):
        st.dataframe(pd.DataFrame(hour_rows, columns=list(report_core.HOUR_COLUMNS)),
                     hide_index=True, key="report_hours")  # fmt: skip
        _downloads("Hourly LAeq", hour_rows, report_core.HOUR_COLUMNS)
