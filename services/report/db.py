"""Reading rollups and noise events for a report: a read-only connection, plain values out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from services.report.core import Bucket, Interval
from services.report.settings import ReportSettings

#: Rollup table by bucket width in seconds.
ROLLUPS: dict[int, str] = {3600: "levels_hourly", 60: "levels_minute"}


def connect(settings: ReportSettings, dsn: str) -> psycopg.Connection[Any]:
    """A connection whose every transaction is READ ONLY, in UTC, with a statement timeout."""
    timeout_ms = int(settings.statement_timeout_s * 1000)
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=settings.connect_timeout_s,
        application_name="soundscape-report",
        options=(
            f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms} -c TimeZone=UTC"
        ),
    )


def fetch_buckets(
    conn: psycopg.Connection[Any], device: str, span: Interval, width_s: int
) -> list[Bucket]:
    """The device's rollup buckets that start in `span`, from the table of that width."""
    query = sql.SQL(
        "SELECT bucket, laeq_seconds, laeq_energy FROM {} "
        "WHERE device = %s AND bucket >= %s AND bucket < %s ORDER BY bucket"
    ).format(sql.Identifier(ROLLUPS[width_s]))
    rows = conn.execute(query, (device, span.start, span.end)).fetchall()
    return [
        Bucket(
            start=_utc(start),
            width_s=float(width_s),
            laeq_seconds=float(seconds or 0.0),
            laeq_energy=float(energy or 0.0),
        )
        for start, seconds, energy in rows
    ]


def fetch_events(
    conn: psycopg.Connection[Any], device: str, span: Interval, min_db: float | None
) -> list[datetime]:
    """Starts of the device's noise events in `span` (with LAeq >= `min_db` when given)."""
    rows = conn.execute(
        "SELECT window_start FROM noise_events WHERE device = %s "
        "AND window_start >= %s AND window_start < %s "
        "AND (%s::double precision IS NULL OR laeq_db >= %s::double precision) "
        "ORDER BY window_start",
        (device, span.start, span.end, min_db, min_db),
    ).fetchall()
    return [_utc(start) for (start,) in rows]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
