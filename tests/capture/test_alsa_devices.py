"""Device selection from `arecord -l`: parsing, matching one / none / several, stable ids."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

import pytest

from services.capture.alsa_devices import (
    DeviceError,
    card_of_link,
    is_alsa_string,
    parse_arecord_list,
    select_device,
    with_links,
)
from services.capture.live import ArecordSource, list_devices, read_links
from services.capture.settings import CaptureSettings

#: A Raspberry Pi with two AudioMoths and a cheap USB sound card, after a reboot that
#: renumbered them (the onboard bcm2835 has no capture device, so it is not listed).
PI_LISTING = """\
**** List of CAPTURE Hardware Devices ****
card 1: AudioMoth_1 [AudioMoth], device 0: USB Audio [USB Audio]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
card 2: Device [USB PnP Sound Device], device 0: USB Audio [USB Audio]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
card 11: AudioMoth [AudioMoth], device 0: USB Audio [USB Audio]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
"""

#: A laptop: one card with two capture PCM devices, and one AudioMoth.
LAPTOP_LISTING = """\
**** List of CAPTURE Hardware Devices ****
card 0: PCH [HDA Intel PCH], device 0: ALC3246 Analog [ALC3246 Analog]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
card 0: PCH [HDA Intel PCH], device 2: ALC3246 Alt Analog [ALC3246 Alt Analog]
  Subdevices: 1/1
  Subdevice #0: subdevice #0
card 3: AudioMoth [AudioMoth], device 0: USB Audio [USB Audio]
  Subdevices: 0/1
  Subdevice #0: subdevice #0
"""


def test_parse_realistic_multi_card_listing() -> None:
    devices = parse_arecord_list(PI_LISTING)
    assert [(d.card, d.card_id, d.card_name, d.device, d.device_name) for d in devices] == [
        (1, "AudioMoth_1", "AudioMoth", 0, "USB Audio"),
        (2, "Device", "USB PnP Sound Device", 0, "USB Audio"),
        (11, "AudioMoth", "AudioMoth", 0, "USB Audio"),  # two-digit card: `card (\d+)`
    ]
    assert parse_arecord_list("") == []
    assert parse_arecord_list("arecord: device_list:274: no soundcards found...") == []


def test_one_match_uses_the_stable_card_id_not_the_number() -> None:
    device, dev = select_device("audiomoth", parse_arecord_list(LAPTOP_LISTING))
    assert device == "plughw:CARD=AudioMoth,DEV=0"
    assert dev is not None and dev.card == 3
    device, _ = select_device("PnP", parse_arecord_list(PI_LISTING), plugin="hw")
    assert device == "hw:CARD=Device,DEV=0"
    device, _ = select_device("Alt Analog", parse_arecord_list(LAPTOP_LISTING))
    assert device == "plughw:CARD=PCH,DEV=2"


def test_no_match_lists_the_devices_found() -> None:
    with pytest.raises(DeviceError) as err:
        select_device("Zoom H5", parse_arecord_list(LAPTOP_LISTING))
    text = str(err.value)
    assert "no capture device matches 'Zoom H5'" in text
    assert "plughw:CARD=PCH,DEV=0" in text and "plughw:CARD=AudioMoth,DEV=0" in text
    with pytest.raises(DeviceError, match="no capture devices found"):
        select_device("AudioMoth", [])


def test_several_matches_list_them_all() -> None:
    with pytest.raises(DeviceError) as err:
        select_device("AudioMoth", parse_arecord_list(PI_LISTING))
    text = str(err.value)
    assert "2 capture devices match 'AudioMoth'" in text
    assert "CARD=AudioMoth_1" in text and "CARD=AudioMoth," in text
    assert "CARD=Device" not in text  # only the matching ones
    with pytest.raises(DeviceError, match="2 capture devices match 'PCH'"):
        select_device("PCH", parse_arecord_list(LAPTOP_LISTING))


def test_usb_serial_from_by_id_links_picks_one_of_two_identical_microphones() -> None:
    links = {
        "usb-Open_Acoustic_Devices_AudioMoth_24F319055FDF1025-00": 11,
        "usb-Open_Acoustic_Devices_AudioMoth_2D1A0D0A5F6E4A11-00": 1,
        "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0": 11,
    }
    devices = with_links(parse_arecord_list(PI_LISTING), links)
    device, dev = select_device("24F319055FDF1025", devices)
    assert device == "plughw:CARD=AudioMoth,DEV=0" and dev is not None and dev.card == 11
    device, _ = select_device("usb-0:1.3", devices)  # the USB port (by-path)
    assert device == "plughw:CARD=AudioMoth,DEV=0"
    device, _ = select_device("2D1A0D0A5F6E4A11", devices)
    assert device == "plughw:CARD=AudioMoth_1,DEV=0"


@pytest.mark.parametrize(
    "name", ["hw:CARD=AudioMoth,DEV=0", "plughw:1,0", "default", "sysdefault:CARD=PCH", "null"]
)
def test_explicit_alsa_strings_are_used_as_given(name: str) -> None:
    assert is_alsa_string(name)
    assert select_device(name, []) == (name, None)


def test_udev_links_are_read_from_the_folder(tmp_path: Path) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    os.symlink("../controlC11", by_id / "usb-Open_Acoustic_Devices_AudioMoth_24F3-00")
    os.symlink("../pcmC11D0c", by_id / "not-a-control-link")
    assert read_links((by_id, tmp_path / "missing")) == {
        "usb-Open_Acoustic_Devices_AudioMoth_24F3-00": 11
    }
    assert card_of_link("../controlC3") == 3 and card_of_link("../pcmC3D0c") is None


@pytest.mark.skipif(shutil.which("arecord") is None, reason="arecord is not installed")
async def test_the_real_arecord_accepts_the_command_line() -> None:
    """The argv capture builds works with the real arecord (ALSA's `null` device needs no card)."""
    settings = CaptureSettings(device_id="yor")
    source = ArecordSource(settings, lambda state, detail: None)
    proc = await asyncio.create_subprocess_exec(
        *source.command("null"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        data = await asyncio.wait_for(proc.stdout.readexactly(4096), 10)
    finally:
        proc.kill()
        await proc.communicate()  # read the pipes to the end, or asyncio never sees it exit
    assert len(data) == 4096
    # without sound cards, the real `arecord -l` lists nothing (and says so on stderr)
    found = await list_devices("arecord")
    assert isinstance(found, list)


@pytest.mark.skipif(shutil.which("arecord") is None, reason="arecord is not installed")
async def test_stopping_while_arecord_floods_a_full_pipe_does_not_hang() -> None:
    """`null` writes as fast as it can; with the reader busy the pipe fills and asyncio pauses
    reading. Stopping must still kill arecord and return (asyncio waits for closed pipes)."""
    source = ArecordSource(CaptureSettings(device_id="yor", alsa_device="null"), lambda s, d: None)
    busy = asyncio.Event()

    async def sink(event: object) -> None:
        busy.set()
        await asyncio.Event().wait()  # never done: arecord keeps writing meanwhile

    task = asyncio.create_task(source.run(sink))
    async with asyncio.timeout(10):
        await busy.wait()
    await asyncio.sleep(0.3)
    task.cancel()
    async with asyncio.timeout(8):
        with contextlib.suppress(asyncio.CancelledError):
            await task
