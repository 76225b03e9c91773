"""Exact chunks from a stream of PCM blocks of any size (pure).

Chunk `n + 1` starts exactly where chunk `n` ended, by sample count: the chunker keeps the
bytes that do not yet fill a chunk (and half frames) until the next block. Chunk start times
come from the segment's start time plus the frames chunked since, so they never accumulate
rounding error. A new segment (after a gap, a source restart, a new file) begins with
`restart()`, which first emits the unfinished chunk as a shorter one: no sample is dropped,
and no chunk spans a discontinuity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cut:
    """One chunk of PCM ready to publish."""

    seq: int
    """Chunk number since capture started, contiguous."""
    start: float
    """Wall time of the chunk's first frame, Unix seconds."""
    pcm: bytes
    """Interleaved PCM, a whole number of frames."""


class Chunker:
    """Cuts a PCM byte stream into chunks of exactly `chunk_frames` frames."""

    def __init__(self, chunk_frames: int, rate: int, frame_bytes: int, first_seq: int = 0) -> None:
        if chunk_frames <= 0 or rate <= 0 or frame_bytes <= 0:
            raise ValueError("chunk_frames, rate and frame_bytes must be positive")
        self.chunk_frames = chunk_frames
        self.rate = rate
        self.frame_bytes = frame_bytes
        self.chunk_bytes = chunk_frames * frame_bytes
        self.next_seq = first_seq
        self._buf = bytearray()
        self._segment_start: float | None = None
        self._segment_frames = 0  # frames already cut in this segment

    @property
    def started(self) -> bool:
        """True once a segment start time is known."""
        return self._segment_start is not None

    @property
    def pending_frames(self) -> int:
        """Whole frames waiting for the next chunk."""
        return len(self._buf) // self.frame_bytes

    def next_time(self) -> float:
        """Wall time of the next frame fed (the end of what was fed so far)."""
        if self._segment_start is None:
            raise RuntimeError("no segment started")
        return self._segment_start + (self._segment_frames + self.pending_frames) / self.rate

    def restart(self, start: float) -> list[Cut]:
        """Emit the unfinished chunk (if any) and begin a new segment at time `start`."""
        out = self.flush()
        self._segment_start = start
        self._segment_frames = 0
        return out

    def feed(self, pcm: bytes | bytearray | memoryview) -> list[Cut]:
        """Add PCM bytes; return the chunks completed by them."""
        if self._segment_start is None:
            raise RuntimeError("restart(start) must be called before feeding")
        self._buf += pcm
        out = []
        n = self.chunk_bytes
        if len(self._buf) >= n:
            whole = len(self._buf) // n
            view = memoryview(self._buf)
            for i in range(whole):
                out.append(self._cut(bytes(view[i * n : (i + 1) * n])))
            view.release()
            del self._buf[: whole * n]
        return out

    def flush(self) -> list[Cut]:
        """Emit the whole frames still waiting as a (shorter) chunk; drop a trailing half frame."""
        frames = self.pending_frames
        out = []
        if frames and self._segment_start is not None:
            out.append(self._cut(bytes(self._buf[: frames * self.frame_bytes])))
        self._buf.clear()
        return out

    def _cut(self, pcm: bytes) -> Cut:
        assert self._segment_start is not None
        cut = Cut(self.next_seq, self._segment_start + self._segment_frames / self.rate, pcm)
        self.next_seq += 1
        self._segment_frames += len(pcm) // self.frame_bytes
        return cut
