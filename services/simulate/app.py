"""`soundscape simulate`: N sensors' audio on the broker, to size a server before buying sensors.

    soundscape simulate --devices 400 --duration 60               # 400 sensors, real time
    soundscape simulate --devices 50 --duration 3600 --speed 10    # an hour in six minutes
    soundscape simulate --devices 20 --source file --path recordings/
    soundscape simulate --devices 100 --no-stagger                 # every chunk at once

Every sensor is its own capture pipeline (device id, sequence, sample clock) and every chunk
goes out through capture's publisher (`MqttBus.publish`, QoS 0, never retained), exactly as
`soundscape capture` sends it. One process, one event loop, one MQTT connection: the scene's
PCM is computed once, so a chunk costs a slice, a message and a publish (see
docs/simulate.md for why one connection, and what a run costs). Settings:
SOUNDSCAPE_SIMULATE_* (docs/configuration.md); options given here win.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from pydantic import ValidationError

from services.capture.replay import scan
from services.demo_audio import RATE as SCENE_RATE
from services.demo_audio import street_scene
from services.simulate.core import Fleet, Scene, device_ids, origin_for
from services.simulate.settings import SimulateSettings
from shared.errors import ConfigError
from shared.mqtt import MqttBus
from shared.runtime import serve, setup_logging
from shared.settings import MqttSettings

log = logging.getLogger(__name__)

#: Longest stretch of each recording kept as a scene, seconds (bounds the memory a folder
#: of long recordings takes: 600 s at 16 kHz is 19 MB).
MAX_FILE_SECONDS = 600.0
#: Length of the generated scene, seconds.
SCENE_SECONDS = 30
#: Outbox room for the simulator's own statuses.
STATUS_ROOM = 4


def _resampled(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    return np.asarray(soxr.resample(samples, rate, target), dtype=np.float32)


def load_scenes(settings: SimulateSettings) -> list[Scene]:
    """The scenes the settings name, mono at the published rate. Raises ConfigError."""
    if settings.source == "scene":
        scene = _resampled(street_scene(SCENE_SECONDS), SCENE_RATE, settings.rate)
        return [Scene.from_float(scene, settings.rate)]
    assert settings.path is not None
    scenes = []
    for rec in scan(settings.path):
        try:
            with sf.SoundFile(rec.path) as f:
                data = f.read(min(rec.frames, int(MAX_FILE_SECONDS * rec.rate)), "float32")
        except (sf.LibsndfileError, OSError) as exc:
            log.error("skipping %s: %s", rec.path, exc)
            continue
        mono = data.mean(axis=1) if data.ndim > 1 else data
        if len(mono):
            scenes.append(
                Scene.from_float(_resampled(mono, rec.rate, settings.rate), settings.rate)
            )
    if not scenes:
        raise ConfigError(f"no readable audio in {settings.path}")
    return scenes


class Simulator:
    """Publishes a fleet's chunks when they fall due, and counts how late it was."""

    def __init__(self, settings: SimulateSettings, bus: MqttBus, scenes: list[Scene]) -> None:
        self.settings = settings
        self.bus = bus
        self.scenes = scenes
        self.counters: Counter[str] = Counter()
        self.lags: list[float] = []  # seconds each chunk was handed to the bus after it fell due
        self.fleet: Fleet | None = None
        self.cpu_publishing = 0.0  # CPU seconds of this process while the chunks went out

    @property
    def high_water(self) -> int:
        """Messages waiting for the broker beyond which publishing waits (never drops)."""
        return max(64, 2 * self.settings.devices)

    async def run(self) -> None:
        """Publish every chunk once, paced to `speed` x real time, then return."""
        s = self.settings
        await self.bus.connected.wait()  # chunks stamped before the link is up would be late
        span = s.duration + s.chunk_seconds
        fleet = Fleet(
            device_ids(s.devices, s.id_prefix),
            self.scenes,
            s.chunk_seconds,
            s.duration,
            origin_for(time.time(), span, s.speed),
            s.stagger,
        )
        self.fleet = fleet
        log.info(
            "simulate: %d sensors x %g s of audio (%d chunks) at %g x real time",
            s.devices,
            fleet.chunks_per_device * s.chunk_seconds,
            fleet.total,
            s.speed,
        )
        cpu0 = _cpu()
        t0 = time.monotonic()
        woke = -math.inf
        while not fleet.done:
            # Not before the next chunk is due, nor within a tick of the last wake-up.
            wake = max(t0 + fleet.next_due() / s.speed, woke + s.tick)
            delay = wake - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            woke = time.monotonic()
            elapsed = (woke - t0) * s.speed
            first = fleet.taken
            chunks = fleet.take_due(elapsed)
            for chunk in chunks:
                self.bus.publish(chunk)
            self.lags += [
                max(0.0, elapsed - fleet.due_at(k)) / s.speed for k in range(first, fleet.taken)
            ]
            self.counters["chunks"] += len(chunks)
            while self.bus.pending > self.high_water:
                self.counters["waits"] += 1
                await self.bus.drained(1.0)
        while not await self.bus.drained(5.0):
            log.info("waiting for the broker to take %d queued chunk(s)", self.bus.pending)
        self.cpu_publishing = _cpu() - cpu0

    def summary(self) -> str:
        """One line: what was published and how late."""
        lags = np.array(self.lags or [0.0]) * 1000.0
        return (
            f"simulate: {self.settings.devices} sensors, {self.counters['chunks']} chunks; "
            f"lag behind schedule p50 {np.percentile(lags, 50):.1f} ms, "
            f"p99 {np.percentile(lags, 99):.1f} ms, max {lags.max():.1f} ms; "
            f"waited for the broker {self.counters['waits']} time(s); "
            f"CPU {self.cpu_publishing:.2f} s while publishing, {_cpu():.2f} s in all"
        )


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def make_bus(settings: SimulateSettings, mqtt: MqttSettings) -> MqttBus:
    """Capture's bus, for the whole fleet: its outbox holds `outbox_seconds` of every sensor."""
    chunks = math.ceil(settings.outbox_seconds / settings.chunk_seconds - 1e-9)
    size = max(1, chunks) * settings.devices + STATUS_ROOM
    return MqttBus(mqtt, node=settings.node_id, service="simulate", outbox_size=size)


