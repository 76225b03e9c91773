"""`soundscape calibrate`: a calibrator recording gives back the sensitivity that made it."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from services.levels.calibrate import CalibrationError, main, sensitivity_from
from services.levels.core import LevelsCore
from services.levels.measure import prototype_leq
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk
from tests.support.audio import tone, white_noise, write_wav

RATE = 48000


def calibrator(
    level: float, sensitivity: float, gain: float, vadc: float, rate: int = RATE
) -> np.ndarray:
    """What the sensor records of a 1 kHz calibrator at `level` dB SPL, with room noise."""
    pressure_rms = 20e-6 * 10 ** (level / 20)
    volts_peak = pressure_rms * math.sqrt(2) * 10 ** (sensitivity / 20) * 10 ** (gain / 20)
    amplitude = volts_peak / (vadc / 2)
    assert amplitude < 0.9
    noise = white_noise(5.0, rate, rms=amplitude / 300, seed=4)  # ~ -50 dB re the tone
    return np.asarray(tone(1000.3, 5.0, rate, amplitude) + noise)


@pytest.mark.parametrize(
    ("level", "sensitivity", "gain", "vadc"),
    [(94, -38.0, 10.0, 1.25), (114, -42.7, 0.0, 2.0), (94, -18.0, 0.0, 3.3)],
)
def test_sensitivity_round_trip(level: float, sensitivity: float, gain: float, vadc: float) -> None:
    samples = calibrator(level, sensitivity, gain, vadc)
    result = sensitivity_from(samples, RATE, level, gain, vadc)
    assert result.sensitivity_dbv == pytest.approx(sensitivity, abs=0.1)
    assert result.tone_fraction > 0.99 and result.stability_db < 0.1 and not result.clipped


def test_command_prints_a_registry_snippet_that_measures_the_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = calibrator(94, -38.0, 10.0, 1.25, rate=16000)
    wav = write_wav(tmp_path / "cal.wav", samples, 16000)
    rc = main(
        ["--file", str(wav), "--level", "94", "--gain", "10", "--vadc", "1.25", "--device", "yor"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "sensitivity: -38.0" in out or "sensitivity: -37.9" in out
    snippet = out[out.index("[[device]]") :]
    path = tmp_path / "devices.toml"
    path.write_text(snippet)
    registry = DeviceRegistry.load(path)
    cal, uncalibrated = registry.calibration("yor")
    assert not uncalibrated
    assert cal.sensitivity_dbv == pytest.approx(-38.0, abs=0.1)
    assert tomllib.loads(snippet)["device"][0]["calibration"]["gain_db"] == 10
    # Levels measured with it read the calibrator's level.
    tone_only = tone(1000, 1.0, 16000, amplitude=float(np.sqrt(2) * np.std(samples)))
    assert prototype_leq(tone_only, cal) == pytest.approx(94.0, abs=0.1)


def test_unusable_recordings_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CalibrationError):
        sensitivity_from(np.zeros(RATE * 3), RATE, 94, 0, 1.25)
    with pytest.raises(CalibrationError):
        sensitivity_from(tone(1000, 0.5, RATE, 0.1), RATE, 94, 0, 1.25)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000 * 3, dtype=np.float32), 16000)
    assert main(["--file", str(silent)]) == 1
    assert main(["--file", str(tmp_path / "missing.wav")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_warns_when_the_recording_is_not_a_clean_calibrator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noisy = tone(1000, 3.0, 16000, 0.05) + white_noise(3.0, 16000, rms=0.05)
    assert main(["--file", str(write_wav(tmp_path / "n.wav", noisy, 16000))]) == 0
    assert "energy is at 1 kHz" in capsys.readouterr().err


def test_a_stereo_recording_calibrates_what_the_service_measures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The microphone on the left, nothing on the right: the service measures the mean of the
    channels, so the calibration must come from that mix to make it read 94 dB."""
    left = calibrator(94, -38.0, 10.0, 1.25, rate=16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    wav = write_wav(tmp_path / "cal.wav", stereo, 16000)
    assert main(["--file", str(wav), "--gain", "10", "--device", "yor"]) == 0
    snippet = capsys.readouterr().out
    (tmp_path / "devices.toml").write_text(snippet[snippet.index("[[device]]") :])
    registry = DeviceRegistry.load(tmp_path / "devices.toml")
    core = LevelsCore(registry)
    start = 1_764_400_000.0
    chunk = AudioChunk.from_float("yor", 0, start, 16000, stereo[16000:32000])
    assert core.process(chunk).levels.leq_db == pytest.approx(94.0, abs=0.1)
    # One channel on request: the microphone's own sensitivity.
    assert main(["--file", str(wav), "--gain", "10", "--channel", "0"]) == 0
    out = capsys.readouterr().out
    assert "sensitivity: -38.0" in out or "sensitivity: -37.9" in out
    assert main(["--file", str(wav), "--channel", "2"]) == 2


def test_a_clipping_channel_is_reported_even_when_the_mix_does_not_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loud = np.clip(tone(1000, 3.0, 16000, 1.5), -1, 1)
    stereo = np.stack([loud, np.zeros_like(loud)], axis=1)
    assert main(["--file", str(write_wav(tmp_path / "c.wav", stereo, 16000))]) == 0
    assert "clips" in capsys.readouterr().err
