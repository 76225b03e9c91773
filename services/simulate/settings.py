"""Settings of the fleet simulator. Environment prefix `SOUNDSCAPE_SIMULATE_`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.capture.core import chunk_frames
from shared.messages.base import DeviceId


class SimulateSettings(BaseSettings):
    """What the fleet simulator publishes. Environment prefix `SOUNDSCAPE_SIMULATE_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_SIMULATE_", extra="ignore")

    devices: int = Field(10, ge=1, le=100_000, description="Simulated sensors")
    id_prefix: str = Field(
        "sim",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="Device ids are <id_prefix>-0001, <id_prefix>-0002, ...",
    )
    source: Literal["scene", "file"] = Field(
        "scene",
        description="scene: the generated street scene (services/demo_audio.py); file: the "
        "WAV/FLAC file or folder at `path` (sensor i plays file i modulo their count)",
    )
    path: Path | None = Field(None, description="File source: a WAV/FLAC file or a folder")
    duration: float = Field(
        60.0, gt=0, description="Seconds of audio each sensor publishes (whole chunks)"
    )
    speed: float = Field(
        1.0,
        gt=0,
        le=10_000,
        description="Simulated seconds per wall-clock second: 1 is real time; faster runs "
        "still wait when the broker falls behind (the outbox never overflows)",
    )
    rate: int = Field(16000, ge=8000, le=384_000, description="Published sample rate in Hz")
    chunk_seconds: float = Field(
        1.0, gt=0, le=60, description="Length of each published chunk, seconds"
    )
    stagger: bool = Field(
        True,
        description="Spread the sensors' start times evenly over one chunk period; off: every "
        "sensor's chunk falls due in the same instant (the worst case)",
    )
    node_id: DeviceId = Field(
        "simulate", description="Node id of the simulator's own retained status"
    )
    tick: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Shortest time between two wake-ups of the simulator, seconds: each "
        "wake-up publishes every chunk that has fallen due, so a chunk goes out at most this "
        "late, and a large fleet costs one wake-up per tick rather than one per chunk; 0: "
        "wake for every chunk",
    )
    outbox_seconds: float = Field(
        10.0,
        gt=0,
        description="Audio of the whole fleet held while the broker is slow or unreachable, "
        "seconds; beyond, a real-time run drops the oldest (counted as outbox_dropped)",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        chunk_frames(self.chunk_seconds, self.rate)  # raises ValueError with the reason
        if self.source == "file" and self.path is None:
            raise ValueError("the file source needs a path")
        return self
