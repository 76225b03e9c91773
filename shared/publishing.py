"""What the MQTT bus holds to publish, queued or in flight: the bookkeeping behind its one
windowed sender (`MqttBus._send`), kept apart from the I/O.

Two lanes feed the send window: `MemoryLane` (statuses, audio, and results where a service has
no durable outbox) and `DurableLane` (results waiting in the SQLite `Outbox`). Each lane

- hands out its messages oldest first (`take`) and keeps each one until the broker has
  acknowledged it (`acked`; a QoS 0 message counts as acknowledged once paho wrote it);
- on `rewind` (the link broke) takes back whatever was in flight and not acknowledged, and
  hands it out again first, in its original order, before anything newer;
- counts everything it holds, in flight or not (`len`).

So messages reach the broker at least once, and their first deliveries arrive in the order
they were published: on one connection TCP and the broker keep the order, and a reconnect
sends again, in order, from the oldest message not acknowledged. A message whose PUBACK was
lost with the link arrives twice (every result carries its key: ingest stores it once), and
such a repeat may come after newer messages.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from shared.outbox import Entry, Outbox


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message waiting to be published."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    content_type: str | None = None


class Lane(Protocol):
    """Messages handed out oldest first and held until acknowledged."""

    def take(self, limit: int) -> list[tuple[int, Outgoing]]:
        """Up to `limit` messages not in flight yet, oldest first, each with its token."""
        ...

    def acked(self, token: int) -> None:
        """The broker acknowledged the message of `token`: forget it."""
        ...

    def flush(self) -> None:
        """Make the acknowledgements so far final (the durable lane deletes its rows)."""
        ...

    def rewind(self) -> None:
        """The link broke: what is in flight is handed out again first, in order."""
        ...

    def __len__(self) -> int: ...


class MemoryLane:
    """A bounded FIFO in memory; when full, the oldest message not in flight is dropped (so
    the bound is exceeded by at most the send window)."""

    def __init__(self, size: int) -> None:
        self.size = size
        #: Messages not handed out yet, oldest first.
        self.queued: deque[Outgoing] = deque()
        self._inflight: dict[int, Outgoing] = {}  # insertion order is send order
        self._token = 0

    def __len__(self) -> int:
        return len(self.queued) + len(self._inflight)

    @property
    def in_flight(self) -> int:
        """Messages handed out and not acknowledged."""
        return len(self._inflight)

    def put(self, out: Outgoing) -> int:
        """Queue a message; returns how many old ones the bound dropped (0 or 1)."""
        dropped = 0
        if len(self) >= self.size and self.queued:
            self.queued.popleft()
            dropped = 1
        self.queued.append(out)
        return dropped

    def take(self, limit: int) -> list[tuple[int, Outgoing]]:
        """Up to `limit` queued messages, oldest first, now in flight."""
        taken: list[tuple[int, Outgoing]] = []
        while self.queued and len(taken) < limit:
            self._token += 1
            out = self.queued.popleft()
            self._inflight[self._token] = out
            taken.append((self._token, out))
        return taken

    def acked(self, token: int) -> None:
        """Forget an acknowledged message."""
        self._inflight.pop(token, None)

    def flush(self) -> None:
        """Nothing to make final in memory."""

    def rewind(self) -> None:
        """Put what was in flight back at the front, in its original order."""
        self.queued.extendleft(reversed(self._inflight.values()))
        self._inflight.clear()


class DurableLane:
    """The durable outbox as a lane: rows are taken after the last one in flight and deleted
    after their PUBACK, `flush_every` acknowledgements per commit (and whenever the window
    empties), so a busy link costs one disk sync per batch, not per message. A crash before
    a commit sends those results again at the next start (at least once)."""

    def __init__(self, outbox: Outbox, flush_every: int) -> None:
        self.outbox = outbox
        self.flush_every = max(1, flush_every)
        self._inflight: dict[int, Entry] = {}
        self._acked: list[Entry] = []
        self._last = 0  # highest id handed out in this window

    def __len__(self) -> int:
        return len(self.outbox)

    @property
    def in_flight(self) -> int:
        """Rows handed out and not acknowledged."""
        return len(self._inflight)

    def take(self, limit: int) -> list[tuple[int, Outgoing]]:
        """Up to `limit` rows after the last one in flight, oldest first."""
        if limit <= 0 or len(self.outbox) <= len(self._inflight) + len(self._acked):
            return []
        entries = self.outbox.take(limit, after=self._last)
        if entries:
            self._last = entries[-1].id
        for entry in entries:
            self._inflight[entry.id] = entry
        return [(e.id, Outgoing(e.topic, e.payload, e.qos, False, e.content_type)) for e in entries]

    def acked(self, token: int) -> None:
        """Record an acknowledged row; commit the batch when it is full or the window empty."""
        entry = self._inflight.pop(token, None)
        if entry is not None:
            self._acked.append(entry)
        if len(self._acked) >= self.flush_every or not self._inflight:
            self.flush()

    def flush(self) -> None:
        """Delete the acknowledged rows; with nothing left in flight, end the window."""
        acked, self._acked = self._acked, []
        end = not self._inflight
        if acked or end:
            self.outbox.done(acked, end_window=end)
        if end:
            self._last = 0

    def rewind(self) -> None:
        """Forget what is in flight: the rows stay, and are taken again first."""
        acked, self._acked = self._acked, []
        self._inflight.clear()
        self._last = 0
        self.outbox.done(acked)
