"""The durable spool: results wait in SQLite (WAL) until PostgreSQL has committed them.

Invariants the rest of ingest relies on:
- `put` returns only after the results are committed (synchronous=FULL), so a message may be
  acknowledged to the broker once `put` returned;
- ids only grow (AUTOINCREMENT), so "oldest" is "lowest id" and a batch taken by `take` is a
  contiguous id range [first, last] of the oldest results;
- results already handed to a sync (in flight) are never dropped by the size bound, so the
  spool may exceed `max_results` by at most one batch while a sync runs;
- a gap that has been handed to a sync is sealed: later drops start a new gap, so a gap row is
  never changed after PostgreSQL may have seen it (gaps are stored idempotently by uid).

Thread-safe: every method takes the same lock (ingest writes from one thread, syncs from another).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from services.ingest.core import Gap, Result, Row, gaps_of
from shared.sqlite import open_durable

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    start REAL NOT NULL,
    key TEXT NOT NULL,
    rows BLOB NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (kind, key)
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    result TEXT NOT NULL,
    first_start REAL NOT NULL,
    last_start REAL NOT NULL,
    count INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    sealed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    start REAL NOT NULL,
    key TEXT NOT NULL,
    rows BLOB NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""

#: Quarantined results kept for an operator to inspect; older ones are deleted.
QUARANTINE_KEEP = 10_000


@dataclass(frozen=True, slots=True)
class SpooledGap:
    """A gap waiting in the spool, with the uid that makes storing it idempotent."""

    id: int
    uid: str
    gap: Gap
    recorded_at: float


@dataclass(frozen=True, slots=True)
class Batch:
    """The oldest results and every pending gap, handed to one sync."""

    ids: tuple[int, ...]
    results: tuple[Result, ...]
    gaps: tuple[SpooledGap, ...]

    def __bool__(self) -> bool:
        return bool(self.results or self.gaps)

    def split(self) -> tuple[Batch, Batch]:
        """Two halves of the results; the gaps go with the first half."""
        half = len(self.results) // 2
        return (
            Batch(self.ids[:half], self.results[:half], self.gaps),
            Batch(self.ids[half:], self.results[half:], ()),
        )


@dataclass(frozen=True, slots=True)
class PutOutcome:
    """What one `put` did."""

    stored: int
    duplicates: int
    dropped: int
    gaps: tuple[Gap, ...] = field(default=())


def _pack(rows: Sequence[Row]) -> bytes:
    packed: bytes = msgpack.packb([list(r) for r in rows], use_bin_type=True)
    return packed


def _unpack(blob: bytes) -> tuple[Row, ...]:
    # Rows hold scalars and JSON text only: tuples straight from msgpack are the same rows.
    rows: tuple[Row, ...] = msgpack.unpackb(blob, raw=False, use_list=False)
    return rows


class Spool:
    """A bounded, durable queue of results and gaps in one SQLite file."""

    def __init__(self, path: Path, max_results: int) -> None:
        self.path = path
        self.max_results = max_results
        # One connection shared by the writer and the sync thread, serialised by the lock.
        # synchronous=FULL: a committed put survives a power cut; the broker is told "stored"
        # only after this.
        self._db = open_durable(path)
        self._lock = threading.Lock()
        self._inflight_last = 0
        with self._lock:
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the file (after the last sync)."""
        with self._lock:
            self._db.close()

    # --- writing ----------------------------------------------------------------------------
    def put(self, results: Sequence[Result], now: float | None = None) -> PutOutcome:
        """Store results durably (skipping ones already spooled); enforce the size bound."""
        now = time.time() if now is None else now
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                stored = 0
                if results:
                    cur = db.executemany(
                        "INSERT OR IGNORE INTO results (kind, device, start, key, rows, "
                        "received_at) VALUES (?, ?, ?, ?, ?, ?)",
                        [(r.kind, r.device, r.start, r.key, _pack(r.rows), now) for r in results],
                    )
                    stored = cur.rowcount  # summed over the rows (ignored ones count 0)
                gaps = self._enforce_bound(now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        dropped = sum(g.count for g in gaps)
        return PutOutcome(stored, len(results) - stored, dropped, tuple(gaps))

    def _enforce_bound(self, now: float) -> list[Gap]:
        (depth,) = self._db.execute("SELECT count(*) FROM results").fetchone()
        excess = depth - self.max_results
        if excess <= 0:
            return []
        victims = self._db.execute(
            "SELECT id, device, kind, start FROM results WHERE id > ? ORDER BY id LIMIT ?",
            (self._inflight_last, excess),
        ).fetchall()
        if not victims:
            return []
        self._db.executemany("DELETE FROM results WHERE id = ?", [(v[0],) for v in victims])
        gaps = gaps_of((device, kind, start) for _, device, kind, start in victims)
        for gap in gaps:
            cur = self._db.execute(
                "UPDATE gaps SET first_start = min(first_start, ?), "
                "last_start = max(last_start, ?), count = count + ? "
                "WHERE device = ? AND result = ? AND sealed = 0",
                (gap.first_start, gap.last_start, gap.count, gap.device, gap.result),
            )
            if cur.rowcount == 0:
                self._db.execute(
                    "INSERT INTO gaps (uid, device, result, first_start, last_start, count, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(uuid.uuid4()),
                        gap.device,
                        gap.result,
                        gap.first_start,
                        gap.last_start,
                        gap.count,
                        now,
                    ),
                )
        return gaps

    # --- syncing ----------------------------------------------------------------------------
    def take(self, limit: int) -> Batch:
        """The oldest `limit` results and every pending gap (sealed from now on)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, device, start, key, rows FROM results ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE gaps SET sealed = 1 WHERE sealed = 0")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            gap_rows = self._db.execute(
                "SELECT id, uid, device, result, first_start, last_start, count, recorded_at "
                "FROM gaps ORDER BY id"
            ).fetchall()
            if rows:
                self._inflight_last = rows[-1][0]
        return Batch(
            tuple(r[0] for r in rows),
            tuple(Result(r[1], r[2], r[3], r[4], _unpack(r[5])) for r in rows),
            tuple(SpooledGap(g[0], g[1], Gap(*g[2:7]), g[7]) for g in gap_rows),
        )

    def done(self, batch: Batch) -> None:
        """PostgreSQL committed `batch`: forget it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM results WHERE id = ?", [(i,) for i in batch.ids])
                self._db.executemany("DELETE FROM gaps WHERE id = ?", [(g.id,) for g in batch.gaps])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._inflight_last = 0

    def release(self) -> None:
        """The sync failed: the batch stays, and the size bound may drop it again."""
        with self._lock:
            self._inflight_last = 0

    def quarantine(self, batch: Batch, reason: str, now: float | None = None) -> None:
        """Move results PostgreSQL refused out of the way (kept for inspection, bounded)."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for rid, res in zip(batch.ids, batch.results, strict=True):
                    self._db.execute(
                        "INSERT INTO quarantine (kind, device, start, key, rows, reason, at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (res.kind, res.device, res.start, res.key, _pack(res.rows), reason, now),
                    )
                    self._db.execute("DELETE FROM results WHERE id = ?", (rid,))
                self._db.execute(
                    "DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ?",
                    (QUARANTINE_KEEP,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- looking ----------------------------------------------------------------------------
    def depth(self) -> int:
        """Results waiting."""
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM results").fetchone()
        return int(n)

    def pending_gaps(self) -> list[Gap]:
        """Gaps waiting."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, result, first_start, last_start, count FROM gaps ORDER BY id"
            ).fetchall()
        return [Gap(*r) for r in rows]

    def quarantined(self) -> int:
        """Results moved to quarantine (kept up to QUARANTINE_KEEP)."""
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM quarantine").fetchone()
        return int(n)
