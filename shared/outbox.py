"""The durable result outbox: QoS 1 results wait in SQLite (WAL) until the broker acknowledged
them, so a restart of the service that measured them, or a broker it cannot reach, loses none.

Invariants `MqttBus` relies on:
- `put` returns only after the messages are committed (synchronous=FULL, see `shared.sqlite`):
  a result handed to `put` survives kill -9 and a power cut;
- ids only grow (AUTOINCREMENT), so "oldest" is "lowest id" and `take` hands out the oldest in
  the order they were put (`after` the last id already in flight, for a sliding window);
- a message leaves only through `done` (after its PUBACK) or the size bound: one sent but not
  acknowledged when the process died is sent again at the next start (at least once; every
  result carries its key, and ingest stores a key once). `done`'s delete is not synced to
  disk (`transaction(sync=False)`): a power cut right after it may send those results again
  too, never lose one;
- the bound is on bytes (topic + payload): when over it, the oldest messages not being sent
  right now are deleted and counted, so it is exceeded by at most one send window (the
  window lasts from the first `take` to a `done` that ends it);
- only what the bus puts here is written: QoS 1 non-retained messages, never audio (QoS 0) and
  never statuses.

One instance per file: the row and byte counts are kept in memory (read once at open), which is
why a node id must be unique per process. Thread-safe (one lock around every use).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from shared.sqlite import open_durable, transaction

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    content_type TEXT,
    size INTEGER NOT NULL
);
"""


def outbox_path(state_dir: Path, node: str) -> Path:
    """`state_dir/<node>-outbox.sqlite3` (the folder's `~` expanded)."""
    return state_dir.expanduser() / f"{node}-outbox.sqlite3"


def open_outbox(state_dir: Path, node: str, megabytes: float, service: str) -> Outbox:
    """The durable outbox of `node` (`outbox_path`), bounded to `megabytes`; says how many
    messages a previous run left in it (they are sent first). Raises OSError or
    sqlite3.Error when the file cannot be opened."""
    path = outbox_path(state_dir, node)
    outbox = Outbox(path, int(megabytes * 1e6))
    if len(outbox):
        log.info("%s: %d messages from a previous run wait in %s", service, len(outbox), path)
    return outbox


def outbox_megabytes_field() -> Any:
    """The size setting of the outbox, shared by every service that has one."""
    return Field(
        256.0,
        gt=0,
        description="Most results, MB (topic + payload), kept in the durable outbox "
        "`<state_dir>/<node_id>-outbox.sqlite3` until the broker acknowledges them; beyond, "
        "the oldest are dropped and counted (outbox_dropped)",
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One message waiting in the outbox."""

    id: int
    topic: str
    payload: bytes
    qos: int
    content_type: str | None

    @property
    def size(self) -> int:
        """What the message counts against the bound, bytes."""
        return len(self.topic.encode()) + len(self.payload)


#: What `put` takes: (topic, payload, qos, content type).
Item = tuple[str, bytes, int, str | None]


class Outbox:
    """A bounded, durable FIFO of messages in one SQLite file."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._db = open_durable(path)
        self._lock = threading.Lock()
        self._inflight_last = 0  # highest id handed to the current send window
        with self._lock:
            self._db.executescript(SCHEMA)
            rows, size = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox"
            ).fetchone()
        self._rows, self._bytes = int(rows), int(size)

    def close(self) -> None:
        """Close the file; what is left is sent at the next start."""
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        """Messages waiting (sent but unacknowledged ones included)."""
        return self._rows

    @property
    def size(self) -> int:
        """Bytes waiting, as counted against the bound."""
        return self._bytes

    def put(self, items: Sequence[Item]) -> int:
        """Store messages durably in one commit; enforce the bound. Returns how many of the
        oldest messages the bound dropped."""
        if not items:
            return 0
        sized = [(t, p, q, c, len(t.encode()) + len(p)) for t, p, q, c in items]
        with self._lock, transaction(self._db) as db:
            db.executemany(
                "INSERT INTO outbox (topic, payload, qos, content_type, size) "
                "VALUES (?, ?, ?, ?, ?)",
                sized,
            )
            rows = self._rows + len(sized)
            size = self._bytes + sum(s[4] for s in sized)
            dropped, freed = self._enforce_bound(size)
            # Counted only once committed: a failed put leaves the counts as they were.
        self._rows, self._bytes = rows - dropped, size - freed
        return dropped

    def _enforce_bound(self, size: int) -> tuple[int, int]:
        excess = size - self.max_bytes
        if excess <= 0:
            return 0, 0
        cur = self._db.execute(
            "SELECT id, size FROM outbox WHERE id > ? ORDER BY id", (self._inflight_last,)
        )
        count, freed, last = 0, 0, 0
        for rid, rsize in cur:
            count, freed, last = count + 1, freed + int(rsize), int(rid)
            if freed >= excess:
                break
        cur.close()
        if count:
            self._db.execute(
                "DELETE FROM outbox WHERE id > ? AND id <= ?", (self._inflight_last, last)
            )
        return count, freed

    def take(self, limit: int, after: int = 0) -> list[Entry]:
        """The oldest `limit` messages with an id above `after`, in order; they are in flight
        (safe from the bound) until a `done` ends the window."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, content_type FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
            if rows:
                self._inflight_last = max(self._inflight_last, int(rows[-1][0]))
            elif not after:  # the counts drifted (another process on the same file): trust it
                self._rows = self._bytes = 0
        return [Entry(int(r[0]), r[1], bytes(r[2]), int(r[3]), r[4]) for r in rows]

    def done(self, acked: Sequence[Entry], *, end_window: bool = True) -> None:
        """The broker acknowledged `acked`: forget them. Unless `end_window` is False (more of
        the window is still in flight), this ends the send window: messages taken but not
        acknowledged stay, and are taken again first."""
        with self._lock:
            if acked:
                # Not synced: undone by a power cut, a delete only sends those results again
                # (at least once, as after any crash before their PUBACK).
                with transaction(self._db, sync=False) as db:
                    cur = db.executemany(
                        "DELETE FROM outbox WHERE id = ?", [(e.id,) for e in acked]
                    )
                self._rows -= cur.rowcount
                self._bytes -= sum(e.size for e in acked)
            if end_window:
                self._inflight_last = 0
