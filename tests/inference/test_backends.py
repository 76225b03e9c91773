"""AST backends on the tiny AST: transformers, its ONNX export (fp32, int8), true-length input,
and failing at start with a useful message when the model is not there."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from services.inference.backends import (
    ModelUnavailable,
    hub_model_unavailable,
    hub_reachable,
    load_classifier,
)
from services.inference.backends.ast_onnx import OnnxAST
from services.inference.backends.ast_torch import TransformersAST
from services.inference.export import main as export_main
from services.inference.settings import InferenceSettings
from shared.errors import ConfigError
from tests.support.audio import speech, tone, white_noise
from tests.support.models import audioset_labels
from tests.support.servers import free_port

K = 5
#: fp32 ONNX against PyTorch: same maths, float rounding only.
FP32_TOL = 1e-4
#: int8 ONNX against PyTorch fp32: dynamic quantisation moves scores by up to this much, so
#: labels whose fp32 scores are closer than this may swap places (near-ties).
INT8_TOL = 0.02


@pytest.fixture(scope="module")
def audio() -> list[np.ndarray]:
    """Four different 1 s windows: speech, a tone, noise, near-silence."""
    voice = speech("Hello, this is a test of the sound monitor.")
    return [
        voice[2000:18000],
        tone(1000, 1.0),
        white_noise(1.0, rms=0.2),
        white_noise(1.0, rms=0.001, seed=5),
    ]


def topk(row: np.ndarray, k: int = K) -> list[int]:
    return [int(i) for i in np.argsort(-row, kind="stable")[:k]]


def assert_same_top_k(got: np.ndarray, ref: np.ndarray, tol: float) -> None:
    """Same top-k labels, up to near-ties: any label in one top-k and not the other has a
    reference score within `tol` of the reference k-th score; scores within `tol`."""
    assert got.shape == ref.shape
    assert float(np.max(np.abs(got - ref))) <= tol
    for g, r in zip(got, ref, strict=True):
        kth = np.sort(r)[-K]
        for label in set(topk(g)) ^ set(topk(r)):
            assert r[label] >= kth - tol, f"label {label} is no near-tie"


def test_transformers_scores_with_the_audioset_labels(
    tiny_torch: TransformersAST, audio: list[np.ndarray]
) -> None:
    assert list(tiny_torch.labels) == audioset_labels()
    assert tiny_torch.sample_rate == 16_000 and tiny_torch.frames == 1024
    scores = tiny_torch.scores(audio)
    assert scores.shape == (4, 527) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    # batching does not change a window's scores
    assert np.allclose(tiny_torch.scores(audio[1:2])[0], scores[1], atol=1e-5)
    assert tiny_torch.scores([]).shape == (0, 527)


def test_export_writes_the_hub_layout(tiny_onnx: Path) -> None:
    for name in (
        "config.json",
        "preprocessor_config.json",
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
        "export.json",
    ):
        assert (tiny_onnx / name).is_file(), name
    record = json.loads((tiny_onnx / "export.json").read_text())
    assert record["frames"] == 1024
    diffs = record["max_abs_score_difference"]
    assert diffs["model.onnx"] <= FP32_TOL and diffs["model_quantized.onnx"] <= INT8_TOL
    int8 = (tiny_onnx / "onnx/model_quantized.onnx").stat().st_size
    assert int8 < (tiny_onnx / "onnx/model.onnx").stat().st_size


def test_onnx_fp32_gives_the_same_top_k_as_transformers(
    tiny_onnx: Path, tiny_torch: TransformersAST, audio: list[np.ndarray]
) -> None:
    onnx = OnnxAST.load(
        InferenceSettings(backend="onnx", model=str(tiny_onnx), onnx_file="model.onnx", threads=1)
    )
    assert onnx.model_id == f"{tiny_onnx}/onnx/model.onnx"
    assert list(onnx.labels) == list(tiny_torch.labels)
    got, ref = onnx.scores(audio), tiny_torch.scores(audio)
    assert float(np.max(np.abs(got - ref))) <= FP32_TOL
    assert [topk(r) for r in got] == [topk(r) for r in ref]


def test_onnx_int8_gives_the_same_top_k_within_tolerance(
    tiny_onnx: Path, tiny_torch: TransformersAST, audio: list[np.ndarray]
) -> None:
    int8 = load_classifier(InferenceSettings(backend="onnx", model=str(tiny_onnx), threads=1))
    assert int8.model_id.endswith("onnx/model_quantized.onnx")
    assert_same_top_k(int8.scores(audio), tiny_torch.scores(audio), INT8_TOL)


def test_true_length_in_transformers_and_onnx(
    tiny_ast: Path, tiny_onnx_1s: Path, audio: list[np.ndarray]
) -> None:
    settings = InferenceSettings(model=str(tiny_ast), ast_length="window", threads=1)
    short = TransformersAST.load(settings)
    assert short.frames == 98
    assert short.model_id == f"{tiny_ast}@98f-start"
    assert short.features(audio).shape == (4, 98, 128)
    onnx = OnnxAST.load(
        InferenceSettings(
            backend="onnx",
            model=str(tiny_onnx_1s),
            onnx_file="model.onnx",
            ast_length="window",
            threads=1,
        )
    )
    assert onnx.frames == 98
    got, ref = onnx.scores(audio), short.scores(audio)
    assert float(np.max(np.abs(got - ref))) <= FP32_TOL
    assert [topk(r) for r in got] == [topk(r) for r in ref]


def test_true_length_refuses_what_it_cannot_do(tiny_ast: Path, tiny_onnx: Path) -> None:
    with pytest.raises(ConfigError, match="longer than the model's input"):
        TransformersAST.load(
            InferenceSettings(model=str(tiny_ast), ast_length="window", window_seconds=20)
        )
    with pytest.raises(ConfigError, match="export-onnx --window-seconds"):
        OnnxAST.load(
            InferenceSettings(backend="onnx", model=str(tiny_onnx), ast_length="window", threads=1)
        )


def test_missing_model_fails_fast_naming_model_and_setting() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    began = time.monotonic()
    for backend in ("transformers", "onnx"):
        settings = InferenceSettings(backend=backend, model="no-such-org/no-such-ast")
        with pytest.raises(ModelUnavailable) as err:
            load_classifier(settings)
        text = str(err.value)
        assert "no-such-org/no-such-ast" in text
        assert "SOUNDSCAPE_INFERENCE_MODEL" in text and "--model" in text
    assert time.monotonic() - began < 10


def test_onnx_folder_without_the_file(tiny_ast: Path) -> None:
    settings = InferenceSettings(backend="onnx", model=str(tiny_ast))
    with pytest.raises(ModelUnavailable, match=r"no onnx/model_quantized\.onnx") as err:
        load_classifier(settings)
    assert "SOUNDSCAPE_INFERENCE_ONNX_FILE" in str(err.value)


def test_service_exits_at_start_when_the_model_is_missing(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", SOUNDSCAPE_MQTT_PORT="1")
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "services.inference", "--model", "no-such-org/no-such-ast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 78, done.stderr
    assert "no-such-org/no-such-ast" in done.stderr
    assert "SOUNDSCAPE_INFERENCE_MODEL" in done.stderr and "--model" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - began < 60


def test_onnx_files_at_the_top_of_a_folder(tiny_onnx: Path) -> None:
    flat = load_classifier(
        InferenceSettings(
            backend="onnx", model=str(tiny_onnx / "onnx"), onnx_subfolder="", threads=1
        )
    )
    assert flat.model_id == f"{tiny_onnx}/onnx/model_quantized.onnx"


def test_export_of_a_missing_model_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", "no-such-org/no-such-ast", "--out", str(tmp_path / "x"), "--offline"]
    assert export_main(argv) == 78
    err = capsys.readouterr().err
    assert "no-such-org/no-such-ast" in err and "--model" in err
    assert not (tmp_path / "x").exists()


def test_an_unreachable_hub_fails_fast_with_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without HF_HUB_OFFLINE, a hub that does not answer is detected once, up front: the
    start-up error comes at once instead of after minutes of retries."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # A loopback port nobody listens on stands in for a hub out of reach.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    settings = InferenceSettings(model="nobody/no-such-model-xyz", hub_timeout=2)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="SOUNDSCAPE_INFERENCE_MODEL"):
        load_classifier(settings)
    assert time.monotonic() - started < 10


def test_the_hub_probe_goes_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy (HTTPS_PROXY, as the hub client honours it) the hub itself may not be
    reachable directly: the probe asks the proxy, unless NO_PROXY exempts the hub."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    hub = "https://hub.example.invalid"  # not resolvable: only the proxy can get there
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        assert hub_reachable(hub, 2)
        monkeypatch.setenv("NO_PROXY", "hub.example.invalid")
        assert not hub_reachable(hub, 2)
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")  # a dead proxy
    assert not hub_reachable(hub, 2)


def test_a_hub_model_is_unavailable_only_without_hub_and_cached_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `soundscape stack` asks before starting inference on its default AST."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ast = InferenceSettings(backend="transformers", model="MIT/ast-finetuned-audioset-10-10-0.4593")
    assert hub_model_unavailable(ast)
    assert not hub_model_unavailable(ast.model_copy(update={"backend": "yamnet"}))
    assert not hub_model_unavailable(ast.model_copy(update={"model": str(tmp_path)}))
    # A copy in the local cache (as the hub client leaves it) is enough.
    repo = cache / "models--MIT--ast-finetuned-audioset-10-10-0.4593"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    assert not hub_model_unavailable(ast)
