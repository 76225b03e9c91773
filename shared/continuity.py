"""Stream continuity: where each device's audio stream is, what a new chunk means (pure).

Levels and inference both receive every device's audio as chunks (QoS 0: some never arrive)
and must tell, for each chunk, whether it continues the device's stream. Capture numbers its
chunks contiguously for as long as it runs (also across its own losses, where only the time
jumps) and starts again at 0 when its process restarts. Against the device's last `Position`,
a chunk is:

    first       nothing known of the device yet
    continuous  the next sequence number, starting where the last chunk ended (± tolerance)
    jump        the next sequence number, elsewhere in time: capture's own discontinuity
                (lost samples, a clock step), which capture reports itself
    hole        a later sequence number, not earlier in time: chunks went missing on the way
                (capture's outbox full, the broker or a link dropped QoS 0 audio) or while
                this service was down
    late        not the next sequence number (and not 0 where `seq_zero_restarts`), starting
                up to `late_horizon` seconds before the last chunk ended: a repeat, out of
                order, or a straggler of capture's previous run
    restart     anything else: capture restarted (seq back to 0), the rate changed, a stream
                far behind

`Streams` keeps the positions (bounded, least recently heard dropped first) and says, with
`gap_of`, which steps are audio this service lost: a `hole` while it ran (`audio_missing`),
and, for the first chunk of a device after the positions were restored from disk at a start,
anything that left time unaccounted for (`service_down`); chunks the service dropped itself
(`skip`, reported with their own cause) are not counted again as missing. `GapCollector`
merges a service's losses of one device and cause into few `GapReport`s.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from shared.messages import GapCause, GapReport

StepKind = Literal["first", "continuous", "jump", "hole", "late", "restart"]


@dataclass(frozen=True, slots=True)
class Position:
    """The last chunk of a device that moved its stream on."""

    seq: int
    end: float  #: time just after its last sample, Unix seconds
    rate: int


@dataclass(frozen=True, slots=True)
class Step:
    """What one chunk means for its device's stream."""

    kind: StepKind
    previous: Position | None
    start: float  #: the chunk's start, Unix seconds
    resumed: bool = False  #: the first chunk since `previous` was restored from disk

    @property
    def continuous(self) -> bool:
        """The chunk follows the previous one without a gap."""
        return self.kind == "continuous"


def judge(
    prev: Position | None,
    seq: int,
    start: float,
    rate: int,
    *,
    tolerance: float,
    late_horizon: float,
    seq_zero_restarts: bool,
) -> StepKind:
    """The kind of step a chunk (`seq`, `start`, `rate`) makes after `prev`."""
    if prev is None:
        return "first"
    if rate != prev.rate:
        return "restart"
    expected = prev.seq + 1
    if seq == expected:
        return "continuous" if abs(start - prev.end) <= tolerance else "jump"
    behind = prev.end - start
    if (seq > 0 or not seq_zero_restarts) and tolerance < behind <= late_horizon:
        return "late"  # audio from before the last chunk's end cannot be new, whatever its seq
    if seq > expected and behind <= tolerance:
        return "hole"
    return "restart"


@dataclass(frozen=True, slots=True)
class Lost:
    """An interval of a device's audio that this service did not get, and why."""

    device: str
    start: float
    end: float
    cause: GapCause
    count: int | None


