"""YAMNet in float (the int8 graph dequantised) beside the int8 graph: same labels on speech
and tones, continuous scores (no ties), and 48 kHz chunks resampled down to 16 kHz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from services.inference.backends.yamnet import FLOAT_MODEL_ID, MODEL_ID, YamNet, float_graph
from services.inference.core import LabelOptions, Window, classify
from services.inference.settings import InferenceSettings
from services.inference.yamnet_fetch import MODEL_FILE
from tests.inference.helpers import T0
from tests.support.audio import speech, tone

TONAL = ("Sine wave", "Beep, bleep")


@pytest.fixture(scope="module")
def int8(yamnet_dir: Path) -> YamNet:
    return YamNet.from_folder(yamnet_dir, threads=1, precision="int8")


@pytest.fixture(scope="module")
def windows() -> dict[str, np.ndarray]:
    voice = speech("Good morning. The next train to the city centre leaves in five minutes.")
    return {
        "speech 0-1 s": voice[:16_000],
        "speech 1-2 s": voice[16_000:32_000],
        "1 kHz tone": tone(1000, 1.0),
    }


def ranked(model: YamNet, audio: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    scores = model.scores([audio])[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return [model.labels[i] for i in order], scores[order]


def test_the_default_is_float_and_int8_is_a_setting(yamnet: YamNet, int8: YamNet) -> None:
    assert yamnet.precision == "float" and yamnet.model_id == FLOAT_MODEL_ID
    assert int8.precision == "int8" and int8.model_id == MODEL_ID
    assert InferenceSettings().yamnet_precision == "float"
    assert InferenceSettings(yamnet_precision="int8").yamnet_precision == "int8"


def test_the_float_graph_has_no_quantisation_and_the_int8_weights(yamnet_dir: Path) -> None:
    quantised = onnx.load(str(yamnet_dir / MODEL_FILE))
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in quantised.graph.initializer}
    scale = weights["model.classifier.weight_scale"]
    graph = float_graph(onnx.load(str(yamnet_dir / MODEL_FILE)))
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert {"Conv", "Relu", "Gemm"} <= ops
    floats = {i.name: onnx.numpy_helper.to_array(i) for i in graph.graph.initializer}
    classifier = floats["model.classifier.weight_qdq"]
    # every weight is an int8 step of its scale: the int8 model's weights, dequantised
    steps = classifier / scale
    assert np.allclose(steps, np.round(steps), atol=1e-3)
    assert np.abs(np.round(steps)).max() <= 128


def test_both_put_speech_first_and_a_tone_among_sine_or_beep(
    yamnet: YamNet, int8: YamNet, windows: dict[str, np.ndarray]
) -> None:
    for model in (yamnet, int8):
        for name in ("speech 0-1 s", "speech 1-2 s"):
            assert ranked(model, windows[name], 1)[0] == ["Speech"], (model.precision, name)
        top3 = ranked(model, windows["1 kHz tone"], 3)[0]
        assert set(top3) & set(TONAL), (model.precision, top3)


def test_float_scores_have_no_ties_in_the_top_5(
    yamnet: YamNet, int8: YamNet, windows: dict[str, np.ndarray]
) -> None:
    int8_ties = 0
    for name, audio in windows.items():
        _, top = ranked(yamnet, audio, 5)
        assert len(set(top.tolist())) == 5, (name, top)
        _, top8 = ranked(int8, audio, 5)
        int8_ties += 5 - len(set(top8.tolist()))
    assert int8_ties > 0  # the int8 grid does tie on these windows: the check can fail


def test_48khz_windows_are_resampled_to_16khz(yamnet: YamNet) -> None:
    """Capture at 48 kHz for BirdNET: the AudioSet backends still hear a 1 kHz tone."""
    window = Window("yor", 0, T0, 48_000, tone(1000, 1.0, rate=48_000))
    result = classify(yamnet, [window], LabelOptions(model_id=yamnet.model_id, top_k=3))[0]
    assert result.duration == pytest.approx(1.0)
    assert {item.label for item in result.labels} & set(TONAL)
