"""The command line: options override environment settings; bad settings stop the start."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services.inference import app
from services.inference.settings import SPEECH_LABELS, InferenceSettings


def settings_from(argv: list[str]) -> InferenceSettings:
    return app.build_settings(app.parser().parse_args(argv))


def test_defaults_are_the_prototype_path(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from([])
    assert s.backend == "transformers"
    assert s.model == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert (s.window_seconds, s.hop, s.ast_length, s.top_k) == (1.0, 1.0, "pad", 5)
    assert s.shared_subscription and s.share_group == "inference"
    assert s.node_id.startswith("inference-")
    assert "Speech" in s.speech_labels and list(SPEECH_LABELS) == s.speech_labels
    assert s.yamnet_dir == Path.home() / ".cache" / "soundscape" / "yamnet"


def test_command_line_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOUNDSCAPE_INFERENCE_BACKEND", "onnx")
    monkeypatch.setenv("SOUNDSCAPE_INFERENCE_TOP_K", "7")
    monkeypatch.setenv("SOUNDSCAPE_INFERENCE_DEVICES", '["a1"]')
    s = settings_from([])
    assert (s.backend, s.top_k, s.devices) == ("onnx", 7, ["a1"])
    s = settings_from(
        [
            "--backend",
            "yamnet",
            "--top-k",
            "3",
            "--no-shared",
            "--devices",
            "yor,pi2",
            "--window",
            "2",
            "--hop",
            "0.5",
            "--no-yamnet-fetch",
            "--node-id",
            "w1",
        ]
    )
    assert (s.backend, s.top_k, s.shared_subscription, s.devices) == (
        "yamnet",
        3,
        False,
        ["yor", "pi2"],
    )
    assert (s.window_seconds, s.hop, s.yamnet_fetch, s.node_id) == (2.0, 0.5, False, "w1")


def test_invalid_settings_stop_the_start(caplog: pytest.LogCaptureFixture) -> None:
    assert app.main(["--devices", "bad/device"]) == app.EXIT_CONFIG
    assert app.main(["--top-k", "0"]) == app.EXIT_CONFIG
    assert "invalid settings" in caplog.text


def test_fetch_yamnet_command(yamnet_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert app.main(["--fetch-yamnet", "--yamnet-dir", str(yamnet_dir)]) == 0
    assert str(yamnet_dir) in caplog.text


def test_unloadable_model_stops_the_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    argv = ["--backend", "yamnet", "--yamnet-dir", str(tmp_path), "--no-yamnet-fetch"]
    assert app.main(argv) == app.EXIT_CONFIG
    assert "inference cannot start" in caplog.text and str(tmp_path) in caplog.text
