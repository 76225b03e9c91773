"""Settings of the levels service. Environment prefix `SOUNDSCAPE_LEVELS_`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import Calibration, check_id
from shared.outbox import outbox_megabytes_field
from shared.settings import host_id
from shared.shard import Shard


class LevelsSettings(BaseSettings):
    """What the levels service measures and how often it reports."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_LEVELS_", extra="ignore")

    node_id: str = Field(
        default_factory=lambda: host_id("levels"),
        description="Node id of this service's retained status topic",
    )
    summary_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="Length of the LAeq/LAmax/LAmin/L10/L50/L90 interval, seconds "
        "(aligned to multiples of it in Unix time)",
    )
    indices_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="Length of the acoustic-indices window, seconds (aligned like the summary)",
    )
    indices_min_coverage: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Fraction of an indices window that must have audio for indices to be "
        "published",
    )
    event_min_seconds: float = Field(
        3.0,
        gt=0,
        le=3600,
        description="How long LAeq must stay above the device's threshold to be a noise event",
    )
    event_labels_wait: float = Field(
        10.0,
        ge=0,
        le=600,
        description="Seconds a finished noise event waits for inference's labels before it is "
        "published with what has arrived",
    )
    event_classes: int = Field(
        5, ge=0, le=20, description="Most sound classes attached to a noise event"
    )
    label_history: int = Field(
        3600,
        ge=1,
        le=100_000,
        description="Label windows remembered per device for linking noise events to classes",
    )
    noise_threshold_db: float = Field(
        65.0,
        ge=0,
        le=200,
        description="Noise-event threshold, dB(A), for devices the registry does not list",
    )
    gain_db: float | None = Field(
        None,
        description="Gain for devices without calibration in the registry; unset: 25 dB "
        "(flagged uncalibrated unless one of gain/sensitivity/vadc is set)",
    )
    sensitivity_dbv: float | None = Field(
        None,
        description="Microphone sensitivity, dB re 1 V/Pa, for devices without calibration in "
        "the registry; unset: -18",
    )
    vadc: float | None = Field(
        None,
        description="ADC full-scale voltage (peak to peak) for devices without calibration in "
        "the registry; unset: 1.25 V",
    )
    queue_size: int = Field(
        600, ge=1, le=100_000, description="Audio chunks waiting to be measured; beyond, dropped"
    )
    queue_megabytes: float = Field(
        256.0,
        gt=0,
        description="Most PCM, MB, waiting to be measured (bounds the queue when chunks are "
        "large: high rates, many channels); beyond, chunks are dropped",
    )
    idle_seconds: float = Field(
        30.0,
        gt=0,
        description="Wall-clock seconds without audio after which a device's open interval and "
        "window are published as they are and its state is forgotten",
    )
    max_chunk_seconds: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Longest audio chunk accepted, seconds (capture sends 1 s); longer ones are "
        "rejected, so one message cannot take the memory of many",
    )
    max_devices: int = Field(
        1000, ge=1, description="Most devices measured at once; audio from more is rejected"
    )
    state_dir: Path = Field(
        Path("~/.local/state/soundscape"),
        description="Folder for this service's durable state (result outbox, stream "
        "positions); never audio",
    )
    outbox_megabytes: float = outbox_megabytes_field()
    shards: int = Field(
        1,
        ge=1,
        le=1024,
        description="Levels workers that split the devices between them (each measures only "
        "the devices whose id hashes to its shard; see docs/levels.md)",
    )
    shard: int = Field(
        0, ge=0, description="This worker's shard, 0 .. shards-1 (each needs its own node_id)"
    )

    @model_validator(mode="after")
    def _shard_in_range(self) -> LevelsSettings:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} is not below shards={self.shards}")
        return self

    @property
    def device_shard(self) -> Shard:
        """The devices this worker owns."""
        return Shard(self.shard, self.shards)

    @field_validator("node_id")
    @classmethod
    def _node(cls, value: str) -> str:
        return check_id(value, "node id")

    def default_calibration(self) -> tuple[Calibration, bool]:
        """(calibration for unlisted devices, uncalibrated): flagged when nothing was set."""
        given = {
            k: v
            for k, v in (
                ("gain_db", self.gain_db),
                ("sensitivity_dbv", self.sensitivity_dbv),
                ("vadc", self.vadc),
            )
            if v is not None
        }
        return Calibration.model_validate(given), not given
