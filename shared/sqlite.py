"""SQLite opened for durability: how every local queue (ingest's spool, the result outbox of
levels and inference) opens its file and commits to it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


def open_durable(path: Path) -> sqlite3.Connection:
    """Open (creating its folder and file) a SQLite file in WAL mode with synchronous=FULL.

    FULL: a committed transaction survives a power cut, not only a process crash, so a caller
    may report "stored" (to the broker, to its own caller) as soon as a commit returned. The
    connection is in autocommit mode: write inside `transaction`. It may be used from several
    threads if the caller serialises them (one lock around every use).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, *, sync: bool = True) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises (or if
    the commit itself fails, e.g. a full disk).

    `sync=False` commits without waiting for the disk (synchronous=NORMAL for this one): a
    power cut may undo it, a process crash may not, and the next synced commit (the log is
    written in order) makes it durable too. For changes whose loss only repeats work, such
    as deleting what the broker acknowledged: the disk sync is most of a small commit's cost
    (about 100 against 30 µs of CPU, 200 against 30 µs of wall time here).
    """
    if not sync:
        db.execute("PRAGMA synchronous=NORMAL")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    finally:
        if not sync:
            db.execute("PRAGMA synchronous=FULL")
