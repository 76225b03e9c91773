"""Finding the capture device by name in `arecord -l`, stably across reboots (pure).

The original prototype took the card *number* of the first line of `arecord -l` that
mentioned the name, with a broken regex (`card (d+)`). Card numbers change when USB devices
are re-enumerated after a reboot; the ALSA card *id* (e.g. `AudioMoth`) and the links under
`/dev/snd/by-id` (USB serial) and `/dev/snd/by-path` (USB port) do not. So a configured name is
matched against all of those, and the device string handed to `arecord -D` names the card by
its id: `plughw:CARD=AudioMoth,DEV=0`.

`arecord -l` looks like this (one line per PCM device, indented detail lines ignored)::

    **** List of CAPTURE Hardware Devices ****
    card 0: PCH [HDA Intel PCH], device 0: ALC3246 Analog [ALC3246 Analog]
      Subdevices: 1/1
      Subdevice #0: subdevice #0
    card 1: AudioMoth [AudioMoth], device 0: USB Audio [USB Audio]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.errors import ConfigError

_LINE = re.compile(
    r"^card (\d+): (\S+) \[(.*)\], device (\d+): (.*?) \[(.*)\]\s*$",
)


class DeviceError(ConfigError):
    """No capture device, or more than one, matches the configured name."""


@dataclass(frozen=True, slots=True)
class CaptureDevice:
    """One capture PCM device as listed by `arecord -l`."""

    card: int
    card_id: str
    card_name: str
    device: int
    device_name: str
    links: tuple[str, ...] = ()

    def alsa(self, plugin: str = "plughw") -> str:
        """The ALSA device string naming the card by its stable id."""
        return f"{plugin}:CARD={self.card_id},DEV={self.device}"

    def describe(self) -> str:
        """One line for error messages and `--list-devices`."""
        extra = f" ({', '.join(self.links)})" if self.links else ""
        return (
            f"card {self.card} {self.card_id!r} [{self.card_name}], device {self.device} "
            f"[{self.device_name}] -> {self.alsa()}{extra}"
        )


def parse_arecord_list(text: str) -> list[CaptureDevice]:
    """The capture devices in `arecord -l` output; other lines are ignored."""
    found = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            found.append(
                CaptureDevice(
                    card=int(m[1]),
                    card_id=m[2],
                    card_name=m[3],
                    device=int(m[4]),
                    device_name=m[6] or m[5],
                )
            )
    return found


def with_links(devices: Sequence[CaptureDevice], links: Mapping[str, int]) -> list[CaptureDevice]:
    """Attach `/dev/snd/by-id` and `by-path` link names (link name -> card number)."""
    out = []
    for dev in devices:
        names = tuple(sorted(name for name, card in links.items() if card == dev.card))
        out.append(
            CaptureDevice(dev.card, dev.card_id, dev.card_name, dev.device, dev.device_name, names)
        )
    return out


def card_of_link(target: str) -> int | None:
    """The card number a `/dev/snd/by-*` link points at (`../controlC1` -> 1)."""
    m = re.search(r"controlC(\d+)$", target)
    return int(m[1]) if m else None


#: ALSA PCM names used without arguments (from alsa-lib's and sound servers' configuration).
PLAIN_PCM_NAMES = frozenset(
    {"default", "sysdefault", "null", "pulse", "pipewire", "jack", "dsnoop"}
)
_ALSA_STRING = re.compile(r"^[A-Za-z_]\w*:\S")


def is_alsa_string(name: str) -> bool:
    """True when the setting is already an ALSA device string (`hw:1,0`, `default`, ...).

    A udev link name such as `usb-0:1.3` (from by-path) has a colon too, but no PCM name
    (a plain identifier) before it.
    """
    return bool(_ALSA_STRING.match(name)) or name in PLAIN_PCM_NAMES


def _matches(dev: CaptureDevice, want: str) -> bool:
    fields = (dev.card_id, dev.card_name, dev.device_name, *dev.links)
    return any(want in f.casefold() for f in fields)


def _listing(devices: Sequence[CaptureDevice]) -> str:
    if not devices:
        return "no capture devices found (is the microphone plugged in? `arecord -l`)"
    return "devices found:\n  " + "\n  ".join(d.describe() for d in devices)


def select_device(
    name: str, devices: Sequence[CaptureDevice], plugin: str = "plughw"
) -> tuple[str, CaptureDevice | None]:
    """The ALSA device string for a configured name, and the matched device (None if explicit).

    The name is matched case-insensitively as a substring of the card id, card name, device
    name and by-id/by-path link names. Raises DeviceError, listing the devices, when none or
    several match.
    """
    if is_alsa_string(name):
        return name, None
    want = name.casefold()
    hits = [d for d in devices if _matches(d, want)]
    if len(hits) == 1:
        return hits[0].alsa(plugin), hits[0]
    if not hits:
        raise DeviceError(f"no capture device matches {name!r}; {_listing(devices)}")
    raise DeviceError(
        f"{len(hits)} capture devices match {name!r}; name one of them more precisely "
        f"(card id, USB serial from /dev/snd/by-id) or give an ALSA device string; "
        f"matching:\n  " + "\n  ".join(d.describe() for d in hits)
    )
