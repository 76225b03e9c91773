"""Classifier backends behind `shared.contracts.Classifier`, chosen by `settings.backend`.

- `transformers`: AST in PyTorch (`AutoFeatureExtractor` + `ASTForAudioClassification`),
  the original prototype's path;
- `onnx`: AST in ONNX Runtime through optimum (`ORTModelForAudioClassification`), fp32 or
  int8, from a hub repo's `onnx/` folder or a folder made by `soundscape export-onnx`;
- `yamnet`: the YAMNet ONNX model (521 AudioSet classes) with a numpy front end, in float
  (its int8 weights dequantised, the default) or int8;
- `birdnet`: BirdNET GLOBAL 6K V2.4 (bird species) in LiteRT, publishing species results.

Each backend is imported only when chosen, so a YAMNet worker never loads torch.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from services.inference.settings import InferenceSettings
from shared.contracts import Classifier
from shared.errors import ConfigError

log = logging.getLogger(__name__)


class ModelUnavailable(ConfigError):
    """The model cannot be loaded; the message names the model and the setting to fix."""


def hub_offline(settings: InferenceSettings, *, warn: bool = True) -> bool:
    """Whether to stay off the model hub: the `offline` setting, HF_HUB_OFFLINE, or a hub
    that does not answer within `hub_timeout` (then only the local cache is tried, at once,
    instead of minutes of retries per file ending in the same error)."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if settings.offline or flag in {"1", "true", "yes", "on"}:
        return True
    if Path(settings.model).exists():
        return False  # a local folder: the hub is not asked for it
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if hub_reachable(endpoint, settings.hub_timeout):
        return False
    if warn:
        log.warning(
            "model hub %s does not answer: loading %r from the local cache only",
            endpoint,
            settings.model,
        )
    return True


def hub_model_unavailable(settings: InferenceSettings) -> bool:
    """Whether the settings' model is a hub model (transformers backend, not a local folder)
    that cannot be had: the hub is off or does not answer, and the local cache lacks it."""
    if settings.backend != "transformers" or Path(settings.model).exists():
        return False
    if not hub_offline(settings, warn=False):
        return False
    from huggingface_hub import try_to_load_from_cache

    return not isinstance(try_to_load_from_cache(settings.model, "config.json"), str)


def hub_reachable(endpoint: str, timeout: float) -> bool:
    """True when a TCP connection to the hub `endpoint` (a URL) opens within `timeout` s;
    to its proxy instead when one is configured for it (`HTTPS_PROXY`, not in `NO_PROXY`),
    as the hub client would connect (the hub itself may be unreachable but for the proxy)."""
    url = urlsplit(endpoint)
    address = _proxy_for(url) or (url.hostname or "", url.port or _default_port(url.scheme))
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _default_port(scheme: str) -> int:
    return {"https": 443, "socks5": 1080, "socks5h": 1080}.get(scheme, 80)


def _proxy_for(url: SplitResult) -> tuple[str, int] | None:
    """(host, port) of the proxy the environment sets for `url`, or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.hostname or ""):
        return None
    where = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return where.hostname or "", where.port or _default_port(where.scheme)


def model_hint(settings: InferenceSettings, reason: str) -> str:
    """The start-up error for a model that cannot be loaded: what, why, and how to fix it."""
    return (
        f"cannot load the {settings.backend} model {settings.model!r}: {reason}. "
        "Point the setting SOUNDSCAPE_INFERENCE_MODEL (command line: --model) at a local "
        "copy: download it on a machine with internet (`huggingface-cli download "
        f"{settings.model} --local-dir DIR`, or `soundscape export-onnx --model "
        f"{settings.model} --out DIR --quantize` for the onnx backend), copy DIR here and "
        "set SOUNDSCAPE_INFERENCE_MODEL=DIR; or use --backend yamnet"
    )


def configure_threads(settings: InferenceSettings) -> int:
    """CPU threads the model may use (`threads`, or every core when 0)."""
    return settings.threads or os.cpu_count() or 1


def limit_blas_threads() -> None:
    """One thread for numpy's BLAS in this process (the model keeps its own threads).

    The features (mel filter banks) are small matrix products: on a busy 2-core board,
    OpenBLAS's threads cost far more in hand-offs than they save (measured: YAMNet's log-mel
    of a 1 s window took 1-9 ms with 2 BLAS threads, 0.2 ms with one). Call once at start.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.warning("threadpoolctl is not installed: numpy's BLAS threads are not limited")
        return
    threadpool_limits(limits=1, user_api="blas")


def session_options(threads: int) -> Any:
    """ONNX Runtime options: `threads` intra-op threads that sleep, not spin, when idle.

    Spinning threads keep the cores busy after each run, and slow the numpy feature
    extraction of the next batch (and any other service on a small board) for nothing.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def load_classifier(settings: InferenceSettings) -> Classifier:
    """Load the configured backend; raise ModelUnavailable (or ConfigError) if it cannot."""
    if settings.backend == "transformers":
        from services.inference.backends.ast_torch import TransformersAST

        return TransformersAST.load(settings)
    if settings.backend == "onnx":
        from services.inference.backends.ast_onnx import OnnxAST

        return OnnxAST.load(settings)
    if settings.backend == "yamnet":
        from services.inference.backends.yamnet import YamNet

        return YamNet.load(settings)
    if settings.backend == "birdnet":
        from services.inference.backends.birdnet import BirdNet

        return BirdNet.load(settings)
    raise ConfigError(f"unknown backend {settings.backend!r}")


__all__ = [
    "ModelUnavailable",
    "configure_threads",
    "hub_offline",
    "limit_blas_threads",
    "load_classifier",
    "model_hint",
    "session_options",
]
