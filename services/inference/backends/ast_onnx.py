"""AST in ONNX Runtime through optimum: fp32 or int8, from a hub repo or a local folder.

The layout is the hub's (and `soundscape export-onnx`'s): `config.json` and
`preprocessor_config.json` at the top, the ONNX files in a subfolder (`onnx/model.onnx`,
`onnx/model_quantized.onnx`). The input length is fixed when the model is exported: the
config's `max_length` (1024 frames as trained, or a window's length with `--window-seconds`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.backends import (
    ModelUnavailable,
    configure_threads,
    hub_offline,
    model_hint,
    session_options,
)
from services.inference.backends.common import (
    apply_hub_timeout,
    first_line,
    labels_of,
    quiet_third_party,
)
from services.inference.positions import frames_for
from services.inference.settings import InferenceSettings
from shared.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


def _check_onnx_file(settings: InferenceSettings, offline: bool) -> None:
    """Fail early, and clearly, when the ONNX file is not there.

    optimum would otherwise export the PyTorch weights on the fly (minutes, and a download)
    when a repo has no ONNX file.
    """
    folder = Path(settings.model)
    wanted = f"{settings.onnx_subfolder}/{settings.onnx_file}".lstrip("/")
    if folder.is_dir():
        if not (folder / wanted).is_file():
            found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.onnx"))
            raise ModelUnavailable(
                model_hint(
                    settings, f"no {wanted} in {folder} (ONNX files there: {found or 'none'})"
                )
                + "; choose the file with SOUNDSCAPE_INFERENCE_ONNX_FILE (--onnx-file)"
            )
        return
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(
            settings.model,
            settings.onnx_file,
            subfolder=settings.onnx_subfolder or None,
            local_files_only=offline,
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(model_hint(settings, f"{wanted}: {first_line(exc)}")) from exc


def model_id_for(settings: InferenceSettings) -> str:
    """The model id published with results: repo or folder, and the ONNX file."""
    if settings.model_name:
        return settings.model_name
    parts = [settings.model.rstrip("/"), settings.onnx_subfolder.strip("/"), settings.onnx_file]
    name = "/".join(p for p in parts if p)
    return name if len(name) <= 200 else name[-200:]


class OnnxAST:
    """`Classifier`: an AST exported to ONNX, run by ONNX Runtime; sigmoid over the logits."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Any, extractor: Any, model_id: str):
        self.model = model
        self.extractor = extractor
        self.model_id = model_id
        self.labels: Sequence[str] = labels_of(model.config)
        self.frames: int = int(model.config.max_length)
        # The exported graph has a fixed input length: make the extractor pad/cut to it.
        self.extractor.max_length = self.frames

    @classmethod
    def load(cls, settings: InferenceSettings) -> OnnxAST:
        """Load `onnx_subfolder/onnx_file` of `model` with one session of `threads` threads."""
        apply_hub_timeout(settings.hub_timeout)
        from optimum.onnxruntime import ORTModelForAudioClassification
        from transformers import AutoFeatureExtractor

        offline = hub_offline(settings)
        _check_onnx_file(settings, offline)
        options = session_options(configure_threads(settings))
        try:
            with quiet_third_party():
                model = ORTModelForAudioClassification.from_pretrained(
                    settings.model,
                    subfolder=settings.onnx_subfolder,
                    file_name=settings.onnx_file,
                    local_files_only=offline,
                    session_options=options,
                    export=False,
                )
                extractor = AutoFeatureExtractor.from_pretrained(  # type: ignore[no-untyped-call]
                    settings.model, local_files_only=offline
                )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelUnavailable(model_hint(settings, first_line(exc))) from exc
        classifier = cls(model, extractor, model_id_for(settings))
        window_frames = frames_for(settings.window_seconds)
        if settings.ast_length == "window" and window_frames != classifier.frames:
            raise ConfigError(
                f"ast_length=window with the onnx backend needs a model exported for "
                f"{settings.window_seconds} s windows ({window_frames} frames), but "
                f"{settings.model} takes {classifier.frames} frames: run `soundscape "
                f"export-onnx --window-seconds {settings.window_seconds} ...`"
            )
        if window_frames > classifier.frames:
            log.warning(
                "windows of %.1f s are longer than the model's %d frames: only their start is "
                "classified",
                settings.window_seconds,
                classifier.frames,
            )
        log.info(
            "onnx backend: %s, %d labels, %d input frames, %d threads",
            classifier.model_id,
            len(classifier.labels),
            classifier.frames,
            options.intra_op_num_threads,
        )
        return classifier

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid scores, (len(windows), len(labels))."""
        if not windows:
            return np.zeros((0, len(self.labels)), np.float32)
        features = self.extractor(
            [np.asarray(w, dtype=np.float32) for w in windows],
            sampling_rate=self.sample_rate,
            return_tensors="np",
        )["input_values"]
        logits = np.asarray(
            self.model(input_values=np.asarray(features, dtype=np.float32)).logits,
            dtype=np.float64,
        )
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