async def run(settings: SimulateSettings, mqtt: MqttSettings, scenes: list[Scene]) -> int:
    """Simulate until every chunk reached the broker (0) or a signal stopped it (1)."""
    bus = make_bus(settings, mqtt)
    sim = Simulator(settings, bus, scenes)
    bus.counters = lambda: dict(sim.counters)
    await serve(bus, sim.run())
    print(sim.summary(), flush=True)
    fleet = sim.fleet
    if fleet is None or not fleet.done or bus.pending:
        log.error("stopped before every chunk reached the broker")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; each defaults to its SOUNDSCAPE_SIMULATE_* setting."""
    p = argparse.ArgumentParser(
        prog="soundscape simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--devices", type=int, help="simulated sensors (default 10)")
    p.add_argument("--id-prefix", help="device ids are <prefix>-0001, ... (default sim)")
    p.add_argument("--source", choices=["scene", "file"], help="default scene")
    p.add_argument("--path", type=Path, help="file source: a WAV/FLAC file or a folder")
    p.add_argument("--duration", type=float, help="seconds of audio per sensor (default 60)")
    p.add_argument("--speed", type=float, help="x real time (default 1)")
    p.add_argument("--rate", type=int, help="published sample rate, Hz (default 16000)")
    p.add_argument("--chunk-seconds", type=float, help="chunk length, s (default 1.0)")
    p.add_argument(
        "--stagger",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="spread the sensors over one chunk period (default) or start all at once",
    )
    p.add_argument("--tick", type=float, help="shortest time between wake-ups, s (default 0.05)")
    p.add_argument("--node-id", help="node id of the simulator's status (default simulate)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `soundscape simulate`."""
    args = build_parser().parse_args(argv)
    setup_logging()
    given: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = SimulateSettings(**given)
        mqtt = MqttSettings()
        scenes = load_scenes(settings)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"simulate: {field}: {err['msg']}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(settings, mqtt, scenes))
