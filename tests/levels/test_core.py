"""Calibration and thresholds per device (registry, settings, defaults), limits, settings, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from services.levels.app import main
from services.levels.core import ChunkOutput, LevelsCore
from services.levels.settings import LevelsSettings
from shared.devices import DeviceRegistry
from shared.errors import MessageError
from shared.messages import AudioChunk, Calibration
from tests.support.audio import tone

T0 = 1_764_400_000.0

REGISTRY = """
[[device]]
id = "yor"
noise_threshold_db = 55
[device.calibration]
gain_db = 10
sensitivity_dbv = -38
vadc = 2.0

[[device]]
id = "nocal"
noise_threshold_db = 70
"""


@pytest.fixture
def registry(tmp_path: Path) -> DeviceRegistry:
    path = tmp_path / "devices.toml"
    path.write_text(REGISTRY)
    return DeviceRegistry.load(path)


def chunk(device: str, seq: int = 0, rate: int = 16000, start: float = T0) -> AudioChunk:
    return AudioChunk.from_float(device, seq, start, rate, tone(1000, 1.0, rate, 0.5))


def test_calibration_comes_from_the_registry(registry: DeviceRegistry) -> None:
    core = LevelsCore(registry)
    out = core.process(chunk("yor"))
    assert out.levels.calibration == Calibration(gain_db=10, sensitivity_dbv=-38, vadc=2.0)
    assert out.levels.uncalibrated is False and out.threshold_db == 55
    default = core.process(chunk("nocal"))
    assert default.levels.calibration == Calibration() and default.levels.uncalibrated is True
    assert default.threshold_db == 70
    unknown = core.process(chunk("elsewhere"))
    assert unknown.levels.uncalibrated is True and unknown.threshold_db == 65
    # The same tone reads higher through the more sensitive default chain.
    assert default.levels.leq_db != pytest.approx(out.levels.leq_db, abs=1)


def test_settings_calibration_for_unlisted_devices(
    registry: DeviceRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert LevelsSettings().default_calibration() == (Calibration(), True)
    monkeypatch.setenv("SOUNDSCAPE_LEVELS_SENSITIVITY_DBV", "-30.5")
    cal, uncalibrated = LevelsSettings().default_calibration()
    assert cal == Calibration(sensitivity_dbv=-30.5) and uncalibrated is False
    core = LevelsCore(registry, default_calibration=cal, default_uncalibrated=False)
    assert core.process(chunk("elsewhere")).levels.calibration.sensitivity_dbv == -30.5
    assert core.process(chunk("yor")).levels.calibration.sensitivity_dbv == -38  # registry wins


def test_sequence_time_and_rate_decide_continuity() -> None:
    core = LevelsCore(DeviceRegistry())
    flags = [
        core.process(chunk("yor", 0)).continuous,
        core.process(chunk("yor", 1, start=T0 + 1)).continuous,
        core.process(chunk("yor", 2, start=T0 + 5)).continuous,  # time jumped
        core.process(chunk("yor", 3, start=T0 + 6)).continuous,
        core.process(chunk("yor", 4, rate=48000, start=T0 + 7)).continuous,  # new rate
        core.process(chunk("yor", 0, rate=48000, start=T0 + 8)).continuous,  # capture restarted
    ]
    assert flags == [False, True, False, True, False, False]


def test_device_limit_rejects_newcomers_and_idle_devices_are_forgotten() -> None:
    core = LevelsCore(DeviceRegistry(), max_devices=2, summary_seconds=10)
    core.process(chunk("a"), now=0.0)
    core.process(chunk("b"), now=5.0)
    with pytest.raises(MessageError, match="max_devices"):
        core.process(chunk("c"), now=5.0)
    flushed = core.flush_idle(now=12.0, idle_seconds=10.0)
    assert [f.device for f in flushed] == ["a"] and len(flushed[0].summaries) == 1
    core.process(chunk("c"), now=12.0)
    assert core.devices == 2


def test_settings_validate_and_the_cli_refuses_bad_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert LevelsSettings().summary_seconds == 60 and LevelsSettings().indices_seconds == 60
    assert main(["--summary-seconds", "0"]) == 2
    assert "summary_seconds" in capsys.readouterr().err
    assert main(["--node-id", "bad/id"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--indices-seconds" in capsys.readouterr().out


def test_calibration_moves_every_spl_metric_by_the_same_offset_and_dbfs_not_at_all(
    registry: DeviceRegistry,
) -> None:
    """yor (gain 10, -38 dB/V, Vadc 2) against the defaults (25, -18, 1.25): yor's full scale is
    20 log10(2 / 1.25) + (-18 + 25) - (-38 + 10) = 39.08 dB more pascals, in every level."""
    offset = 20 * math.log10(2.0 / 1.25) + (-18 + 25) - (-38 + 10)
    core = LevelsCore(registry, summary_seconds=2, indices_seconds=3600)
    rng = np.random.default_rng(1)
    x = (tone(300, 2.0, 16000, 0.3) * (1 + 0.5 * np.sin(np.arange(32000) / 3000))).astype(
        np.float32
    ) + 0.01 * rng.standard_normal(32000).astype(np.float32)
    outs: dict[str, list[ChunkOutput]] = {}
    summaries = {}
    for dev in ("yor", "elsewhere"):
        parts = np.split(x, 2)
        outs[dev] = [
            core.process(AudioChunk.from_float(dev, s, T0 + s, 16000, parts[s])) for s in range(2)
        ]
        (summaries[dev],) = [s for f in core.flush_all() if f.device == dev for s in f.summaries]
    cal, dflt = outs["yor"][1], outs["elsewhere"][1]
    for name in ("leq_db", "laeq_db", "lceq_db", "peak_db"):
        assert getattr(cal.levels, name) - getattr(dflt.levels, name) == pytest.approx(
            offset, abs=1e-3
        ), name
    assert cal.lafmax_db - dflt.lafmax_db == pytest.approx(offset, abs=1e-3)
    assert cal.levels.bands and dflt.levels.bands
    for band, value in cal.levels.bands.items():
        assert value - dflt.levels.bands[band] == pytest.approx(offset, abs=1e-3), band
    assert cal.levels.dbfs == dflt.levels.dbfs  # re full scale: no calibration in it
    for name in ("laeq_db", "lamax_db", "lamin_db", "l10_db", "l50_db", "l90_db"):
        got = getattr(summaries["yor"], name) - getattr(summaries["elsewhere"], name)
        assert got == pytest.approx(offset, abs=1e-3), name
