"""The levels service's measurements, free of I/O: chunks in, messages and indices jobs out.

Each device has its own state (weighting filters, Fast time weighting, the open summary
interval and indices window), so a stream cut into chunks is measured as one signal. A gap in
the stream (a missing sequence number, a jump in time, a change of sample rate) restarts the
filters; intervals and windows keep what they had, and their `coverage` shows the gap.

A chunk can arrive twice (a bridged broker, a replay run twice, a retransmit) or out of order.
Each device remembers the keys (seq, start) of its last `RECENT_KEYS` measured chunks, so the
caller can drop a repeat (`repeated`) before measuring it. A late chunk (an earlier sequence
number starting before the end of the device's latest chunk, by up to `LATE_HORIZON`) is
measured on its own, with fresh filters, and kept out of the device's state: the stream's
filters, the summary interval, the indices window and the noise events go on as if it had
not come.

Where each device's stream is, and which chunks are lost audio, is `shared.continuity`'s
`Streams` (`streams`): its positions outlive a device's idle state and, saved by the service,
a restart, so a missing sequence number gives a `Lost` (`audio_missing`, or `service_down`
for the first chunk after a restart) in the chunk's output.

`process_all` measures a batch of chunks (many devices' chunks waiting together) at once: the
chunks' bookkeeping runs in order, then the chunks of one sample rate and length are stacked
into 2-D arrays, at most one chunk per device per layer (a device's second chunk of the
batch goes in the next layer, after its first has moved the filters on), and each layer is
filtered, transformed and reduced in one go; summaries and indices windows are then fed in
order. `process` is the batch of one. The results equal those of chunks measured one at a
time to rounding (tested within 1e-9 dB on multi-device audio with gaps, and within 1e-6 dB
of the per-chunk arithmetic from before batching, tests/levels/test_batch.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.levels.bands import band_rows
from services.levels.indices import IndicesJob, IndicesWindows
from services.levels.measure import (
    is_clipped,
    ms_to_dbfs,
    ms_to_spl,
    spl_rows,
)
from services.levels.summary import SummaryTracker
from services.levels.weighting import FastWeighting, WeightingFilter, fast_weigh, spectrum, weigh
from shared.continuity import Lost, Streams
from shared.devices import DeviceRegistry
from shared.errors import MessageError
from shared.messages import AudioChunk, Calibration, LevelsResult, LevelsSummary

#: Largest difference between a chunk's start and the previous chunk's end still seen as
#: continuous, seconds (sample-clock jitter, float rounding).
CONTINUITY_TOLERANCE = 0.05
#: Chunk keys remembered per device to recognise a repeated chunk (a minute of 1 s chunks).
RECENT_KEYS = 64
#: A chunk that starts up to this many seconds before its device's latest chunk ended is late
#: (out of order, or a repeat beyond `RECENT_KEYS`); one further back starts a new stream, as
#: after a capture restart with a clock stepped back, so the device cannot be stuck "late".
LATE_HORIZON = 300.0


@dataclass(frozen=True)
class ChunkOutput:
    """What one chunk produced."""

    levels: LevelsResult
    lafmax_db: float  # highest Fast A-weighted level in the chunk
    threshold_db: float  # the device's noise-event threshold
    continuous: bool  # no gap between this chunk and the previous one of the device
    late: bool  # started before the device's latest chunk ended: measured, kept out of state
    summaries: list[LevelsSummary]
    jobs: list[IndicesJob]
    lost: Lost | None = None  # audio of the device that never reached levels before this chunk


@dataclass(frozen=True)
class Flushed:
    """What closing a device's open interval and window produced."""

    device: str
    summaries: list[LevelsSummary]
    jobs: list[IndicesJob]


@dataclass
class _Device:
    rate: int
    calibration: Calibration
    uncalibrated: bool
    threshold_db: float
    summary: SummaryTracker
    indices: IndicesWindows
    a: WeightingFilter
    c: WeightingFilter
    fast: FastWeighting
    fresh: bool = True  # no chunk measured into this state yet
    last_seen: float = 0.0
    recent: dict[tuple[int, float], None] = field(default_factory=dict)  # keys, oldest first

    def remember(self, key: tuple[int, float]) -> None:
        """Add one chunk key, forgetting the oldest beyond `RECENT_KEYS`."""
        self.recent[key] = None
        while len(self.recent) > RECENT_KEYS:
            del self.recent[next(iter(self.recent))]


@dataclass
class _Plan:
    """One chunk to measure through these filters, and (once measured) what it gave."""

    chunk: AudioChunk
    state: _Device
    a: WeightingFilter
    c: WeightingFilter
    fast: FastWeighting
    late: bool
    continuous: bool
    lost: Lost | None
    mono: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    levels: LevelsResult | None = None
    a2: np.ndarray | None = None  # A-weighted squares
    fast_ms: np.ndarray | None = None  # their Fast time-weighted mean square


