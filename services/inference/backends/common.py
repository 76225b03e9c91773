"""Helpers the AST backends and the export command share: hub timeouts, labels, warnings."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Silence known, harmless third-party warnings while loading or exporting models.

    Without torchaudio, the AST feature extractor builds a kaldi mel bank in numpy and warns
    that one of its 128 filters is empty (the checkpoint's own setting, harmless).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        warnings.filterwarnings("ignore", message=".*torch_dtype.*is deprecated")
        yield


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the deprecation and tracing warnings of torch's (legacy) ONNX exporter, which
    optimum drives: they concern torch's own internals, not the exported graph."""
    with quiet_third_party(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from torch.jit._trace import TracerWarning

        warnings.simplefilter("ignore", TracerWarning)
        yield


def apply_hub_timeout(seconds: float) -> None:
    """Make model hub requests give up after `seconds` (etag and download timeouts)."""
    value = str(max(1, math.ceil(seconds)))
    os.environ["HF_HUB_ETAG_TIMEOUT"] = value
    os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = value
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: its module-level values were read then
        setattr(constants, "HF_HUB_ETAG_TIMEOUT", int(value))  # noqa: B010
        setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", int(value))  # noqa: B010


def labels_of(config: Any) -> list[str]:
    """Class names in output order, from the model's `id2label`."""
    id2label = {int(k): str(v) for k, v in config.id2label.items()}
    return [id2label[i] for i in range(len(id2label))]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
