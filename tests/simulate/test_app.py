"""The simulator's scenes from WAV files and folders, and its settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from services.simulate.app import load_scenes, main
from services.simulate.settings import SimulateSettings
from shared.errors import ConfigError
from tests.support.audio import tone


def test_a_folder_gives_one_mono_scene_per_recording_at_the_published_rate(
    tmp_path: Path,
) -> None:
    sf.write(tmp_path / "20261129_120000.WAV", tone(1000, 2.0, 16000, 0.5), 16000)
    stereo = np.stack([tone(500, 1.0, 48000, 0.5), tone(500, 1.0, 48000, 0.1)], axis=1)
    sf.write(tmp_path / "20261129_130000.WAV", stereo, 48000)
    (tmp_path / "notes.txt").write_text("not audio")
    scenes = load_scenes(SimulateSettings(source="file", path=tmp_path))
    assert [s.rate for s in scenes] == [16000, 16000]
    assert [s.frames for s in scenes] == [32000, 16000]  # 48 kHz resampled to 16 kHz
    mixed = np.frombuffer(scenes[1].pcm, "<i2").astype(np.float64) / 32767.0
    # mixed to mono: the mean of the channels, a 500 Hz tone of amplitude 0.3
    assert np.max(np.abs(mixed[1000:-1000])) == pytest.approx(0.3, abs=0.01)


def test_the_generated_scene_is_the_demo_street_scene(tmp_path: Path) -> None:
    (scene,) = load_scenes(SimulateSettings(rate=8000))
    assert scene.rate == 8000 and scene.frames == 30 * 8000
    assert np.abs(np.frombuffer(scene.pcm, "<i2")).max() > 1000  # not silence


def test_bad_settings_and_sources_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError, match="needs a path"):
        SimulateSettings(source="file")
    with pytest.raises(ValidationError, match="whole number of samples"):
        SimulateSettings(chunk_seconds=0.33333, rate=16000)
    with pytest.raises(ConfigError, match="no readable"):
        load_scenes(SimulateSettings(source="file", path=tmp_path))
    assert main(["--devices", "0"]) == 2
    assert main(["--source", "file", "--path", str(tmp_path / "missing")]) == 2
    assert "simulate:" in capsys.readouterr().err
