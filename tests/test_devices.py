"""The device registry: one TOML file, validated, with calibration defaults flagged."""

from pathlib import Path

import pytest

from shared.devices import DEFAULT_CALIBRATION, DeviceRegistry
from shared.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "devices.toml"


def test_shipped_registry_loads() -> None:
    reg = DeviceRegistry.load(SHIPPED)
    cal, uncalibrated = reg.calibration("yor")
    assert not uncalibrated and cal.sensitivity_dbv == -18.0
    assert reg.get("yor") is not None


def test_unknown_device_gets_flagged_defaults() -> None:
    cal, uncalibrated = DeviceRegistry.load(None).calibration("nobody")
    assert cal == DEFAULT_CALIBRATION and uncalibrated
    assert (cal.gain_db, cal.sensitivity_dbv, cal.vadc) == (25.0, -18.0, 1.25)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[[device]]\nid = "a/b"\n', "invalid device registry"),
        ('[[device]]\nid = "a"\nlatitude = 123\n', "invalid device registry"),
        ('[[device]]\nid = "a"\n[[device]]\nid = "a"\n', "more than once"),
        ("[[device]\n", "cannot read"),
        ('[[device]]\nid = "a"\ncolour = "red"\n', "invalid device registry"),
    ],
)
def test_bad_registries_are_rejected_with_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason):
        DeviceRegistry.load(path)


def test_missing_registry_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        DeviceRegistry.load(tmp_path / "nope.toml")
