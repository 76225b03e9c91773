"""The sync: move everything in the spool to PostgreSQL, batch by batch. Blocking; run it in
a thread of its own.

One sync takes batches from the spool until it is empty, and for each: push it in one
transaction, then (only then) delete it from the spool. A crash between the commit and the
delete leaves the batch in the spool; the next sync offers it again and `ON CONFLICT DO
NOTHING` stores nothing twice. A batch PostgreSQL refuses for a value (not for being down) is
split in halves until the result carrying the value is alone; that one is quarantined in the
spool with the reason, and every good result of the batch is stored.

Every database step is bounded by `db_timeout`: connecting by libpq's `connect_timeout`,
checking the schema and each batch's transaction by a watchdog that drops the link when the
step runs past it (deadline.py says why TCP and server timeouts are not enough). A step that
fails that way rolls back like any lost connection: its batch stays in the spool.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import psycopg

from services.ingest import db
from services.ingest.deadline import StepTimeout, Watchdog
from services.ingest.spool import Batch, Spool
from shared.devices import DeviceRegistry
from shared.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """Thread-safe counters that go into the retained status."""

    _counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int = 1) -> None:
        """Increment a counter."""
        if n:
            with self._lock:
                self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync did."""

    batches: int = 0
    offered: int = 0
    inserted: int = 0
    results: int = 0
    quarantined: int = 0
    error: str | None = None


