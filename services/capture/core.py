"""The capture pipeline: source events in, audio chunks out (pure: no asyncio, no MQTT).

    live block ──> sample clock ──> [soxr stream, if the rates differ] ──> chunker ──> AudioChunk
    file start / file block ────────^

A source (arecord, a file replay, the synthetic demo) turns what it reads into the events
below; `CapturePipeline.handle()` turns each event into the chunks to publish and keeps the
counters that go into the retained status. Gaps (lost samples, source restarts) are counted,
logged once each, described in `last_gap`, and kept as `GapReport`s for the caller to publish
(`take_gaps`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from shared.messages import AudioChunk, GapCause, GapReport
from shared.messages.audio import MAX_CHUNK_SECONDS
from shared.messages.window import MAX_EPOCH, MIN_EPOCH

from .chunker import Chunker, Cut
from .clock import SampleClock
from .resample import Resampler

log = logging.getLogger(__name__)

#: Bytes per sample: capture always asks for S16_LE.
WIDTH: Final = 2


@dataclass(frozen=True, slots=True)
class LiveBlock:
    """PCM read from a live source, stamped when it was read."""

    pcm: bytes
    mono: float
    """`time.monotonic()` when the read returned."""
    wall: float
    """`time.time()` when the read returned."""
    caught_up: bool = True
    """True when the read drained everything the source had written (the data is fresh)."""


@dataclass(frozen=True, slots=True)
class SourceStopped:
    """The live source ended (process exited, device gone); a restart may follow."""

    reason: str
    stalled: bool = False
    """It was stopped because it sent nothing for too long (a stall), not by itself."""


@dataclass(frozen=True, slots=True)
class FileStart:
    """A recording begins; its blocks follow as FileBlock events."""

    name: str
    start: float
    """Wall time of the file's first frame, Unix seconds."""
    rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class FileBlock:
    """PCM (S16_LE, interleaved) read from the current file."""

    pcm: bytes


Event = LiveBlock | SourceStopped | FileStart | FileBlock


def chunk_frames(chunk_seconds: float, rate: int) -> int:
    """Frames per chunk; the chunk length must be a whole number of samples at `rate`."""
    frames = round(chunk_seconds * rate)
    if frames < 1 or abs(frames - chunk_seconds * rate) > 1e-6 * rate:
        raise ValueError(
            f"chunk length {chunk_seconds} s is not a whole number of samples at {rate} Hz"
        )
    if chunk_seconds > MAX_CHUNK_SECONDS:
        raise ValueError(f"chunk length {chunk_seconds} s exceeds {MAX_CHUNK_SECONDS} s")
    return frames


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


