"""AST in PyTorch through transformers: the original prototype's path, any AST checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.inference.backends import (
    ModelUnavailable,
    configure_threads,
    hub_offline,
    model_hint,
)
from services.inference.backends.common import (
    apply_hub_timeout,
    first_line,
    labels_of,
    quiet_third_party,
)
from services.inference.positions import PositionMode, adapt_positions, frames_for, grid_shape
from services.inference.settings import InferenceSettings
from shared.errors import ConfigError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


def load_ast(settings: InferenceSettings) -> tuple[Any, Any]:
    """(ASTForAudioClassification in eval mode, its feature extractor) for `settings.model`,
    a hub id or a local folder; ModelUnavailable (naming the setting to fix) if it fails."""
    apply_hub_timeout(settings.hub_timeout)
    from transformers import ASTForAudioClassification, AutoFeatureExtractor

    offline = hub_offline(settings)
    try:
        with quiet_third_party():
            extractor = AutoFeatureExtractor.from_pretrained(  # type: ignore[no-untyped-call]
                settings.model, local_files_only=offline
            )
            model = ASTForAudioClassification.from_pretrained(
                settings.model, local_files_only=offline
            )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailable(model_hint(settings, first_line(exc))) from exc
    return model.eval(), extractor


def shorten(model: Any, extractor: Any, seconds: float, mode: PositionMode) -> int:
    """Make `model` and `extractor` take `seconds` of audio without padding; return frames.

    The position embeddings are cut or resampled to the shorter grid (see positions.py).
    """
    import torch

    config = model.config
    frames = frames_for(seconds)
    if frames > config.max_length:
        raise ConfigError(
            f"a window of {seconds} s ({frames} frames) is longer than the model's input "
            f"({config.max_length} frames): use a shorter window or ast_length=pad"
        )
    shape = {
        "mel_bins": config.num_mel_bins,
        "patch": config.patch_size,
        "fstride": config.frequency_stride,
        "tstride": config.time_stride,
    }
    freq, time_old = grid_shape(config.max_length, **shape)
    _, time_new = grid_shape(frames, **shape)
    embeddings = model.audio_spectrogram_transformer.embeddings
    with torch.no_grad():
        old = embeddings.position_embeddings.detach().cpu().numpy()
        new = adapt_positions(old, freq, time_old, time_new, mode)
        embeddings.position_embeddings = torch.nn.Parameter(torch.from_numpy(new.copy()))
    config.max_length = frames
    extractor.max_length = frames
    return frames


def default_model_id(settings: InferenceSettings, frames: int | None) -> str:
    """The model id published with results: the model, plus the input length when shortened."""
    if settings.model_name:
        return settings.model_name
    name = (
        settings.model
        if frames is None
        else (f"{settings.model}@{frames}f-{settings.position_embeddings}")
    )
    return name if len(name) <= 200 else name[-200:]


class TransformersAST:
    """`Classifier`: AST in PyTorch, fp32; sigmoid over the logits."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Any, extractor: Any, model_id: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.model = model
        self.extractor = extractor
        self.model_id = model_id
        self.labels: Sequence[str] = labels_of(model.config)
        self.frames: int = int(extractor.max_length)

    @classmethod
    def load(cls, settings: InferenceSettings) -> TransformersAST:
        """Load from settings; shorten the input when `ast_length=window`."""
        model, extractor = load_ast(settings)
        frames = None
        if settings.ast_length == "window":
            frames = shorten(
                model, extractor, settings.window_seconds, settings.position_embeddings
            )
        elif frames_for(settings.window_seconds) > extractor.max_length:
            log.warning(
                "windows of %.1f s are longer than the model's %d frames: only their start is "
                "classified",
                settings.window_seconds,
                extractor.max_length,
            )
        classifier = cls(
            model, extractor, default_model_id(settings, frames), configure_threads(settings)
        )
        log.info(
            "transformers backend: %s, %d labels, %d input frames",
            classifier.model_id,
            len(classifier.labels),
            classifier.frames,
        )
        return classifier

    def features(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """(n, frames, mel) normalised fbank features, padded or cut to the model's input."""
        out = self.extractor(
            [np.asarray(w, dtype=np.float32) for w in windows],
            sampling_rate=self.sample_rate,
            return_tensors="np",
        )
        return np.asarray(out["input_values"], dtype=np.float32)

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid scores, (len(windows), len(labels))."""
        import torch

        if not windows:
            return np.zeros((0, len(self.labels)), np.float32)
        features = torch.from_numpy(self.features(windows))
        with torch.inference_mode():
            logits = self.model(input_values=features).logits
        return torch.sigmoid(logits).float().cpu().numpy()
