"""The health page: is every sensor, and the pipeline behind it, working?"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any, Final

import aiomqtt
import pandas as pd
import streamlit as st
from pydantic import ValidationError

from services.dashboard import broker, charts, core, queries, queries_fleet
from services.dashboard.ui import Page, chart, section, table
from services.dashboard.view_overview import fleet
from shared.errors import ConfigError
from shared.settings import MqttSettings

log = logging.getLogger(__name__)

#: Rows of the recent syncs table.
SYNCS: Final = 20
#: Counters of a status shown in their own columns (the rest stay in `counters`).
COUNTERS: Final = ("spool_depth", "outbox", "outbox_dropped", "gaps", "dropped", "rejected")


def health_table(page: Page, devices: pd.DataFrame) -> pd.DataFrame:
    """One row per device: state, last seen, last sync, lag, gaps, calibration, coverage."""
    span = page.span
    health = page.query(queries_fleet.device_health, page.known)
    gaps = page.query(queries_fleet.gap_totals, page.known, span.start, span.end)
    hour_ago = page.now - timedelta(hours=1)
    coverage = page.query(queries.classification_coverage, page.known, hour_ago, page.now)
    out = devices[["device", "state", "age_s", "last_seen"]].merge(health, on="device", how="left")
    out = out.merge(gaps, on="device", how="left").merge(coverage, on="device", how="left")
    out["last_seen_ago"] = [core.describe_age(a) for a in out["age_s"]]
    out["last_sync"] = out[["level_sync", "label_sync"]].max(axis=1)
    out["classified_pct"] = 100 * out["classified"] / out["measured"].where(out["measured"] > 0)
    out[["gaps", "lost"]] = out[["gaps", "lost"]].fillna(0).astype(int)
    return out[
        [
            "device", "state", "last_seen_ago", "last_seen", "last_sync", "uncalibrated",
            "behind_s", "inference_ms", "classified_pct", "gaps", "lost", "kinds", "model",
        ]
    ]  # fmt: skip


def status_rows(statuses: list[Any], now: float) -> pd.DataFrame:
    """The retained statuses as rows: node, service, state, age, detail, counters."""
    rows = []
    for status in statuses:
        row = {
            "node": status.device,
            "service": status.service,
            "state": status.state,
            "age": core.describe_age(max(now - status.time, 0.0)),
            "detail": status.detail or "",
        }
        for name in COUNTERS:
            row[name] = status.counters.get(name)
        row["counters"] = ", ".join(
            f"{k} {v}" for k, v in sorted(status.counters.items()) if k not in COUNTERS
        )
        rows.append(row)
    return pd.DataFrame(rows)


def show_broker(page: Page) -> None:
    """The retained statuses of every node, when the dashboard may ask the broker."""
    st.subheader("Services and sensors (retained status on the broker)")
    if not page.settings.broker_status:
        st.caption(
            "Set SOUNDSCAPE_DASHBOARD_BROKER_STATUS=true (and the SOUNDSCAPE_MQTT_* settings) "
            "to show each service's retained status here: ingest's spool depth, capture's "
            "drops, inference's outbox. `soundscape health --node NODE` shows one."
        )
        return
    try:
        statuses, bad = page.query(_statuses, page.settings.broker_wait_s)
    except (aiomqtt.MqttError, OSError, ConfigError, ValidationError) as exc:
        log.warning("dashboard: cannot read statuses from the broker: %s", exc)
        st.warning(f"Cannot read the statuses from the broker: {exc}")
        return
    if bad:
        st.warning(f"{bad} status message(s) could not be decoded (see the log).")
    rows = status_rows(statuses, time.time())
    if rows.empty:
        st.info("No retained status on the broker.")
        return
    spool = rows.loc[rows["spool_depth"].notna(), ["node", "spool_depth"]]
    if not spool.empty:
        st.metric(
            "Ingest spool depth",
            ", ".join(f"{n}: {int(d)}" for n, d in spool.itertuples(index=False)),
        )
    table("statuses", rows)


def _statuses(_conn: Any, wait_s: float) -> tuple[list[Any], int]:
    return broker.read_statuses(MqttSettings(), wait_s)


def show(page: Page) -> None:
    """Per-device health, gaps by cause, the broker's statuses, the latest syncs."""
    st.header("Health")
    with section("Device health"):
        rows = health_table(page, fleet(page))
        with st.container(key="health-metrics"):
            cols = st.columns(4)
            cols[0].metric("Online", int((rows["state"] == "online").sum()))
            cols[1].metric("Offline", int((rows["state"] == "offline").sum()))
            cols[2].metric("Never seen", int((rows["state"] == "never seen").sum()))
            cols[3].metric("With gaps in range", int((rows["gaps"] > 0).sum()))
        table(
            "health",
            rows,
            column_config={
                "last_seen_ago": "last seen",
                "last_seen": st.column_config.DatetimeColumn(
                    f"newest result ({page.tz})", format="YYYY-MM-DD HH:mm:ss"
                ),
                "last_sync": st.column_config.DatetimeColumn(
                    "last stored", format="YYYY-MM-DD HH:mm:ss"
                ),
                "behind_s": st.column_config.NumberColumn(
                    "labels behind levels (s)", format="%.0f"
                ),
                "inference_ms": st.column_config.NumberColumn("inference ms", format="%.0f"),
                "classified_pct": st.column_config.NumberColumn(
                    "classified last hour %", format="%.0f"
                ),
                "gaps": "gaps in range",
                "lost": "windows lost",
                "kinds": "causes",
            },
        )
        st.caption(
            "Labels behind levels: how far the newest classified window trails the newest "
            "measured one (inference lag). Gaps and windows lost: recorded gaps overlapping "
            "the range (dropped chunks, overload, spool overflow...)."
        )
    if "gaps" in page.tables:
        with section("Gaps"):
            span = page.span
            by_cause = page.query(queries.gaps_by_cause, page.known, span.start, span.end)
            chart("gaps", charts.gaps_figure(by_cause), by_cause)
            found = page.query(
                queries.gaps, page.known, span.start, span.end, page.settings.events_limit
            )
            if not found.empty:
                table("gap-rows", found)
    show_broker(page)
    with section("Syncs"):
        st.subheader("Latest syncs (ingest batches stored)")
        table("syncs", page.query(queries_fleet.recent_syncs, SYNCS))
