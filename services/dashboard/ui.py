"""What every page shares: the per-refresh query cache, charts with their CSV button, and the
page context (connection, settings, range, colours).

A "refresh" fixes the page's `now` (and so its time range): it happens on the first view,
on the Refresh button, and when the previous one is older than `REFRESH_S`. Query results
are kept in the session for the current refresh only, so moving a widget that does not
change a query's arguments (or switching pages back and forth) runs no query again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import pandas as pd
import plotly.graph_objects as go
import psycopg
import streamlit as st

from services.dashboard import core, plot
from services.dashboard.settings import DashboardSettings

log = logging.getLogger("services.dashboard.page")

T = TypeVar("T")
_CACHE: Final = "_query_cache"
_REFRESHED: Final = "_refreshed_at"


def refresh_now(now: datetime, every_s: float, forced: bool) -> datetime:
    """The `now` of this refresh: kept from the previous run unless `forced`, older than
    `every_s`, or in another time zone; a new one empties the query cache."""
    previous = st.session_state.get(_REFRESHED)
    stale = (
        forced
        or not isinstance(previous, datetime)
        or previous.tzinfo != now.tzinfo
        or now - previous > timedelta(seconds=every_s)
        or previous > now
    )
    if stale:
        st.session_state[_REFRESHED] = now
        st.session_state[_CACHE] = {}
        return now
    assert isinstance(previous, datetime)
    return previous


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


@dataclass
class Page:
    """What a page draws from: one open connection and the sidebar's choices."""

    conn: Any
    settings: DashboardSettings
    now: datetime
    span: core.TimeRange
    bucket: timedelta
    known: list[str]
    tables: set[str]
    min_score: float
    colours: dict[str, str] = field(default_factory=dict)

    @property
    def tz(self) -> str:
        """Display time zone."""
        return self.settings.timezone

    def query(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)`, once per refresh for the same arguments."""
        store: dict[tuple[str, str], Any] = st.session_state.setdefault(_CACHE, {})
        key = (f"{fn.__module__}.{fn.__qualname__}", repr(args))
        if key not in store:
            store[key] = fn(self.conn, *args)
        result: T = store[key]
        return result


def chart(key: str, fig: go.Figure, data: pd.DataFrame, caption: str | None = None) -> None:
    """A chart in a container with the stable test id `chart-<key>` (class `st-key-chart-…`
    in the browser), with a button that downloads what it shows as CSV."""
    with st.container(key=f"chart-{key}"):
        plot.plot(fig, key=key, config={"displaylogo": False})
        if caption:
            st.caption(caption)
        if not data.empty:
            csv_button(key, data)


def csv_button(key: str, data: pd.DataFrame) -> None:
    """A button that downloads `data` as `<key>.csv`; the CSV is written when clicked (on
    Streamlit's download thread), not on every page run."""
    st.download_button(
        "Download CSV",
        functools.partial(_csv, data),
        file_name=f"{key}.csv",
        mime="text/csv",
        key=f"csv-{key}",
        on_click="ignore",
    )


def _csv(data: pd.DataFrame) -> bytes:
    text: str = data.to_csv(index=False)
    return text.encode("utf-8")


def table(key: str, data: pd.DataFrame, **kwargs: Any) -> None:
    """A table in a container with the test id `table-<key>`, with a CSV button."""
    with st.container(key=f"table-{key}"):
        st.dataframe(data, hide_index=True, key=key, **kwargs)
        if not data.empty:
            csv_button(key, data)
