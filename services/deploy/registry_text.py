"""Edit the TOML device registry as text, so that its comments and other devices stay as written.

The registry is a list of `[[device]]` tables (see shared/devices.py). A device's block runs
from its `[[device]]` header to the next one; comment and blank lines just above the next
header belong to that next device and stay. Every edit is checked by parsing the result: the
other devices must come out exactly as before.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib

from shared.devices import Device, DeviceRegistry
from shared.errors import ConfigError

_HEADER = re.compile(r"^\s*\[\[\s*device\s*\]\]\s*(#.*)?$")


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def device_block(device: Device) -> str:
    """The `[[device]]` table of one device."""
    lines = ["[[device]]", f"id = {toml_string(device.id)}"]
    if device.name:
        lines.append(f"name = {toml_string(device.name)}")
    if device.latitude is not None:
        lines.append(f"latitude = {device.latitude!r}")
    if device.longitude is not None:
        lines.append(f"longitude = {device.longitude!r}")
    lines.append(f"model = {toml_string(device.model)}")
    lines.append(f"sync_interval = {device.sync_interval!r}")
    lines.append(f"noise_threshold_db = {device.noise_threshold_db!r}")
    if device.calibration is not None:
        cal = device.calibration
        lines += [
            "",
            "[device.calibration]",
            f"gain_db = {cal.gain_db!r}",
            f"sensitivity_dbv = {cal.sensitivity_dbv!r}",
            f"vadc = {cal.vadc!r}",
        ]
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, Device]:
    """The devices of a registry text, by id (ConfigError when it is not a valid registry)."""
    return DeviceRegistry.parse(text, "the registry").devices


def _blocks(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if not starts:
        return lines, []
    bounds = [*starts, len(lines)]
    return lines[: starts[0]], [lines[a:b] for a, b in itertools.pairwise(bounds)]


def add_device(text: str, device: Device) -> str:
    """`text` with `device` appended (it must not be there yet)."""
    before = parse(text)
    if device.id in before:
        raise ConfigError(f"device {device.id!r} is already in the registry")
    body = text if not text or text.endswith("\n") else text + "\n"
    result = body + ("\n" if body.strip() else "") + device_block(device)
    after = parse(result)
    if after != {**before, device.id: device}:
        raise ConfigError(f"adding {device.id!r} would change other entries")  # pragma: no cover
    return result


def remove_device(text: str, device_id: str) -> str:
    """`text` without the block of `device_id` (which must be there)."""
    before = parse(text)
    if device_id not in before:
        raise ConfigError(f"device {device_id!r} is not in the registry")
    head, blocks = _blocks(text)
    kept: list[str] = list(head)
    for block in blocks:
        try:
            entries = tomllib.loads("".join(block)).get("device", [])
        except tomllib.TOMLDecodeError:
            entries = []
        if len(entries) == 1 and entries[0].get("id") == device_id:
            # Keep the comments that lead into the next block.
            tail: list[str] = []
            for line in reversed(block):
                if line.strip() and not line.lstrip().startswith("#"):
                    break
                tail.insert(0, line)
            kept += tail
        else:
            kept += block
    result = "".join(kept)
    if result.endswith("\n\n"):
        # The blank line that `add_device` put before the block goes with it.
        result = result.rstrip("\n") + "\n"
    expected = {k: v for k, v in before.items() if k != device_id}
    try:
        after = parse(result)
    except ConfigError as exc:
        raise ConfigError(f"cannot remove {device_id!r} by editing the file: {exc}") from exc
    if after != expected:
        raise ConfigError(
            f"cannot remove {device_id!r} by editing the file (its entry is not one "
            "[[device]] block): edit the registry by hand"
        )
    return result
