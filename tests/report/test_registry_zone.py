"""The registry's `timezone` field: IANA names only, None means UTC."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.devices import Device, DeviceRegistry
from shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_timezone_is_validated() -> None:
    assert Device(id="yor", timezone="Europe/London").timezone == "Europe/London"
    assert Device(id="yor").timezone is None
    with pytest.raises(ValidationError, match="unknown time zone"):
        Device(id="yor", timezone="Europe/Atlantis")


def test_shipped_registry_names_a_zone(tmp_path: Path) -> None:
    registry = DeviceRegistry.load(ROOT / "config" / "devices.toml")
    device = registry.get("yor")
    assert device is not None and device.timezone == "Europe/London"
    bad = tmp_path / "devices.toml"
    bad.write_text('[[device]]\nid = "a"\ntimezone = "nowhere"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown time zone"):
        DeviceRegistry.load(bad)
