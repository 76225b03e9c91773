"""`{prefix}/{device}/audio`: one chunk of raw PCM (QoS 0, never retained)."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import Field, model_validator

from shared.messages.base import Message
from shared.messages.window import MAX_EPOCH, MAX_SEQ, MIN_EPOCH

#: Longest chunk accepted: one minute.
MAX_CHUNK_SECONDS = 60
#: Most interleaved channels a chunk may carry.
MAX_CHANNELS = 8
#: Sample rates a chunk may have, Hz.
MIN_RATE = 8000
MAX_RATE = 384_000
#: Largest PCM a chunk may carry: 16 MiB (e.g. 60 s of 16 kHz S16_LE mono is 1.9 MB; 60 s of
#: 48 kHz S32_LE stereo is 23 MB, too much for one chunk: capture's settings refuse it).
MAX_PCM_BYTES = 16 * 1024 * 1024
#: Room for the chunk's other fields and the msgpack framing around the PCM.
_FIELDS_BYTES = 4096


class AudioChunk(Message):
    """A self-describing chunk of interleaved little-endian signed PCM."""

    LEAF = "audio"
    QOS = 0
    RETAIN = False
    MAX_PAYLOAD_BYTES = MAX_PCM_BYTES + _FIELDS_BYTES
    MAX_BIN_BYTES = MAX_PCM_BYTES
    MAX_ITEMS = 16
    MAX_CONTAINERS = 1
    MAX_DEPTH = 1
    JSON_OK = False

    seq: int = Field(ge=0, le=MAX_SEQ, description="Chunk number since capture started, contiguous")
    start: float = Field(
        ge=MIN_EPOCH,
        le=MAX_EPOCH,
        description="Time of the first sample, Unix seconds (UTC), from the sample clock",
    )
    rate: int = Field(ge=MIN_RATE, le=MAX_RATE, description="Sample rate in Hz")
    width: Literal[2, 4] = Field(2, description="Bytes per sample: 2 = S16_LE, 4 = S32_LE")
    channels: int = Field(1, ge=1, le=MAX_CHANNELS, description="Interleaved channels")
    pcm: bytes = Field(description="Raw PCM bytes (msgpack bin), little-endian signed")

    @model_validator(mode="after")
    def _pcm_matches_format(self) -> Self:
        frame = self.width * self.channels
        if len(self.pcm) > MAX_PCM_BYTES:
            raise ValueError(f"PCM of {len(self.pcm)} bytes exceeds {MAX_PCM_BYTES}")
        if not self.pcm or len(self.pcm) % frame:
            raise ValueError(
                f"PCM length {len(self.pcm)} is not a positive multiple of "
                f"width x channels = {frame}"
            )
        if len(self.pcm) // frame > self.rate * MAX_CHUNK_SECONDS:
            raise ValueError(f"chunk longer than {MAX_CHUNK_SECONDS} s")
        return self

    @property
    def samples(self) -> int:
        """Frames in the chunk (samples per channel)."""
        return len(self.pcm) // (self.width * self.channels)

    @property
    def seconds(self) -> float:
        """Duration of the chunk in seconds."""
        return self.samples / self.rate

    @property
    def end(self) -> float:
        """Time just after the last sample, Unix seconds."""
        return self.start + self.seconds

    def to_float(self) -> np.ndarray:
        """Samples as float32 in [-1, 1), shape (samples,) for mono, (samples, channels) else."""
        dtype = "<i2" if self.width == 2 else "<i4"
        full_scale = float(2 ** (8 * self.width - 1))
        data = np.frombuffer(self.pcm, dtype=dtype).astype(np.float32) / full_scale
        return data if self.channels == 1 else data.reshape(-1, self.channels)

    def mono(self) -> np.ndarray:
        """Samples as float32 mono (channels averaged)."""
        data = self.to_float()
        return data if data.ndim == 1 else data.mean(axis=1, dtype=np.float32)

    @classmethod
    def from_float(
        cls, device: str, seq: int, start: float, rate: int, samples: np.ndarray
    ) -> AudioChunk:
        """Build an S16_LE chunk from float samples in [-1, 1] (clipped), mono or (n, ch)."""
        arr = np.asarray(samples, dtype=np.float64)
        channels = 1 if arr.ndim == 1 else arr.shape[1]
        pcm = np.clip(np.round(arr * 32768.0), -32768, 32767).astype("<i2").tobytes()
        return cls(
            device=device, seq=seq, start=start, rate=rate, width=2, channels=channels, pcm=pcm
        )