class Streams:
    """Every device's stream position; restored at a start, saved by the caller.

    `dirty` lists devices whose position changed since `take_dirty`, for a batched save.
    """

    def __init__(
        self,
        *,
        tolerance: float,
        late_horizon: float,
        seq_zero_restarts: bool,
        max_devices: int = 1000,
        holes: bool = True,
    ) -> None:
        self.tolerance = tolerance
        self.late_horizon = late_horizon
        self.seq_zero_restarts = seq_zero_restarts
        self.max_devices = max_devices
        #: Whether a hole while running is this service's loss (not with a shared
        #: subscription, where the other workers get the chunks this one skips).
        self.holes = holes
        self._pos: OrderedDict[str, Position] = OrderedDict()
        self._restored: set[str] = set()
        self._restored_at = 0.0
        self._dirty: set[str] = set()
        self._skipped: dict[str, set[int]] = {}

    def __len__(self) -> int:
        return len(self._pos)

    def get(self, device: str) -> Position | None:
        """The device's position, if known."""
        return self._pos.get(device)

    def restore(self, positions: Mapping[str, Position], started: float) -> None:
        """Positions saved by an earlier run; `started` is when this one began (Unix s)."""
        for device, pos in positions.items():
            self._pos[device] = pos
            self._restored.add(device)
        self._restored_at = started
        self._bound()

    def skip(self, device: str, seq: int) -> None:
        """This service dropped chunk `seq` itself (and reported it): when the stream moves
        past it, it is not audio that never arrived."""
        marks = self._skipped.setdefault(device, set())
        if len(marks) < 100_000:
            marks.add(seq)

    def step(self, device: str, seq: int, start: float, end: float, rate: int) -> Step:
        """Judge a chunk and move the device's position on (not for a late chunk)."""
        prev = self._pos.get(device)
        kind = judge(
            prev,
            seq,
            start,
            rate,
            tolerance=self.tolerance,
            late_horizon=self.late_horizon,
            seq_zero_restarts=self.seq_zero_restarts,
        )
        resumed = device in self._restored
        if kind != "late":
            self._restored.discard(device)
            self._pos[device] = Position(seq, end, rate)
            self._pos.move_to_end(device)
            self._dirty.add(device)
            self._bound()
        return Step(kind, prev, start, resumed)

    def gap_of(self, device: str, step: Step, seq: int) -> Lost | None:
        """The audio this service lost before the chunk `seq` that made `step`, if any.

        After a restart of this service (`resumed`): a hole, or a capture restart, leaves the
        time from the last position to this chunk unaccounted for (`service_down`; for a
        capture restart only up to when this service started: the device may have been off
        too). While running, a hole is `audio_missing`. A jump is capture's own loss, which it
        reports; a continuous, late or first chunk loses nothing.
        """
        prev = step.previous
        passed: set[int] = set()
        if step.kind != "late" and device in self._skipped:
            marks = self._skipped.pop(device)
            passed = {m for m in marks if m < seq}
            if len(passed) < len(marks):
                self._skipped[device] = marks - passed  # dropped chunks still ahead
        if prev is None or step.kind in ("first", "continuous", "late", "jump"):
            return None
        end = step.start
        count: int | None = seq - prev.seq - 1 if step.kind == "hole" else None
        if count is not None and passed:
            count -= len({m for m in passed if m > prev.seq})
            if count <= 0:
                return None  # every missing chunk was dropped here, and reported as such
        if step.resumed:
            if step.kind == "restart":
                end = min(end, max(prev.end, self._restored_at))
            cause: GapCause = "service_down"
        elif step.kind == "hole" and self.holes:
            cause = "audio_missing"
        else:
            return None
        if end - prev.end <= self.tolerance:
            return None
        return Lost(device, prev.end, end, cause, count)

    def take_dirty(self) -> dict[str, Position]:
        """Positions changed since the last call (to save), and forget that they changed."""
        out = {d: self._pos[d] for d in self._dirty if d in self._pos}
        self._dirty.clear()
        return out

    def positions(self) -> dict[str, Position]:
        """Every position (to save at shutdown)."""
        return dict(self._pos)

    def _bound(self) -> None:
        while len(self._pos) > self.max_devices:
            device, _ = self._pos.popitem(last=False)
            self._restored.discard(device)
            self._skipped.pop(device, None)


@dataclass
class _Open:
    report: GapReport
    touched: float  #: monotonic time of the last addition


class GapCollector:
    """Merges losses of one device and cause that follow each other into one `GapReport`.

    A loss that starts within `merge_s` of the open report's end extends it (its count adds
    up); the report is closed when `hold_s` pass without an addition, when it spans more than
    `max_span_s`, or at `flush`. So an overload that drops every other chunk for an hour makes
    about 60 reports, not 1800.
    """

    def __init__(
        self, node: str, *, merge_s: float = 10.0, hold_s: float = 2.0, max_span_s: float = 60.0
    ) -> None:
        self.node = node
        self.merge_s = merge_s
        self.hold_s = hold_s
        self.max_span_s = max_span_s
        self._open: dict[tuple[str, str], _Open] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, lost: Lost, now: float) -> list[GapReport]:
        """Take one loss (`now`: monotonic seconds); return the reports it closed."""
        key = (lost.device, lost.cause)
        closed: list[GapReport] = []
        current = self._open.get(key)
        if current is not None:
            rep = current.report
            if rep.start - self.merge_s <= lost.start <= rep.end + self.merge_s:
                count = None if rep.count is None or lost.count is None else rep.count + lost.count
                current.report = rep.model_copy(
                    update={
                        "start": min(rep.start, lost.start),
                        "end": max(rep.end, lost.end),
                        "count": count,
                    }
                )
                current.touched = now
                if current.report.seconds >= self.max_span_s:
                    closed.append(self._open.pop(key).report)
                return closed
            closed.append(self._open.pop(key).report)
        self._open[key] = _Open(
            GapReport(
                device=lost.device,
                start=lost.start,
                end=lost.end,
                cause=lost.cause,
                node=self.node,
                count=lost.count,
            ),
            now,
        )
        return closed

    def add_all(self, losses: Iterable[Lost], now: float) -> list[GapReport]:
        """`add` each loss; the reports closed."""
        return [rep for lost in losses for rep in self.add(lost, now)]

    def due(self, now: float) -> list[GapReport]:
        """Reports not extended for `hold_s` (monotonic `now`): closed and returned."""
        keys = [k for k, o in self._open.items() if now - o.touched >= self.hold_s]
        return [self._open.pop(k).report for k in keys]

    def flush(self) -> list[GapReport]:
        """Close every open report (shutdown)."""
        out = [o.report for o in self._open.values()]
        self._open.clear()
        return out