#: What measuring one chunk of a batch gave: its output, why it was rejected, or None for a
#: repeat.
Measured = ChunkOutput | MessageError | None


def _measure(plans: Sequence[_Plan]) -> None:
    """Measure planned chunks in layers: a layer holds the chunks of one rate and length, at
    most one per filter set, and a filter set's chunks go in successive layers in order."""
    layer_of: dict[int, int] = {}  # id of a filter set's A filter -> layers it is in so far
    layers: dict[tuple[int, int, int], list[_Plan]] = {}
    for plan in plans:
        plan.mono = plan.chunk.mono()
        layer = layer_of.get(id(plan.a), 0)
        layer_of[id(plan.a)] = layer + 1
        layers.setdefault((layer, plan.chunk.rate, len(plan.mono)), []).append(plan)
    for key in sorted(layers, key=lambda k: k[0]):
        _measure_layer(layers[key])


def _measure_layer(plans: Sequence[_Plan]) -> None:
    """Measure chunks of one rate and length, each through its own filters, in one go."""
    rate = plans[0].chunk.rate
    x = np.stack([p.mono for p in plans]).astype(np.float64)
    n = x.shape[1]
    x_spectrum = spectrum(x)
    a = weigh("A", rate, x, x_spectrum, [p.a for p in plans])
    c = weigh("C", rate, x, x_spectrum, [p.c for p in plans])
    a2 = a * a
    fast = fast_weigh(a2, [p.fast for p in plans])
    ms_x = np.einsum("ij,ij->i", x, x) / n
    ms_a = np.einsum("ij->i", a2) / n
    ms_c = np.einsum("ij,ij->i", c, c) / n
    peak = np.max(np.abs(x), axis=1)
    labels, bands = band_rows(x_spectrum, n, rate)
    for i, plan in enumerate(plans):
        chunk, cal = plan.chunk, plan.state.calibration
        plan.levels = LevelsResult(
            device=chunk.device,
            seq=chunk.seq,
            start=chunk.start,
            duration=chunk.seconds,
            leq_db=ms_to_spl(float(ms_x[i]), cal),  # = measure.prototype_leq: maad's maths
            laeq_db=ms_to_spl(float(ms_a[i]), cal),
            lceq_db=ms_to_spl(float(ms_c[i]), cal),
            peak_db=ms_to_spl(float(peak[i]) ** 2, cal),
            dbfs=ms_to_dbfs(float(ms_x[i])),
            bands=dict(zip(labels, spl_rows(bands[i], cal).tolist(), strict=True)),
            clipped=is_clipped(chunk),
            calibration=cal,
            uncalibrated=plan.state.uncalibrated,
        )
        plan.a2, plan.fast_ms = a2[i], fast[i]


