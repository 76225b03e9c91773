"""The fleet simulator's core (pure): N sensors' chunks, in the order they fall due.

Each simulated sensor is a capture `CapturePipeline` of its own (its own device id, sequence
numbers and sample clock), fed from a scene computed once: every chunk is a slice of the
scene's precomputed PCM, at an offset of the sensor's own, so a chunk costs a slice and the
capture pipeline's usual work, never synthesis or a file read.

Sensor `i` of `n` starts `i * chunk / n` seconds after the first, so the fleet's chunks fall
due evenly spread over each chunk period, as unsynchronised sensors' do (with `stagger`
off they all fall due at once, the worst case for a server). Chunk `k` of sensor `i` covers
`[origin + offset_i + k * chunk, ... + chunk)` of audio time and is due when that audio has
ended: `offset_i + (k + 1) * chunk` seconds of simulated time after the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from services.capture.core import WIDTH, CapturePipeline, FileBlock, FileStart, chunk_frames
from shared.messages import AudioChunk

#: Frames between two sensors' starting points in a shared scene (a prime, so sensors that
#: share a scene rarely play the same stretch at once).
SCENE_STEP = 7919


def device_ids(n: int, prefix: str = "sim") -> list[str]:
    """`prefix-0001` ... : n device ids, zero-padded to at least four digits."""
    width = max(4, len(str(n)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, n + 1)]


@dataclass(frozen=True, slots=True)
class Scene:
    """Mono S16_LE PCM to loop, and its rate."""

    pcm: bytes
    rate: int

    @classmethod
    def from_float(cls, samples: np.ndarray, rate: int) -> Scene:
        """A scene from float samples in [-1, 1] (mono)."""
        clipped = np.clip(np.round(np.asarray(samples, np.float64) * 32767.0), -32768, 32767)
        return cls(clipped.astype("<i2").tobytes(), rate)

    @property
    def frames(self) -> int:
        """Length in frames."""
        return len(self.pcm) // WIDTH


@dataclass(slots=True)
class _Sensor:
    device: str
    offset: float  #: seconds after the fleet's first sensor that this one starts
    pipeline: CapturePipeline
    loop: bytes  #: the scene, repeated so any chunk is one contiguous slice
    loop_frames: int  #: frames in one repetition of the scene
    position: int  #: frame of the scene the next chunk starts at


@dataclass
class Fleet:
    """The chunks of `devices` sensors over `duration` seconds of audio, due in order."""

    devices: list[str]
    scenes: list[Scene]
    chunk_seconds: float = 1.0
    duration: float = 60.0
    origin: float = 0.0
    """Audio time (Unix s) at which the first sensor starts."""
    stagger: bool = True
    chunks_per_device: int = field(init=False)
    _sensors: list[_Sensor] = field(init=False, repr=False)
    _next: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not self.devices or not self.scenes:
            raise ValueError("a fleet needs at least one device and one scene")
        if any(s.frames < 1 for s in self.scenes):
            raise ValueError("an empty scene")
        rates = {s.rate for s in self.scenes}
        if len(rates) != 1:
            raise ValueError(f"scenes at several rates: {sorted(rates)}")
        self.rate = rates.pop()
        self.frames = chunk_frames(self.chunk_seconds, self.rate)
        self.chunks_per_device = math.floor(self.duration / self.chunk_seconds + 1e-9)
        n = len(self.devices)
        loops = [_repeat(s.pcm, self.frames) for s in self.scenes]
        self._sensors = []
        for i, device in enumerate(self.devices):
            scene = self.scenes[i % len(self.scenes)]
            offset = i * self.chunk_seconds / n if self.stagger else 0.0
            pipeline = CapturePipeline(device, rate=self.rate, chunk_seconds=self.chunk_seconds)
            pipeline.handle(FileStart(device, self.origin + offset, self.rate, 1))
            self._sensors.append(
                _Sensor(
                    device,
                    offset,
                    pipeline,
                    loops[i % len(self.scenes)],
                    scene.frames,
                    (i * SCENE_STEP) % scene.frames,
                )
            )

    @property
    def total(self) -> int:
        """Chunks the whole simulation publishes."""
        return self.chunks_per_device * len(self.devices)

    @property
    def taken(self) -> int:
        """Chunks taken so far (fleet order: the index of the next one)."""
        return self._next

    @property
    def done(self) -> bool:
        """True once every chunk was taken."""
        return self._next >= self.total

    def due_at(self, index: int) -> float:
        """Simulated seconds after the start at which chunk `index` (fleet order) is due."""
        n = len(self.devices)
        k, i = divmod(index, n)
        return self._sensors[i].offset + (k + 1) * self.chunk_seconds

    def next_due(self) -> float:
        """When the next chunk is due, simulated seconds after the start (inf when done)."""
        return math.inf if self.done else self.due_at(self._next)

    def take_due(self, elapsed: float) -> list[AudioChunk]:
        """Every chunk due by `elapsed` simulated seconds, oldest first."""
        out: list[AudioChunk] = []
        while not self.done and self.due_at(self._next) <= elapsed + 1e-9:
            out += self._chunk(self._sensors[self._next % len(self.devices)])
            self._next += 1
        return out

    def _chunk(self, sensor: _Sensor) -> list[AudioChunk]:
        start = sensor.position * WIDTH
        pcm = sensor.loop[start : start + self.frames * WIDTH]
        sensor.position = (sensor.position + self.frames) % sensor.loop_frames
        return sensor.pipeline.handle(FileBlock(pcm))


def _repeat(pcm: bytes, frames: int) -> bytes:
    """`pcm` repeated until a slice of `frames` frames may start anywhere in its first copy."""
    copies = 1 + math.ceil(frames * WIDTH / len(pcm))
    return pcm * copies


def origin_for(now: float, span: float, speed: float) -> float:
    """Audio time of the fleet's start so that no chunk ends after the wall clock when it is
    published: now in real time; earlier by what a faster run gains over `span` seconds."""
    return now - span * max(0.0, 1.0 - 1.0 / speed)
