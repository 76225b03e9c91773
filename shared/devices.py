"""The device registry: one description of every sensor, read by every service.

A lone Pi keeps it in a TOML file (`SOUNDSCAPE_DEVICES_FILE`); ingest copies it into the
database's devices table so that the dashboard and other readers see the same thing.

```toml
[[device]]
id = "yor"
name = "York Road lamp post"
latitude = 53.959
longitude = -1.081
noise_threshold_db = 65
timezone = "Europe/London"
[device.calibration]
gain_db = 25
sensitivity_dbv = -18
vadc = 1.25
```
"""

from __future__ import annotations

import tomllib
import zoneinfo
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.errors import ConfigError
from shared.messages.base import DeviceId
from shared.messages.levels import Calibration

#: The AudioMoth defaults of the original prototype (gain 10 + 15 dB, -18 dB/V, 1.25 V).
DEFAULT_CALIBRATION = Calibration()


class Device(BaseModel):
    """One sensor."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: DeviceId = Field(description="Topic-level id, e.g. 'yor'")
    name: str = Field("", max_length=200, description="Human name")
    latitude: float | None = Field(None, ge=-90, le=90, description="WGS84 latitude")
    longitude: float | None = Field(None, ge=-180, le=180, description="WGS84 longitude")
    model: str = Field("AudioMoth", max_length=100, description="Microphone / recorder model")
    calibration: Calibration | None = Field(None, description="None: defaults, flagged")
    sync_interval: float = Field(30.0, gt=0, description="Seconds between database syncs")
    noise_threshold_db: float = Field(
        65.0, ge=0, le=200, description="LAeq above which a noise event starts, dB(A)"
    )
    timezone: str | None = Field(
        None, description="IANA time zone of the site, e.g. 'Europe/London' (reports); None: UTC"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class DeviceRegistry(BaseModel):
    """All known devices, by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: dict[str, Device] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> DeviceRegistry:
        """Read a TOML registry; `None` gives an empty registry (every device uncalibrated)."""
        if path is None:
            return cls()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read device registry {path}: {exc}") from exc
        return cls.parse(text, f"device registry {path}")

    @classmethod
    def parse(cls, text: str, where: str = "device registry") -> DeviceRegistry:
        """A registry from TOML text; ConfigError (naming `where`) if it is not a valid one."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot read {where}: {exc}") from exc
        unknown = sorted(set(raw) - {"device"})
        if unknown:
            raise ConfigError(f"{where}: unexpected top-level keys {unknown}")
        entries = raw.get("device", [])
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: `device` must be an array of tables ([[device]])")
        try:
            devices = [Device.model_validate(d) for d in entries]
        except ValidationError as exc:
            raise ConfigError(f"invalid {where}: {exc}") from exc
        ids = [d.id for d in devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"{where} lists {dupes} more than once")
        return cls(devices={d.id: d for d in devices})

    def get(self, device_id: str) -> Device | None:
        """The device, or None if unknown."""
        return self.devices.get(device_id)

    def calibration(self, device_id: str) -> tuple[Calibration, bool]:
        """(calibration, uncalibrated): the registry's values, or the defaults flagged True."""
        dev = self.devices.get(device_id)
        if dev is None or dev.calibration is None:
            return DEFAULT_CALIBRATION, True
        return dev.calibration, False
