"""Capture settings. Environment prefix `SOUNDSCAPE_CAPTURE_`; command-line options override."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages.audio import MAX_PCM_BYTES
from shared.messages.base import DeviceId
from shared.outbox import outbox_megabytes_field

from .core import WIDTH, chunk_frames


class CaptureSettings(BaseSettings):
    """How and what to capture. Environment prefix `SOUNDSCAPE_CAPTURE_`."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_CAPTURE_", extra="ignore")

    device_id: DeviceId = Field(
        description="Sensor id: the {device} level of the audio topic and the status node"
    )
    source: Literal["alsa", "file", "synthetic"] = Field(
        "alsa", description="alsa: a microphone via arecord; file: replay recordings; synthetic"
    )
    alsa_device: str = Field(
        "AudioMoth",
        description="Name matched against `arecord -l` (card id or name, device name, "
        "/dev/snd/by-id or by-path link), or an ALSA device string such as "
        "plughw:CARD=AudioMoth,DEV=0",
    )
    alsa_plugin: Literal["plughw", "hw"] = Field(
        "plughw", description="ALSA plugin for a device found by name (plughw converts formats)"
    )
    arecord: str = Field(
        "arecord",
        description="The arecord command (split like a shell would); capture runs "
        "`<arecord> -t raw -D <device> -f S16_LE -r <capture_rate> -c <channels>`, "
        "and lists devices with `<arecord> -l`",
    )
    path: Path | None = Field(
        None,
        description="File source: a WAV/FLAC file, or a folder of recordings (searched "
        "recursively)",
    )
    fast: bool = Field(
        False, description="File source: replay as fast as the broker takes it, not in real time"
    )
    rate: int = Field(16000, ge=8000, le=384_000, description="Published sample rate in Hz")
    capture_rate: int | None = Field(
        None,
        ge=8000,
        le=384_000,
        description="Rate asked of the microphone in Hz (AudioMoth: 8000-384000); "
        "none: the published rate. Resampled with soxr when it differs",
    )
    channels: int = Field(1, ge=1, le=8, description="Channels to capture (AudioMoth: 1)")
    chunk_seconds: float = Field(
        1.0, gt=0, le=60, description="Length of each published chunk, seconds"
    )
    resample_quality: Literal["QQ", "LQ", "MQ", "HQ", "VHQ"] = Field(
        "HQ", description="soxr quality when capture and published rates differ"
    )
    gap_tolerance: float = Field(
        0.25,
        gt=0,
        description="A sudden lag of the sample clock behind the system clock larger than "
        "this (s) is counted as lost samples, a gap",
    )
    drift_limit: float = Field(
        0.5,
        gt=0,
        description="Re-anchor the sample clock when it drifts this far (s) from wall time",
    )
    stall_timeout: float = Field(
        5.0, gt=0, description="No audio from arecord for this long (s): restart it"
    )
    stop_timeout: float = Field(
        3.0,
        gt=0,
        le=60,
        description="How long (s) arecord gets to exit once its audio ends, and again "
        "after SIGTERM (sent at once on a stall), before SIGKILL (counted as kills)",
    )
    retry_min: float = Field(1.0, gt=0, description="First delay before restarting arecord, s")
    retry_max: float = Field(60.0, gt=0, description="Longest delay between restarts, s")
    outbox_seconds: float = Field(
        600.0,
        gt=0,
        description="Audio held in memory while the broker is unreachable, seconds "
        "(the oldest is dropped beyond, counted as outbox_dropped)",
    )
    state_dir: Path = Field(
        Path("~/.local/state/soundscape"),
        description="Folder for capture's durable outbox of gap reports "
        "(`<device_id>-outbox.sqlite3`); never audio",
    )
    outbox_megabytes: float = outbox_megabytes_field()

    @model_validator(mode="after")
    def _check(self) -> Self:
        frames = chunk_frames(self.chunk_seconds, self.rate)  # raises ValueError with the reason
        pcm = frames * WIDTH * self.channels
        if pcm > MAX_PCM_BYTES:
            raise ValueError(
                f"a chunk of {self.chunk_seconds:g} s at {self.rate} Hz with {self.channels} "
                f"channel(s) is {pcm} bytes of PCM, more than the {MAX_PCM_BYTES} bytes (16 MiB) "
                "an audio message may carry: shorten chunk_seconds"
            )
        if self.source == "file" and self.path is None:
            raise ValueError("the file source needs a path (--path or SOUNDSCAPE_CAPTURE_PATH)")
        if self.retry_max < self.retry_min:
            raise ValueError("retry_max must be >= retry_min")
        try:
            command = shlex.split(self.arecord)
        except ValueError as exc:
            raise ValueError(
                f"arecord {self.arecord!r} cannot be split into a command: {exc}"
            ) from None
        if not command:
            raise ValueError("arecord must name a command")
        return self

    @property
    def input_rate(self) -> int:
        """The rate arecord is asked for."""
        return self.capture_rate or self.rate