@dataclass
class LevelsCore:
    """Measures every device's chunks."""

    registry: DeviceRegistry
    summary_seconds: float = 60.0
    indices_seconds: float = 60.0
    indices_min_coverage: float = 0.5
    default_calibration: Calibration = field(default_factory=Calibration)
    default_uncalibrated: bool = True
    default_threshold_db: float = 65.0
    max_devices: int = 1000
    streams: Streams = field(init=False)
    _devices: dict[str, _Device] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.streams = Streams(
            tolerance=CONTINUITY_TOLERANCE,
            late_horizon=LATE_HORIZON,
            seq_zero_restarts=False,
            max_devices=self.max_devices,
        )

    @property
    def devices(self) -> int:
        """Devices with state right now."""
        return len(self._devices)

    def _new_device(self, device: str, rate: int) -> _Device:
        known = self.registry.get(device)
        cal, uncalibrated = self.registry.calibration(device)
        if known is None or known.calibration is None:
            cal, uncalibrated = self.default_calibration, self.default_uncalibrated
        return _Device(
            rate=rate,
            calibration=cal,
            uncalibrated=uncalibrated,
            threshold_db=known.noise_threshold_db if known else self.default_threshold_db,
            summary=SummaryTracker(device, self.summary_seconds),
            indices=IndicesWindows(device, self.indices_seconds, self.indices_min_coverage),
            a=WeightingFilter("A", rate),
            c=WeightingFilter("C", rate),
            fast=FastWeighting(rate),
        )

    def repeated(self, chunk: AudioChunk) -> bool:
        """Whether this chunk (device, seq, start) is one of its device's recently measured
        chunks: a second delivery, to drop before `process`."""
        state = self._devices.get(chunk.device)
        return state is not None and (chunk.seq, chunk.start) in state.recent

    def process(self, chunk: AudioChunk, now: float = 0.0) -> ChunkOutput:
        """Measure one chunk; `now` (monotonic seconds) only serves to notice idle devices.

        A late chunk (an earlier sequence number that starts before the device's latest chunk
        ended, by up to `LATE_HORIZON`; a repeat included) is measured on its own and leaves
        the device's stream, interval and window untouched (`late` is set, no summaries or
        jobs). Audio missing before the chunk is in `lost`. Raises MessageError for a device
        beyond `max_devices`."""
        (out,) = self.process_all([(chunk, now)], drop_repeats=False)
        if isinstance(out, MessageError):
            raise out
        assert out is not None  # repeats are only dropped when asked
        return out

    def process_all(
        self, items: Sequence[tuple[AudioChunk, float]], drop_repeats: bool = True
    ) -> list[Measured]:
        """Measure chunks (with the monotonic time each was received) as if one at a time, in
        order, but the arithmetic batched: for each, its output, the MessageError that
        rejected it, or None for a repeat (`repeated` at its turn) when `drop_repeats`."""
        plans: list[_Plan | MessageError | None] = []
        for chunk, now in items:
            if drop_repeats and self.repeated(chunk):
                plans.append(None)
                continue
            try:
                plans.append(self._plan(chunk, now))
            except MessageError as exc:
                plans.append(exc)
        _measure([p for p in plans if isinstance(p, _Plan)])
        return [p if p is None or isinstance(p, MessageError) else self._finish(p) for p in plans]

    def _plan(self, chunk: AudioChunk, now: float) -> _Plan:
        """A chunk's bookkeeping, in order: its device, stream step and filters."""
        state = self._devices.get(chunk.device)
        if state is None:
            if len(self._devices) >= self.max_devices:
                raise MessageError(
                    f"device {chunk.device!r} would exceed max_devices={self.max_devices}"
                )
            state = self._devices[chunk.device] = self._new_device(chunk.device, chunk.rate)
        state.remember((chunk.seq, chunk.start))
        state.last_seen = now
        step = self.streams.step(chunk.device, chunk.seq, chunk.start, chunk.end, chunk.rate)
        rate = chunk.rate
        if step.kind == "late":  # measured with fresh filters of its own
            a, c, fast = WeightingFilter("A", rate), WeightingFilter("C", rate), FastWeighting(rate)
            return _Plan(chunk, state, a, c, fast, late=True, continuous=False, lost=None)
        lost = self.streams.gap_of(chunk.device, step, chunk.seq)
        continuous = step.continuous and not state.fresh
        state.fresh = False
        if not continuous:
            state.rate = rate
            state.a, state.c, state.fast = (
                WeightingFilter("A", rate),
                WeightingFilter("C", rate),
                FastWeighting(rate),
            )
        return _Plan(chunk, state, state.a, state.c, state.fast, False, continuous, lost)

    @staticmethod
    def _finish(plan: _Plan) -> ChunkOutput:
        """A measured chunk's output; feeds its device's interval and window (in order)."""
        state, chunk = plan.state, plan.chunk
        assert plan.levels is not None and plan.a2 is not None and plan.fast_ms is not None
        lafmax_db = ms_to_spl(float(plan.fast_ms.max()), state.calibration)
        if plan.late:
            return ChunkOutput(
                levels=plan.levels,
                lafmax_db=lafmax_db,
                threshold_db=state.threshold_db,
                continuous=False,
                late=True,
                summaries=[],
                jobs=[],
            )
        if not plan.continuous:
            state.summary.restart_grid()
        summaries = state.summary.add(
            chunk.start,
            chunk.rate,
            chunk.seq,
            plan.a2,
            plan.fast_ms,
            state.calibration,
            state.uncalibrated,
        )
        return ChunkOutput(
            levels=plan.levels,
            lafmax_db=lafmax_db,
            threshold_db=state.threshold_db,
            continuous=plan.continuous,
            late=False,
            summaries=summaries,
            jobs=state.indices.add(chunk.start, chunk.rate, chunk.seq, plan.mono),
            lost=plan.lost,
        )

    def flush_idle(self, now: float, idle_seconds: float) -> list[Flushed]:
        """Close and forget the devices not heard from for `idle_seconds` (monotonic `now`)."""
        idle = [d for d, s in self._devices.items() if now - s.last_seen >= idle_seconds]
        return [self._flush(d) for d in idle]

    def flush_all(self) -> list[Flushed]:
        """Close and forget every device (shutdown)."""
        return [self._flush(d) for d in list(self._devices)]

    def _flush(self, device: str) -> Flushed:
        state = self._devices.pop(device)
        return Flushed(
            device=device,
            summaries=state.summary.flush(state.calibration, state.uncalibrated),
            jobs=state.indices.flush(),
        )
