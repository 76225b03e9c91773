"""The pure core of inference: windows from chunks, a bounded queue, scores to results.

No I/O here: the adapter (`service.py`) feeds chunks in and publishes what comes out.

    AudioChunk --WindowAssembler--> Window --WindowQueue--> batch --classify()--> LabelsResult

- `WindowAssembler` joins consecutive chunks of one device into windows of any length and
  hop. A gap in the sequence numbers, or in time (capture keeps seq contiguous across a gap
  in its audio), resets that device's assembly (the partial window is discarded) and is
  counted: audio is QoS 0, so losses are expected and made visible. Where each device's
  stream is, and which chunks are lost audio (`take_lost`), is `shared.continuity`'s
  `Streams`, whose positions the service saves across restarts.
- `WindowQueue` holds windows waiting for the model; when full it drops the oldest. Its
  bound is seconds of audio per device heard lately (`queue_limit`, `RecentDevices`), so a
  fleet whose chunks all arrive in the same instant fits, whatever its size.
- `classify()` runs a `Classifier` on a batch and turns each score vector into a
  `LabelsResult` (top-k labels, `speech_present` from the full vector).
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import soxr

from shared.continuity import Lost, Streams
from shared.contracts import Classifier
from shared.messages import AudioChunk, LabelScore, LabelsResult, WindowMessage


@dataclass(frozen=True, slots=True)
class Window:
    """Mono float32 audio of one analysis window of one device, and its key."""

    device: str
    seq: int  #: sequence number of the chunk holding the window's first sample
    start: float  #: time of the window's first sample, Unix seconds
    rate: int  #: sample rate of `samples`, Hz
    samples: np.ndarray

    @property
    def duration(self) -> float:
        """Length of the window in seconds."""
        return len(self.samples) / self.rate


@dataclass(slots=True)
class _Mark:
    offset: int  #: index in the device buffer of the chunk's first sample (may be < 0)
    seq: int
    start: float


#: Largest difference between a chunk's start and the end of the chunk before it that is
#: still continuous audio, s. Capture's starts follow from sample counts (float rounding
#: only); its own discontinuities (lost samples, clock steps, resyncs) are >= 0.25 s.
CONTINUITY_TOLERANCE_S = 0.02
#: How far (s) before the end of a device's latest chunk an earlier-numbered chunk (not 0)
#: may start and count as a duplicate or a late arrival, dropped, rather than as capture
#: restarting (about 8 chunks of 1 s).
LATE_HORIZON_S = 8.0


@dataclass(slots=True)
class _DeviceState:
    rate: int
    buffer: np.ndarray
    marks: list[_Mark] = field(default_factory=list)
    skip: int = 0  #: samples still to discard before the next window (hop > window)


class WindowAssembler:
    """Cuts each device's stream of chunks into windows of `window_s`, every `hop_s` seconds.

    Windows never span a gap: a missing sequence number, or a chunk that does not start
    where the previous one ended (capture keeps seq contiguous across lost samples and clock
    steps), discards the partial window. A sequence number of 0 or far lower than expected
    (capture restarted) or a change of sample rate also starts afresh. A chunk just below the
    expected number that lies in the past (delivered twice, or late) is dropped and counted.
    """

    def __init__(
        self,
        window_s: float,
        hop_s: float | None = None,
        max_devices: int = 1_000,
        holes: bool = True,
    ):
        if window_s <= 0 or (hop_s is not None and hop_s <= 0):
            raise ValueError("window and hop must be positive")
        self.window_s = window_s
        self.hop_s = window_s if hop_s is None else hop_s
        self.max_devices = max_devices
        self.counters: Counter[str] = Counter()
        self.streams = Streams(
            tolerance=CONTINUITY_TOLERANCE_S,
            late_horizon=LATE_HORIZON_S,
            seq_zero_restarts=True,
            max_devices=max_devices,
            holes=holes,
        )
        self._devices: OrderedDict[str, _DeviceState] = OrderedDict()
        self._lost: list[Lost] = []

    def take_lost(self) -> list[Lost]:
        """Audio that never reached inference, found since the last call."""
        out, self._lost = self._lost, []
        return out

    def add(self, chunk: AudioChunk) -> list[Window]:
        """Take one chunk; return the windows it completes (often one, maybe none or many)."""
        state = self._state_for(chunk)
        if state is None:
            return []
        samples = chunk.mono()
        if state.skip:
            cut = min(state.skip, len(samples))
            state.skip -= cut
            state.marks.append(_Mark(len(state.buffer) - cut, chunk.seq, chunk.start))
            samples = samples[cut:]
        else:
            state.marks.append(_Mark(len(state.buffer), chunk.seq, chunk.start))
        state.buffer = np.concatenate([state.buffer, samples]) if len(state.buffer) else samples
        # Windows are views of the buffer, not copies: nothing writes to a buffer once made.
        state.buffer.flags.writeable = False
        return self._cut(chunk.device, state)

    def _state_for(self, chunk: AudioChunk) -> _DeviceState | None:
        """The device's assembly to add `chunk` to (a fresh one after a break); None when the
        chunk is a duplicate or late and must be dropped."""
        step = self.streams.step(chunk.device, chunk.seq, chunk.start, chunk.end, chunk.rate)
        if step.kind == "late":
            self.counters["late_chunks"] += 1
            return None
        lost = self.streams.gap_of(chunk.device, step, chunk.seq)
        if lost is not None:
            self._lost.append(lost)
        state = self._devices.get(chunk.device)
        if state is not None:
            self._devices.move_to_end(chunk.device)
            if step.kind == "continuous":
                return state
        if step.kind == "restart":
            self.counters["restarts"] += 1
        elif step.kind == "jump":
            self.counters["discontinuities"] += 1
        elif step.kind == "hole" and step.previous is not None:
            self.counters["gaps"] += 1
            self.counters["missing_chunks"] += chunk.seq - step.previous.seq - 1
        fresh = _DeviceState(chunk.rate, np.zeros(0, np.float32))
        self._devices[chunk.device] = fresh
        if len(self._devices) > self.max_devices:
            self._devices.popitem(last=False)
            self.counters["evicted_devices"] += 1
        return fresh

    def _cut(self, device: str, state: _DeviceState) -> list[Window]:
        win = max(1, round(self.window_s * state.rate))
        hop = max(1, round(self.hop_s * state.rate))
        out: list[Window] = []
        while len(state.buffer) >= win:
            mark = next(m for m in reversed(state.marks) if m.offset <= 0)
            out.append(
                Window(
                    device=device,
                    seq=mark.seq,
                    start=mark.start + (0 - mark.offset) / state.rate,
                    rate=state.rate,
                    samples=state.buffer[:win],
                )
            )
            step = min(hop, len(state.buffer))
            state.skip = hop - step
            state.buffer = state.buffer[step:]
            for m in state.marks:
                m.offset -= step
            # Keep the last mark at or before offset 0 and every later one.
            first = max(i for i, m in enumerate(state.marks) if m.offset <= 0)
            del state.marks[:first]
        return out

    @property
    def devices(self) -> int:
        """Devices with an assembly in progress."""
        return len(self._devices)


#: A device counts towards the queue's size for this long after its last chunk, seconds.
RECENT_SECONDS = 60.0


class RecentDevices:
    """The devices heard from within the last `horizon` seconds (monotonic clock)."""

    def __init__(self, horizon: float = RECENT_SECONDS):
        self.horizon = horizon
        self._last: dict[str, float] = {}

    def seen(self, device: str, now: float) -> None:
        """A chunk of `device` arrived at `now`."""
        self._last[device] = now

    def prune(self, now: float) -> None:
        """Forget devices silent for longer than the horizon."""
        cutoff = now - self.horizon
        self._last = {d: t for d, t in self._last.items() if t >= cutoff}

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, device: object) -> bool:
        return device in self._last


def queue_limit(queue_seconds: float, hop_s: float, devices: int) -> int:
    """Windows that `queue_seconds` of audio from each of `devices` devices make (at least one
    device's worth, and at least one window)."""
    per_device = max(1, math.floor(queue_seconds / hop_s + 1e-9))
    return per_device * max(1, devices)


class WindowQueue:
    """Windows waiting for the model, oldest first, at most `maxlen`: when full, the oldest
    waiting window is dropped (and counted), so a slow model sheds load instead of lagging
    further and further behind or growing without bound. The service `resize`s it to the
    devices heard lately."""

    def __init__(self, maxlen: int):
        if maxlen < 1:
            raise ValueError("queue size must be at least 1")
        self.maxlen = maxlen
        self.dropped = 0
        self._items: deque[tuple[float, Window]] = deque()

    def put(self, window: Window, now: float) -> Window | None:
        """Queue a window that arrived at `now` (monotonic s); return the one dropped, if any."""
        dropped = None
        if len(self._items) >= self.maxlen:
            dropped = self._items.popleft()[1]
            self.dropped += 1
        self._items.append((now, window))
        return dropped

    def resize(self, maxlen: int) -> list[Window]:
        """Set the bound; return the oldest windows dropped to fit a smaller one (counted)."""
        if maxlen < 1:
            raise ValueError("queue size must be at least 1")
        self.maxlen = maxlen
        out = []
        while len(self._items) > maxlen:
            out.append(self._items.popleft()[1])
            self.dropped += 1
        return out

    def oldest_since(self) -> float | None:
        """Arrival time of the oldest waiting window, or None when empty."""
        return self._items[0][0] if self._items else None

    def take(self, n: int) -> list[Window]:
        """Remove and return up to `n` of the oldest windows."""
        return [self._items.popleft()[1] for _ in range(min(n, len(self._items)))]

    def __len__(self) -> int:
        return len(self._items)


def batch_ready(
    queued: int,
    oldest_since: float | None,
    now: float,
    size: int,
    wait_s: float,
    capacity: int | None = None,
) -> bool:
    """Whether to classify now: a full batch is waiting, the queue (of `capacity` windows) is
    full, or the oldest has waited `wait_s`. A batch cap above the queue's bound must not keep
    the worker waiting while a burst overflows the queue."""
    if queued == 0 or oldest_since is None:
        return False
    full = size if capacity is None else min(size, capacity)
    return queued >= full or now - oldest_since >= wait_s


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 samples at `target` Hz (soxr, high quality)."""
    if rate == target:
        return np.ascontiguousarray(samples, dtype=np.float32)
    return np.asarray(soxr.resample(samples, rate, target), dtype=np.float32)


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[LabelScore]:
    """The `k` highest scores with their labels, highest first (ties: lower index first)."""
    row = np.asarray(scores)
    if row.ndim != 1:
        raise ValueError(f"score vector of shape {row.shape} for {len(labels)} labels")
    return top_k_rows(row[None], labels, k)[0]


def top_k_rows(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[LabelScore]]:
    """`top_k` of each row of an (n, labels) batch of scores, in one pass over the batch.

    `argpartition` finds each row's k highest without sorting all of them; a row where a
    tie straddles the k-th place (int8 scores tie often) is sorted in full instead, so the
    tied classes kept are the lowest-numbered, as a stable sort keeps them.
    """
    rows = np.asarray(scores, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(labels):
        raise ValueError(f"scores of shape {rows.shape} for {len(labels)} labels")
    if not np.all(np.isfinite(rows)):
        raise ValueError("non-finite score from the model")
    n, width = rows.shape
    k = max(1, min(k, width))
    if k < width:
        kept = np.argpartition(-rows, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(rows, kept, 1).min(axis=1, keepdims=True)
        tied = np.flatnonzero(np.count_nonzero(rows >= kth, axis=1) > k)
    else:
        kept, tied = np.broadcast_to(np.arange(width), (n, width)), np.zeros(0, np.intp)
    kept = np.sort(kept, axis=1)  # so that the stable sort below puts ties by index
    order = np.take_along_axis(
        kept, np.argsort(-np.take_along_axis(rows, kept, 1), axis=1, kind="stable"), 1
    )
    for i in tied:
        order[i] = np.argsort(-rows[i], kind="stable")[:k]
    values = np.clip(np.take_along_axis(rows, order, 1), 0.0, 1.0).tolist()
    return [
        [LabelScore(label=labels[j], score=v) for j, v in zip(row, vals, strict=True)]
        for row, vals in zip(order.tolist(), values, strict=True)
    ]


def speech_indices(labels: Sequence[str], names: Sequence[str]) -> list[int]:
    """Indices of the speech-family classes `names` in the model's `labels`."""
    wanted = {n.casefold() for n in names}
    return [i for i, label in enumerate(labels) if label.casefold() in wanted]


def speech_present(scores: np.ndarray, indices: Sequence[int], threshold: float) -> bool | None:
    """True when any speech-family score reaches `threshold`; None when the model has none.

    Uses the full score vector, not the top-k: quiet speech often scores below the top
    classes of a loud scene, and a privacy filter must still see it.
    """
    return speech_present_rows(np.asarray(scores)[None], indices, threshold)[0]


def speech_present_rows(
    scores: np.ndarray, indices: Sequence[int], threshold: float
) -> list[bool | None]:
    """`speech_present` of each row of an (n, labels) batch of scores."""
    rows = np.asarray(scores)
    if not indices:
        return [None] * len(rows)
    present: list[bool] = (rows[:, list(indices)].max(axis=1) >= threshold).tolist()
    return list(present)


@runtime_checkable
class ResultsBackend(Protocol):
    """A backend that makes its own result messages from windows (BirdNET's species), instead
    of the `LabelsResult`s `classify` makes from a `Classifier`'s scores."""

    model_id: str

    def results(self, windows: Sequence[Window]) -> Sequence[WindowMessage]:
        """The results of a batch of windows (maybe fewer than the windows, maybe none)."""
        ...


@dataclass(frozen=True, slots=True)
class LabelOptions:
    """How score vectors become results."""

    model_id: str
    top_k: int = 5
    speech_indices: tuple[int, ...] = ()
    speech_threshold: float = 0.25


def classify(
    classifier: Classifier, windows: Sequence[Window], options: LabelOptions
) -> list[LabelsResult]:
    """Score a batch of windows and build one `LabelsResult` per window.

    `inference_ms` is the batch's wall time (resampling, features and model) shared equally
    among its windows: the cost of one window, not its latency.
    """
    if not windows:
        return []
    began = time.perf_counter()
    audio = [resample(w.samples, w.rate, classifier.sample_rate) for w in windows]
    scores = np.asarray(classifier.scores(audio))
    per_window_ms = (time.perf_counter() - began) * 1000.0 / len(windows)
    if scores.shape != (len(windows), len(classifier.labels)):
        raise ValueError(
            f"classifier returned scores of shape {scores.shape}, expected "
            f"{(len(windows), len(classifier.labels))}"
        )
    labels = top_k_rows(scores, classifier.labels, options.top_k)
    speech = speech_present_rows(scores, options.speech_indices, options.speech_threshold)
    return [
        LabelsResult(
            device=w.device,
            seq=w.seq,
            start=w.start,
            duration=w.duration,
            model=options.model_id,
            labels=top,
            speech_present=present,
            inference_ms=per_window_ms,
        )
        for w, top, present in zip(windows, labels, speech, strict=True)
    ]
