"""`python -m services.demo_fleet`: the demo's simulated sensors, for machines without one.

Every device of the demo registry (`DEMO_REGISTRY`, which `soundscape stack` hands to every
service) streams its own scene (`services.demo_audio.SCENES`: a street, a park, a square)
in a loop, in real time, through capture's own pipeline and messages: the rest of the stack
cannot tell it from a microphone. The scenes are generated in memory; nothing is written to
disk (the privacy rule holds for the demo too). It runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Final

from services.capture.app import capture, make_bus
from services.capture.core import LiveBlock
from services.capture.live import Health, Sink
from services.capture.settings import CaptureSettings
from services.demo_audio import RATE, SCENES, pcm16, scene
from shared.devices import DeviceRegistry
from shared.mqtt import MqttBus
from shared.runtime import setup_logging
from shared.settings import MqttSettings

log = logging.getLogger(__name__)

#: The demo's device registry: three sensors around York, each with its scene, and one
#: spare that is in the registry but never reports (shown on the map as "never seen").
DEMO_REGISTRY: Final = """\
# The demo fleet of `soundscape stack` without a microphone (written by the stack; edit
# services/demo_fleet.py instead). Their audio is generated, so calibration is nominal.

[[device]]
id = "demo-street"
name = "Demo: street corner (traffic, speech, siren)"
latitude = 53.9590
longitude = -1.0815
noise_threshold_db = 65
timezone = "Europe/London"
sync_interval = 5
[device.calibration]
gain_db = 25.0
sensitivity_dbv = -18.0
vadc = 1.25

[[device]]
id = "demo-park"
name = "Demo: park (birdsong)"
latitude = 53.9622
longitude = -1.0870
noise_threshold_db = 65
timezone = "Europe/London"
sync_interval = 5
[device.calibration]
gain_db = 25.0
sensitivity_dbv = -18.0
vadc = 1.25

[[device]]
id = "demo-square"
name = "Demo: market square (speech, birds, traffic; no calibration)"
latitude = 53.9575
longitude = -1.0790
noise_threshold_db = 65
timezone = "Europe/London"
sync_interval = 5

[[device]]
id = "demo-spare"
name = "Demo: spare sensor, not installed (never reports)"
latitude = 53.9605
longitude = -1.0760
timezone = "Europe/London"
sync_interval = 5
"""
#: Which scene each demo device plays; a device not listed plays the street.
DEVICE_SCENES: Final = {"demo-street": "street", "demo-park": "park", "demo-square": "square"}
#: Devices of the demo registry that do not report (the spare).
SILENT: Final = frozenset({"demo-spare"})


def write_registry(path: Path) -> Path:
    """Write `DEMO_REGISTRY` to `path` (a registry, not audio) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_REGISTRY, encoding="utf-8")
    return path


def reporting_devices(registry: DeviceRegistry) -> list[str]:
    """The ids of the registry that stream a scene (all but `SILENT`)."""
    return [d for d in registry.devices if d not in SILENT]


class LoopSource:
    """`Source`: one scene's PCM again and again at real rate, from memory."""

    paced_by_outbox = False

    def __init__(self, pcm: bytes, health: Health, block_seconds: float = 0.1) -> None:
        self.pcm = pcm
        self.health = health
        self.counters: Counter[str] = Counter()
        self.block = 2 * max(1, round(RATE * block_seconds))

    async def run(self, sink: Sink) -> None:
        """Produce audio until cancelled."""
        t0 = time.monotonic()
        offset = 0
        sent = 0
        self.health("online", "demo: generated scene in a loop")
        while True:
            sent += self.block
            await asyncio.sleep(max(0.0, t0 + sent / (2 * RATE) - time.monotonic()))
            piece = self.pcm[offset : offset + self.block]
            offset += self.block
            if len(piece) < self.block:  # the loop's seam: the start of the scene again
                offset = self.block - len(piece)
                piece += self.pcm[:offset]
                self.counters["loops"] += 1
            await sink(LiveBlock(piece, time.monotonic(), time.time()))


async def run_device(device: str, kind: str, seconds: float, mqtt: MqttSettings,
                     stop: asyncio.Event) -> None:  # fmt: skip
    """Stream one device's scene until `stop`; then publish offline and disconnect."""
    settings = CaptureSettings(device_id=device, source="synthetic")
    bus: MqttBus = make_bus(settings, mqtt)
    source = LoopSource(
        pcm16(scene(kind, seconds, seed=zlib.crc32(device.encode()))), bus.set_health
    )
    async with asyncio.TaskGroup() as tg:
        bus_task = tg.create_task(bus.run())
        work = tg.create_task(capture(settings, bus, source))
        await stop.wait()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        if bus.connected.is_set():
            await bus.close(wait_s=2.0)
        bus_task.cancel()


async def run_fleet(devices: dict[str, str], seconds: float, mqtt: MqttSettings) -> None:
    """Every device of `devices` (id -> scene kind) until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with asyncio.TaskGroup() as tg:
        for device, kind in devices.items():
            tg.create_task(run_device(device, kind, seconds, mqtt, stop))


def main(argv: list[str] | None = None) -> int:
    """Stream the demo fleet of the registry in SOUNDSCAPE_DEVICES_FILE (or the built-in)."""
    parser = argparse.ArgumentParser(prog="python -m services.demo_fleet", description=__doc__)
    parser.add_argument(
        "--registry", type=Path, help="device registry (default: the built-in demo fleet)"
    )
    parser.add_argument(
        "--scene-seconds", type=float, default=20.0, help="length of each scene's loop, s"
    )
    args = parser.parse_args(argv)
    setup_logging()
    if args.scene_seconds < 2:
        parser.error("--scene-seconds must be at least 2")
    registry = (
        DeviceRegistry.load(args.registry)
        if args.registry is not None
        else DeviceRegistry.parse(DEMO_REGISTRY, "the demo registry")
    )
    devices = {d: DEVICE_SCENES.get(d, "street") for d in reporting_devices(registry)}
    assert set(DEVICE_SCENES.values()) <= set(SCENES)
    log.info(
        "demo fleet: %s, %g s scenes in a loop (generated in memory)",
        ", ".join(f"{d} ({k})" for d, k in devices.items()),
        args.scene_seconds,
    )
    asyncio.run(run_fleet(devices, args.scene_seconds, MqttSettings()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