class CapturePipeline:
    """Turns source events into AudioChunks with exact lengths and sample-clock times."""

    def __init__(
        self,
        device: str,
        rate: int,
        capture_rate: int | None = None,
        channels: int = 1,
        chunk_seconds: float = 1.0,
        gap_tolerance: float = 0.25,
        drift_limit: float = 0.5,
        quality: str = "HQ",
    ) -> None:
        self.device = device
        self.rate = rate
        self.chunk_seconds = chunk_seconds
        self.quality = quality
        self.counters: Counter[str] = Counter()
        self.last_gap: str | None = None
        self._gaps: list[GapReport] = []
        self._stalled = False  # the source's last stop was a stall
        self._frames = chunk_frames(chunk_seconds, rate)
        self._gap_tolerance = gap_tolerance
        self._drift_limit = drift_limit
        self._carry = bytearray()
        self._configure(capture_rate or rate, channels, first_seq=0)

    # --- configuration ----------------------------------------------------------------------
    def _configure(self, in_rate: int, channels: int, first_seq: int) -> None:
        self.in_rate = in_rate
        self.channels = channels
        self._in_frame = WIDTH * channels
        self.clock = SampleClock(in_rate, self._gap_tolerance, self._drift_limit)
        self.resampler = (
            None if in_rate == self.rate else Resampler(in_rate, self.rate, channels, self.quality)
        )
        self.chunker = Chunker(self._frames, self.rate, WIDTH * channels, first_seq)

    # --- events -----------------------------------------------------------------------------
    def handle(self, event: Event) -> list[AudioChunk]:
        """The chunks completed by one source event."""
        if isinstance(event, LiveBlock):
            cuts = self._live(event)
        elif isinstance(event, FileBlock):
            cuts = self._feed(self._whole_frames(event.pcm))
        elif isinstance(event, FileStart):
            cuts = self._file_start(event)
        else:
            cuts = self._stopped(event)
        return self._chunks(cuts)

    def take_gaps(self) -> list[GapReport]:
        """Gap reports made since the last call, oldest first (to publish)."""
        out, self._gaps = self._gaps, []
        return out

    def finish(self) -> list[AudioChunk]:
        """Flush everything still held (end of replay, shutdown)."""
        return self._chunks(self._drain())

    # --- internals --------------------------------------------------------------------------
    def _whole_frames(self, pcm: bytes) -> bytes:
        """Prepend the previous half frame; keep this block's trailing half frame for later."""
        if not self._carry and len(pcm) % self._in_frame == 0:
            return pcm
        self._carry += pcm
        whole = len(self._carry) - len(self._carry) % self._in_frame
        data = bytes(self._carry[:whole])
        del self._carry[:whole]
        return data

    def _feed(self, pcm: bytes) -> list[Cut]:
        if self.resampler is not None:
            pcm = self.resampler.process(pcm)
        return self.chunker.feed(pcm)

    def _drain(self) -> list[Cut]:
        """Everything owed so far: the resampler's tail and the unfinished chunk."""
        if not self.chunker.started:
            return []  # nothing was fed yet (a source that stopped before its first audio)
        cuts = []
        if self.resampler is not None:
            cuts += self.chunker.feed(self.resampler.flush())
        return cuts + self.chunker.flush()

    def _live(self, block: LiveBlock) -> list[Cut]:
        pcm = self._whole_frames(block.pcm)
        check = self.clock.advance(
            len(pcm) // self._in_frame, block.mono, block.wall, block.caught_up
        )
        cuts: list[Cut] = []
        if check.discontinuous and not check.restarted:
            # The audio before the discontinuity ends here, including what the resampler
            # still holds back (its filter delay): stamped after it, it would be late.
            cuts += self._drain()
        if check.lost_frames or check.restarted:
            cause: GapCause = "capture_lost_samples"
            if check.restarted:
                cause = "capture_stall" if self._stalled else "capture_restart"
            self._gap(check.lost_frames, check.block_start, check.reason, cause)
        elif check.shift:
            self.counters["resyncs"] += 1
            log.warning("%s: %s", self.device, check.reason)
        if check.discontinuous or not self.chunker.started:
            cuts += self.chunker.restart(check.block_start)
        return cuts + self._feed(pcm)

    def _gap(self, lost_frames: int, at: float, reason: str, cause: GapCause) -> None:
        lost = round(lost_frames * self.rate / self.in_rate)
        self.counters["gaps"] += 1
        self.counters["samples_lost"] += lost
        self.last_gap = f"gap before {_utc(at)}: {reason}"
        log.warning("%s: gap of %d samples before %s (%s)", self.device, lost, _utc(at), reason)
        start = at - lost_frames / self.in_rate
        if lost_frames > 0 and start >= MIN_EPOCH and at <= MAX_EPOCH:
            self._gaps.append(
                GapReport(
                    device=self.device,
                    start=start,
                    end=at,
                    cause=cause,
                    node=self.device,
                    count=lost,
                )
            )

    def _stopped(self, event: SourceStopped) -> list[Cut]:
        cuts = self._drain()
        self._carry.clear()
        self.clock.stop()
        self._stalled = event.stalled
        self.counters["restarts"] += 1
        log.info("%s: source stopped (%s)", self.device, event.reason)
        return cuts

    def _file_start(self, event: FileStart) -> list[Cut]:
        cuts = self._drain() if self.chunker.started else []
        self._carry.clear()
        if (event.rate, event.channels) != (self.in_rate, self.channels):
            self._configure(event.rate, event.channels, self.chunker.next_seq)
        self.counters["files"] += 1
        return cuts + self.chunker.restart(event.start)

    def _chunks(self, cuts: list[Cut]) -> list[AudioChunk]:
        out = []
        for c in cuts:
            if not MIN_EPOCH <= c.start <= MAX_EPOCH:
                # A Pi without a real-time clock, before NTP: no true time to publish.
                if not self.counters["bad_clock"] % 60:
                    log.error(
                        "%s: system clock says %.0f (before 2000 or after 2100); chunk %d "
                        "dropped. Set the clock (NTP).",
                        self.device,
                        c.start,
                        c.seq,
                    )
                self.counters["bad_clock"] += 1
                continue
            out.append(
                AudioChunk(
                    device=self.device,
                    seq=c.seq,
                    start=c.start,
                    rate=self.rate,
                    width=WIDTH,
                    channels=self.channels,
                    pcm=c.pcm,
                )
            )
            self.counters["samples"] += len(c.pcm) // (WIDTH * self.channels)
        self.counters["chunks"] += len(out)
        return out
