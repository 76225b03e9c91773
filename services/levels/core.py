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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.levels.bands import band_mean_squares
from services.levels.indices import IndicesJob, IndicesWindows
from services.levels.measure import (
    is_clipped,
    ms_to_dbfs,
    ms_to_spl,
    prototype_leq,
)
from services.levels.summary import SummaryTracker
from services.levels.weighting import FastWeighting, WeightingFilter
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
        jobs). Audio missing before the chunk is in `lost`."""
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
        if step.kind == "late":
            rate = chunk.rate
            levels, _, _, fast = self._measure(
                chunk,
                state,
                WeightingFilter("A", rate),
                WeightingFilter("C", rate),
                FastWeighting(rate),
            )
            return ChunkOutput(
                levels=levels,
                lafmax_db=ms_to_spl(float(fast.max()), state.calibration),
                threshold_db=state.threshold_db,
                continuous=False,
                late=True,
                summaries=[],
                jobs=[],
            )
        lost = self.streams.gap_of(chunk.device, step, chunk.seq)
        continuous = step.continuous and not state.fresh
        state.fresh = False
        if not continuous:
            state.rate = chunk.rate
            state.a = WeightingFilter("A", chunk.rate)
            state.c = WeightingFilter("C", chunk.rate)
            state.fast = FastWeighting(chunk.rate)
            state.summary.restart_grid()

        cal = state.calibration
        levels, x, a2, fast = self._measure(chunk, state, state.a, state.c, state.fast)
        summaries = state.summary.add(
            chunk.start, chunk.rate, chunk.seq, a2, fast, cal, state.uncalibrated
        )
        jobs = state.indices.add(chunk.start, chunk.rate, chunk.seq, x)
        return ChunkOutput(
            levels=levels,
            lafmax_db=ms_to_spl(float(fast.max()), cal),
            threshold_db=state.threshold_db,
            continuous=continuous,
            late=False,
            summaries=summaries,
            jobs=jobs,
            lost=lost,
        )

    @staticmethod
    def _measure(
        chunk: AudioChunk,
        state: _Device,
        a_filter: WeightingFilter,
        c_filter: WeightingFilter,
        fast_filter: FastWeighting,
    ) -> tuple[LevelsResult, np.ndarray, np.ndarray, np.ndarray]:
        """The chunk's levels, mono samples, A-weighted squares and Fast mean square, through
        these filters."""
        cal = state.calibration
        x = chunk.mono()
        x64 = x.astype(np.float64)
        a = a_filter.process(x64)
        a2 = a * a
        c = c_filter.process(x64)
        fast = fast_filter.process(a2)
        mean_square = float(np.mean(x64 * x64))
        levels = LevelsResult(
            device=chunk.device,
            seq=chunk.seq,
            start=chunk.start,
            duration=chunk.seconds,
            leq_db=prototype_leq(x, cal),
            laeq_db=ms_to_spl(float(np.mean(a2)), cal),
            lceq_db=ms_to_spl(float(np.mean(c * c)), cal),
            peak_db=ms_to_spl(float(np.max(np.abs(x64))) ** 2, cal),
            dbfs=ms_to_dbfs(mean_square),
            bands={k: ms_to_spl(v, cal) for k, v in band_mean_squares(x64, chunk.rate).items()},
            clipped=is_clipped(chunk),
            calibration=cal,
            uncalibrated=state.uncalibrated,
        )
        return levels, x, a2, fast

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
