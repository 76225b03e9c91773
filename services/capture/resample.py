"""Streaming rate conversion of S16_LE PCM with soxr (pure).

One `soxr.ResampleStream` carries its filter state from block to block, so chunk boundaries
are invisible in the output (resampling each chunk on its own would click at every boundary
and lose the filter's delay). At a discontinuity the stream is flushed (`last=True`), which
returns the tail held back by the filter, and cleared for the next segment.
"""

from __future__ import annotations

import numpy as np
import soxr

#: soxr quality names, lowest to highest.
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


class Resampler:
    """S16_LE interleaved PCM at `in_rate` -> S16_LE at `out_rate`, block by block."""

    def __init__(self, in_rate: int, out_rate: int, channels: int, quality: str = "HQ") -> None:
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self._stream = soxr.ResampleStream(in_rate, out_rate, channels, "int16", quality)
        self._clips_seen = 0

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        """Resample whole frames of PCM; `last` flushes the filter and resets the stream."""
        data = np.frombuffer(pcm, dtype="<i2")
        if self.channels > 1:
            data = data.reshape(-1, self.channels)
        out = self._stream.resample_chunk(data, last=last)
        if last:
            self._clips_seen += int(self._stream.num_clips())
            self._stream.clear()
        return np.ascontiguousarray(out, dtype="<i2").tobytes()

    def flush(self) -> bytes:
        """The filter's tail: what is still owed for the input given so far. Resets the stream."""
        empty = np.zeros((0, self.channels) if self.channels > 1 else 0, dtype="<i2")
        return self.process(empty.tobytes(), last=True)

    @property
    def clips(self) -> int:
        """Output samples clipped to the int16 range so far."""
        return self._clips_seen + int(self._stream.num_clips())
