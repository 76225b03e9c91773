"""What to notify, and when to stay quiet. No I/O.

- A noise event notifies unless the same device had an event that ended less than
  `quiet_seconds` before this one started (so a long event, which levels splits into
  one-hour pieces, or a noisy spell of many short ones, sends one message). A repeated
  delivery of the same event (QoS 1 may redeliver) is recognised by its window key.
- A node's retained status notifies when its state turns `offline` or `degraded` (at most
  once per `quiet_seconds` per node), and once more when it is `online` again after such a
  message. The first status seen of each node is where it stands, not a change: nothing is
  sent for it (a node that was already offline when notify started stays unannounced).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from shared.devices import DeviceRegistry
from shared.messages import NoiseEvent, Status

#: Event keys remembered to recognise redeliveries.
KEEP_KEYS = 10_000


@dataclass(frozen=True)
class Notification:
    """One message to every target."""

    kind: Literal["event", "status"]
    device: str
    title: str
    body: str
    severity: Literal["info", "warning", "failure"] = "warning"


@dataclass
class NotifyCore:
    """Turns noise events and statuses into notifications."""

    registry: DeviceRegistry
    quiet_seconds: float = 600.0
    events: bool = True
    statuses: bool = True
    stats: Counter[str] = field(default_factory=Counter)
    _last_end: dict[str, float] = field(default_factory=dict)
    _keys: OrderedDict[tuple[str, float, int], None] = field(default_factory=OrderedDict)
    _state: dict[str, str] = field(default_factory=dict)
    _alerted: dict[str, float] = field(default_factory=dict)  # node -> when its last alert was
    _unresolved: set[str] = field(default_factory=set)  # alerted, not yet said to be back

    def _name(self, device: str) -> str:
        dev = self.registry.get(device)
        return f"{dev.name} ({device})" if dev is not None and dev.name else device

    def on_event(self, msg: NoiseEvent) -> Notification | None:
        """A noise event: a notification, or None (off, repeated, or in the quiet period)."""
        if not self.events:
            return None
        key = msg.window_key
        if key in self._keys:
            self.stats["event_repeats"] += 1
            return None
        self._keys[key] = None
        if len(self._keys) > KEEP_KEYS:
            self._keys.popitem(last=False)
        last = self._last_end.get(msg.device, -math.inf)
        self._last_end[msg.device] = max(last, msg.end)
        if msg.start - last < self.quiet_seconds:
            self.stats["events_quiet"] += 1
            return None
        self.stats["events_notified"] += 1
        heard = ", ".join(f"{c.label} ({c.score:.2f})" for c in msg.classes[:5]) or "no labels"
        when = datetime.fromtimestamp(msg.start, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return Notification(
            "event",
            msg.device,
            f"Noise at {self._name(msg.device)}",
            f"LAeq {msg.laeq_db:.1f} dB(A), max {msg.lamax_db:.1f} dB(A) for "
            f"{msg.duration:.0f} s from {when} (threshold {msg.threshold_db:.0f} dB(A)). "
            f"Heard: {heard}.",
        )

    def on_status(self, msg: Status) -> Notification | None:
        """A retained status: a notification when the node's state changed for the worse, or
        back to online after one."""
        if not self.statuses:
            return None
        node, state = msg.device, msg.state
        before = self._state.get(node)
        self._state[node] = state
        if before is None or before == state:
            return None
        what = f"{msg.service} on {self._name(node)}"
        if state == "online":
            if node not in self._unresolved:
                return None
            self._unresolved.discard(node)
            self.stats["statuses_notified"] += 1
            return Notification(
                "status", node, f"{what} is online again", "Back to online.", "info"
            )
        last = self._alerted.get(node)
        if last is not None and msg.time - last < self.quiet_seconds:
            self.stats["statuses_quiet"] += 1
            return None
        self._alerted[node] = msg.time
        self._unresolved.add(node)
        self.stats["statuses_notified"] += 1
        detail = f": {msg.detail}" if msg.detail else ""
        return Notification(
            "status",
            node,
            f"{what} is {state}",
            f"{what} reported {state} (was {before}){detail}.",
            "failure" if state == "offline" else "warning",
        )
