"""Noise events: LAeq above a device's threshold for long enough, linked to what inference heard.

A chunk whose LAeq is above the threshold opens (or extends) an event; the first chunk at or
below it, or a gap in the stream, ends it. An event shorter than the minimum is forgotten. A
finished event waits until inference's labels cover its end (or `wait` seconds pass), then is
published with the classes that scored highest on average over the windows it overlaps.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass, field

from shared.messages import LabelScore, LabelsResult, NoiseEvent

#: Labels remembered per window (inference sends its top k, usually 5).
KEEP_LABELS = 20
#: Longest event in one message (the window limit of every result); a longer one is split.
MAX_EVENT_SECONDS = 3600.0


@dataclass
class _Open:
    seq: int
    start: float
    end: float
    threshold: float
    energy: float = 0.0  # sum of 10^(L/10) x seconds
    lamax: float = -math.inf


@dataclass(frozen=True)
class _Finished:
    device: str
    seq: int
    start: float
    end: float
    threshold: float
    laeq: float
    lamax: float
    due: float  # monotonic time after which it is published whatever labels arrived


@dataclass
class LabelHistory:
    """The last `size` label windows of one device."""

    size: int
    windows: deque[tuple[float, float, tuple[LabelScore, ...]]] = field(init=False)
    _latest: float = field(default=-math.inf, init=False)

    def __post_init__(self) -> None:
        self.windows = deque(maxlen=self.size)

    def add(self, msg: LabelsResult) -> None:
        """Remember one window's labels."""
        best = sorted(msg.labels, key=lambda item: -item.score)[:KEEP_LABELS]
        self.windows.append((msg.start, msg.end, tuple(best)))
        self._latest = max(self._latest, msg.end)

    def latest_end(self) -> float:
        """End of the latest window seen, Unix s (-inf when none); O(1), since it is asked for
        every waiting event on every labels message."""
        return self._latest

    def classes(self, start: float, end: float, k: int) -> list[LabelScore]:
        """The k labels with the highest mean score over the windows overlapping [start, end)."""
        totals: defaultdict[str, float] = defaultdict(float)
        count = 0
        for w_start, w_end, labels in self.windows:
            if w_start < end and w_end > start:
                count += 1
                for item in labels:
                    totals[item.label] += item.score
        if not count or k <= 0:
            return []
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [LabelScore(label=label, score=min(1.0, total / count)) for label, total in ranked]


@dataclass
class EventLinker:
    """Noise events of every device and the label history they are linked with."""

    min_seconds: float
    wait: float
    classes: int
    history_size: int
    max_devices: int = 1000
    _open: dict[str, _Open] = field(default_factory=dict, init=False)
    _pending: list[_Finished] = field(default_factory=list, init=False)
    _labels: OrderedDict[str, LabelHistory] = field(default_factory=OrderedDict, init=False)

    # --- inputs -------------------------------------------------------------------------------
    def on_labels(self, msg: LabelsResult) -> None:
        """Remember a labels result (bounded per device and in devices)."""
        hist = self._labels.get(msg.device)
        if hist is None:
            hist = self._labels[msg.device] = LabelHistory(self.history_size)
            while len(self._labels) > self.max_devices:
                self._labels.popitem(last=False)
        self._labels.move_to_end(msg.device)
        hist.add(msg)

    def on_level(
        self,
        device: str,
        seq: int,
        start: float,
        duration: float,
        laeq_db: float,
        lamax_db: float,
        threshold_db: float,
        continuous: bool,
        now: float,
    ) -> None:
        """One chunk's A-weighted Leq and Fast maximum; `continuous`: no gap before it."""
        cur = self._open.get(device)
        if cur is not None and (not continuous or laeq_db <= cur.threshold):
            self._close(device, now)
            cur = None
        if laeq_db <= threshold_db:
            return
        if cur is None:
            cur = self._open[device] = _Open(
                seq=seq, start=start, end=start, threshold=threshold_db
            )
        cur.end = start + duration
        cur.energy += 10 ** (laeq_db / 10) * duration
        cur.lamax = max(cur.lamax, lamax_db)
        if cur.end - cur.start >= MAX_EVENT_SECONDS:
            self._close(device, now)

    def close(self, device: str, now: float) -> None:
        """The device went quiet or away: end its open event, if any."""
        self._close(device, now)

    # --- outputs ------------------------------------------------------------------------------
    def due(self, now: float, everything: bool = False) -> list[NoiseEvent]:
        """Finished events whose labels have arrived or whose wait is over (all if told)."""
        ready: list[_Finished] = []
        waiting: list[_Finished] = []
        for ev in self._pending:
            hist = self._labels.get(ev.device)
            caught_up = hist is not None and hist.latest_end() >= ev.end - 1e-3
            (ready if everything or caught_up or now >= ev.due else waiting).append(ev)
        self._pending = waiting
        return [self._message(ev) for ev in ready]

    def flush(self, now: float) -> list[NoiseEvent]:
        """End every open event and return every finished one (shutdown)."""
        for device in list(self._open):
            self._close(device, now)
        return self.due(now, everything=True)

    def _close(self, device: str, now: float) -> None:
        cur = self._open.pop(device, None)
        if cur is None:
            return
        seconds = cur.end - cur.start
        if seconds + 1e-6 < self.min_seconds:
            return
        self._pending.append(
            _Finished(
                device=device,
                seq=cur.seq,
                start=cur.start,
                end=cur.end,
                threshold=cur.threshold,
                laeq=10 * math.log10(cur.energy / seconds),
                lamax=cur.lamax,
                due=now + self.wait,
            )
        )

    def _message(self, ev: _Finished) -> NoiseEvent:
        hist = self._labels.get(ev.device)
        classes = hist.classes(ev.start, ev.end, self.classes) if hist else []
        return NoiseEvent(
            device=ev.device,
            seq=ev.seq,
            start=ev.start,
            duration=min(ev.end - ev.start, MAX_EVENT_SECONDS),
            threshold_db=ev.threshold,
            laeq_db=ev.laeq,
            lamax_db=ev.lamax,
            classes=classes,
        )