class Syncer:
    """Owns the PostgreSQL connection; prepares the schema once per connection."""

    def __init__(
        self,
        spool: Spool,
        dsn: str,
        *,
        source: str,
        batch_size: int,
        registry: DeviceRegistry | None = None,
        connect_timeout: int = 10,
        db_timeout: float = 60.0,
        stats: Stats | None = None,
        maintenance_dsn: str | None = None,
        keep_days: dict[str, int] | None = None,
        maintenance_interval: float = 3600.0,
    ) -> None:
        self.spool = spool
        self.dsn = dsn
        self.source = source
        self.batch_size = batch_size
        self.registry = registry or DeviceRegistry()
        self.connect_timeout = connect_timeout
        self.db_timeout = db_timeout
        self._watchdog = Watchdog(db_timeout)
        self.stats = stats or Stats()
        self.healthy = True
        self.last_error: str | None = None
        self._conn: psycopg.Connection | None = None
        self._cancelled = False
        #: UTC days whose partitions are known to exist (ensured through this process).
        self._days: set[date] = set()
        self.maintenance_dsn = maintenance_dsn
        self.keep_days = keep_days or {}
        self.maintenance_interval = maintenance_interval
        self._maintained_at: float | None = None

    def __enter__(self) -> Syncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def cancel(self) -> None:
        """From another thread: abort the statement a sync is running (it then rolls back).

        The cancel request travels on a connection of its own; when it cannot reach the
        server (a dead link), the running step's link is dropped instead.
        """
        self._cancelled = True
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.cancel_safe(timeout=min(5.0, self.db_timeout))
                return
            except psycopg.Error as exc:
                log.warning(
                    "could not cancel the running sync (%s); dropping its link", _first_line(exc)
                )
        self._watchdog.drop()

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = db.connect(
            self.dsn,
            connect_timeout=self.connect_timeout,
            timeout=self.db_timeout,
            application_name="soundscape-ingest",
        )
        try:
            with self._watchdog.step(conn, "checking the schema"):
                applied = db.migrate(conn)
                n = db.upsert_devices(conn, self.registry)
            if applied:
                log.info("database schema migrated: %s", ", ".join(applied))
            if n:
                log.info("device registry: %d devices mirrored into the devices table", n)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def sync(self) -> SyncReport:
        """Move the whole spool to PostgreSQL; never raises for an unreachable database."""
        report = SyncReport()
        if self._cancelled:
            return report
        try:
            conn = self._connection()
            with self._watchdog.step(conn, "creating partitions ahead"):
                self.stats.add(
                    "partitions_created",
                    db.ensure_partitions(conn, db.days_ahead(datetime.now(UTC)), self._days),
                )
            while not self._cancelled and (batch := self.spool.take(self.batch_size)):
                try:
                    part = self._store(conn, batch)
                except BaseException:
                    self.spool.release()
                    raise
                self.spool.done(batch)
                report = SyncReport(
                    report.batches + part.batches,
                    report.offered + part.offered,
                    report.inserted + part.inserted,
                    report.results + part.results,
                    report.quarantined + part.quarantined,
                )
        except StepTimeout as exc:
            self.close()
            if self._cancelled:
                return self._failed(report, "sync cancelled: link dropped", False)
            self.stats.add("sync_timeouts")
            return self._failed(report, f"sync timed out: {exc}", False)
        except psycopg.errors.QueryCanceled as exc:
            self.close()
            return self._failed(report, f"sync cancelled: {_first_line(exc)}", False)
        except db.UNREACHABLE as exc:
            self.close()
            return self._failed(report, f"database unreachable: {_first_line(exc)}", False)
        except sqlite3.Error as exc:
            return self._failed(report, f"spool {self.spool.path}: {exc}", True)
        except (ConfigError, psycopg.Error) as exc:
            # Privileges, a missing table, a schema behind: not the data's fault, and not
            # fixed by waiting, but nothing is lost while results wait in the spool.
            self.close()
            return self._failed(report, f"database refused the sync: {_first_line(exc)}", True)
        self.healthy = True
        self.last_error = None
        self._maybe_maintain()
        if report.batches:
            log.info(
                "synced %d results (%d rows new of %d) in %d transaction(s)",
                report.results,
                report.inserted,
                report.offered,
                report.batches,
            )
        return report

    def _maybe_maintain(self) -> None:
        """Maintenance (partitions ahead, retention) through the owner's URL, when one is
        set and `maintenance_interval` has passed; a failure is logged and counted, and
        tried again at the next interval (the writer's syncs go on either way)."""
        if self.maintenance_dsn is None or self._cancelled:
            return
        now = time.monotonic()
        if (
            self._maintained_at is not None
            and now - self._maintained_at < self.maintenance_interval
        ):
            return
        self._maintained_at = now
        try:
            with db.connect(
                self.maintenance_dsn,
                connect_timeout=self.connect_timeout,
                timeout=self.db_timeout,
                application_name="soundscape-ingest-maintenance",
            ) as conn:
                dropped = db.maintain(conn, self.keep_days, datetime.now(UTC))
        except psycopg.Error as exc:
            self.stats.add("maintenance_failures")
            log.warning(
                "maintenance failed: %s; trying again in %.0f s",
                _first_line(exc),
                self.maintenance_interval,
            )
            return
        self.stats.add("maintenance_runs")
        self.stats.add("partitions_dropped", len(dropped))
        self.stats.add("partition_rows_dropped", sum(d.rows for d in dropped))

    def _failed(self, report: SyncReport, reason: str, loud: bool) -> SyncReport:
        self.stats.add("sync_failures")
        if self.healthy or reason != self.last_error:
            try:
                waiting = f"{self.spool.depth()} results wait in the spool"
            except sqlite3.Error:
                waiting = "the spool cannot be read"
            (log.error if loud else log.warning)("%s; %s", reason, waiting)
        self.healthy = False
        self.last_error = reason
        return SyncReport(
            report.batches,
            report.offered,
            report.inserted,
            report.results,
            report.quarantined,
            reason,
        )

    def _store(self, conn: psycopg.Connection, batch: Batch) -> SyncReport:
        """Push a batch; split it when PostgreSQL refuses one of its values."""
        try:
            with self._watchdog.step(conn, f"storing {len(batch.results)} results"):
                pushed = db.push(conn, batch, self.source, self._days)
        except db.REFUSED as exc:
            if len(batch.results) <= 1:
                reason = _first_line(exc)
                if batch.results:
                    res = batch.results[0]
                    log.warning(
                        "PostgreSQL refused a %s result of %s at %.3f: %s; quarantined",
                        res.kind,
                        res.device,
                        res.start,
                        reason,
                    )
                    self.spool.quarantine(batch, reason)
                    self.stats.add("quarantined")
                    if batch.gaps:
                        self._store(conn, Batch((), (), batch.gaps))
                    return SyncReport(quarantined=1)
                raise
            first, second = batch.split()
            a = self._store(conn, first)
            b = self._store(conn, second)
            return SyncReport(
                a.batches + b.batches,
                a.offered + b.offered,
                a.inserted + b.inserted,
                a.results + b.results,
                a.quarantined + b.quarantined,
            )
        self.stats.add("syncs")
        self.stats.add("synced_results", pushed.results)
        self.stats.add("synced_rows", pushed.inserted)
        self.stats.add("duplicate_rows", pushed.offered - pushed.inserted)
        self.stats.add("synced_gaps", pushed.gaps)
        return SyncReport(1, pushed.offered, pushed.inserted, pushed.results)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
