"""Stream positions on disk: `state_dir/<node>-streams.sqlite3` (one row per device).

Levels and inference save each device's last position (sequence number, end time, rate; never
audio) so that after a restart the first chunk of a device shows what arrived while they were
down (see `shared.continuity`). Saving is batched by the caller (at most once a second, and at
shutdown): a `kill -9` loses at most the last interval's updates, so the `service_down` gap
reported after it may start up to that interval too early (audio already measured counted as
lost), never too late.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

from shared.continuity import Position, Streams

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    device TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    end_time REAL NOT NULL,
    rate INTEGER NOT NULL,
    saved_at REAL NOT NULL
)
"""


def streams_path(state_dir: Path, node: str) -> Path:
    """Where `node` keeps its stream positions."""
    return state_dir.expanduser() / f"{node}-streams.sqlite3"


class StreamStore:
    """One SQLite file of positions; every `save` is one small transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit survives a crash of the process; a power cut may lose the last
        # ones, which only makes a reported service_down gap start a little early.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(SCHEMA)

    def load(self) -> dict[str, Position]:
        """Every saved position."""
        rows = self._db.execute("SELECT device, seq, end_time, rate FROM positions").fetchall()
        return {d: Position(int(s), float(e), int(r)) for d, s, e, r in rows}

    def save(self, positions: Mapping[str, Position], now: float | None = None) -> None:
        """Write these positions (replacing the devices' earlier ones) in one transaction."""
        if not positions:
            return
        now = time.time() if now is None else now
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO positions (device, seq, end_time, rate, saved_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET seq = excluded.seq, "
                "end_time = excluded.end_time, rate = excluded.rate, saved_at = excluded.saved_at",
                [(d, p.seq, p.end, p.rate, now) for d, p in positions.items()],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the file."""
        self._db.close()


def open_store(state_dir: Path, node: str) -> StreamStore | None:
    """The node's store, or None (logged) when it cannot be opened: the service then runs
    without positions across restarts rather than not at all."""
    path = streams_path(state_dir, node)
    try:
        return StreamStore(path)
    except (sqlite3.Error, OSError) as exc:
        log.error(
            "cannot open the stream positions %s: %s; gaps while this service is down will "
            "not be reported",
            path,
            exc,
        )
        return None


class PositionSaver:
    """Saves a `Streams`' changed positions at most every `interval` seconds."""

    def __init__(self, store: StreamStore | None, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self.failures = 0
        self._last = float("-inf")

    def maybe_save(self, streams: Streams, now: float) -> bool:
        """Save the positions changed since the last save, if `interval` passed since it
        (`now`: monotonic seconds); True if something was saved."""
        if self.store is None or now - self._last < self.interval:
            return False
        self._last = now
        dirty = streams.take_dirty()
        return bool(dirty) and self._save(dirty)

    def save_all(self, streams: Streams) -> bool:
        """Save every position at once (shutdown)."""
        if self.store is None:
            return False
        streams.take_dirty()
        return self._save(streams.positions())

    def _save(self, positions: Mapping[str, Position]) -> bool:
        assert self.store is not None
        try:
            self.store.save(positions)
        except sqlite3.Error as exc:
            self.failures += 1
            log.error("cannot save stream positions to %s: %s", self.store.path, exc)
            return False
        return True

    def close(self) -> None:
        """Close the store."""
        if self.store is not None:
            self.store.close()
