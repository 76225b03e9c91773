"""`soundscape capture`: stream a microphone (or replay recordings) to the broker.

    soundscape capture --device-id yor                              # AudioMoth via arecord
    soundscape capture --device-id yor --alsa-device plughw:CARD=AudioMoth,DEV=0
    soundscape capture --device-id yor --capture-rate 192000 --rate 16000
    soundscape capture --device-id yor --source file --path /media/sd --fast
    soundscape capture --device-id demo --source synthetic
    soundscape capture --list-devices

Every option can also be set in the environment as SOUNDSCAPE_CAPTURE_<OPTION> (see
docs/capture.md); options given here win.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from shared.errors import ConfigError
from shared.mqtt import MqttBus
from shared.outbox import Outbox
from shared.outbox import open_outbox as open_node_outbox
from shared.runtime import serve, setup_logging
from shared.settings import MqttSettings

from .alsa_devices import CaptureDevice
from .core import CapturePipeline, Event
from .live import ArecordSource, Health, Sink, SyntheticSource, list_devices
from .replay import FileSource, Recording, scan
from .settings import CaptureSettings

log = logging.getLogger(__name__)

#: File replay waits while more messages than this wait in the outbox.
REPLAY_OUTBOX_HIGH = 64
#: Outbox room beyond `outbox_seconds` of chunks, for statuses (few are queued offline).
STATUS_ROOM = 4


class Source(Protocol):
    """What capture reads from: it turns reads into pipeline events."""

    paced_by_outbox: bool
    counters: Counter[str]

    async def run(self, sink: Sink) -> None: ...


def make_pipeline(settings: CaptureSettings) -> CapturePipeline:
    """The pure pipeline for these settings."""
    return CapturePipeline(
        settings.device_id,
        rate=settings.rate,
        capture_rate=settings.input_rate,
        channels=settings.channels,
        chunk_seconds=settings.chunk_seconds,
        gap_tolerance=settings.gap_tolerance,
        drift_limit=settings.drift_limit,
        quality=settings.resample_quality,
    )


@dataclass(frozen=True, slots=True)
class Replay:
    """The recordings a file source will replay, found before the service starts."""

    recordings: list[Recording]
    unreadable: int = 0

    @classmethod
    def find(cls, path: Path) -> Replay:
        """Scan `path`; raises ConfigError when it holds nothing readable."""
        counters: Counter[str] = Counter()
        found = scan(path, counters)
        return cls(found, counters["file_errors"])


def make_source(settings: CaptureSettings, health: Health, replay: Replay | None = None) -> Source:
    """The source the settings name (the file source scans its path unless given `replay`)."""
    if settings.source == "alsa":
        return ArecordSource(settings, health)
    if settings.source == "synthetic":
        return SyntheticSource(settings, health)
    assert settings.path is not None
    replay = replay or Replay.find(settings.path)
    counters: Counter[str] = Counter(file_errors=replay.unreadable)
    return FileSource(replay.recordings, settings.fast, health, counters)


def make_bus(
    settings: CaptureSettings, mqtt: MqttSettings, outbox: Outbox | None = None
) -> MqttBus:
    """A bus whose memory outbox holds `outbox_seconds` of audio (at least one chunk); a
    replay's never overflows (it waits above REPLAY_OUTBOX_HIGH, and one read adds at most a
    second). With `outbox`, the QoS 1 gap reports wait on disk there instead (audio is QoS 0
    and never goes to disk; statuses are retained and stay in memory)."""
    chunks = max(1, math.ceil(settings.outbox_seconds / settings.chunk_seconds - 1e-9))
    if settings.source == "file":
        chunks = max(chunks, REPLAY_OUTBOX_HIGH + math.ceil(1 / settings.chunk_seconds) + 2)
    return MqttBus(
        mqtt,
        node=settings.device_id,
        service="capture",
        outbox_size=chunks + STATUS_ROOM,
        durable_outbox=outbox,
    )


def open_outbox(settings: CaptureSettings) -> Outbox:
    """This device's durable outbox of gap reports (those a previous run left are sent first)."""
    return open_node_outbox(
        settings.state_dir, settings.device_id, settings.outbox_megabytes, "capture"
    )


async def capture(
    settings: CaptureSettings,
    bus: MqttBus,
    source: Source,
    delivered: asyncio.Event | None = None,
) -> None:
    """Run `source` through the pipeline and publish the chunks until the source ends.

    A replay sets `delivered` once its last chunk has been handed to the broker."""
    pipeline = make_pipeline(settings)
    bus.counters = lambda: {**pipeline.counters, **source.counters}

    async def sink(event: Event) -> None:
        gaps = pipeline.counters["gaps"]
        for chunk in pipeline.handle(event):
            bus.publish(chunk)
        for report in pipeline.take_gaps():
            bus.publish(report)
        if pipeline.counters["gaps"] != gaps:
            bus.set_health(bus.health_state, pipeline.last_gap, now=True)
        while source.paced_by_outbox and bus.pending > REPLAY_OUTBOX_HIGH:
            await bus.drained(1.0)

    captured = "as recorded" if settings.source == "file" else f"{settings.input_rate} Hz"
    log.info(
        "capture %s: %s source, %s -> %d Hz, %g s chunks",
        settings.device_id,
        settings.source,
        captured,
        settings.rate,
        settings.chunk_seconds,
    )
    try:
        await source.run(sink)
    finally:
        for chunk in pipeline.finish():
            bus.publish(chunk)
    # A finished replay: hand every chunk to the broker before the service stops (it may not
    # even be connected yet when a short file is done).
    while source.paced_by_outbox and not await bus.drained(5.0):
        log.info("waiting for the broker to take %d queued message(s)", bus.pending)
    if delivered is not None:
        delivered.set()


async def run(
    settings: CaptureSettings,
    mqtt: MqttSettings,
    replay: Replay | None = None,
    outbox: Outbox | None = None,
) -> int:
    """The capture service until a signal, or the end of a replay; the exit status."""
    bus = make_bus(settings, mqtt, outbox)
    source = make_source(settings, bus.set_health, replay)
    delivered = asyncio.Event()
    await serve(bus, capture(settings, bus, source, delivered))
    if source.paced_by_outbox and (not delivered.is_set() or bus.pending):
        # Stopped by a signal, or the broker never acknowledged the final status (which it
        # does only after taking every chunk sent before it): the replay is incomplete.
        log.error(
            "replay stopped before every chunk reached the broker (%d message(s) not sent)",
            bus.pending,
        )
        return 1
    errors = source.counters["file_errors"]
    if errors:
        log.error("%d recording(s) could not be read; see above", errors)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; each defaults to its SOUNDSCAPE_CAPTURE_* setting."""
    p = argparse.ArgumentParser(
        prog="soundscape capture",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device-id", help="sensor id (topic level and status node)")
    p.add_argument("--source", choices=["alsa", "file", "synthetic"], help="default alsa")
    p.add_argument("--path", type=Path, help="file source: a WAV/FLAC file or a folder")
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="file source: as fast as possible instead of real time",
    )
    p.add_argument("--alsa-device", help="device name in `arecord -l`, or an ALSA string")
    p.add_argument("--alsa-plugin", choices=["plughw", "hw"], help="default plughw")
    p.add_argument("--arecord", help="arecord command (default arecord)")
    p.add_argument("--rate", type=int, help="published sample rate, Hz (default 16000)")
    p.add_argument("--capture-rate", type=int, help="rate asked of the microphone, Hz")
    p.add_argument("--channels", type=int, help="channels to capture (default 1)")
    p.add_argument("--chunk-seconds", type=float, help="chunk length, s (default 1.0)")
    p.add_argument(
        "--list-devices", action="store_true", help="print the capture devices found and exit"
    )
    return p


def _settings(args: argparse.Namespace) -> CaptureSettings:
    given: dict[str, Any] = {
        k: v for k, v in vars(args).items() if v is not None and k != "list_devices"
    }
    if args.list_devices:
        given.setdefault("device_id", "list-devices")
        given["source"] = "alsa"
    return CaptureSettings(**given)


async def _print_devices(settings: CaptureSettings) -> int:
    try:
        devices: list[CaptureDevice] = await list_devices(settings.arecord)
    except (OSError, TimeoutError) as exc:
        print(f"capture: cannot run {settings.arecord!r} -l: {exc}", file=sys.stderr)
        return 2
    if not devices:
        print("no capture devices found (`arecord -l` lists none)")
        return 1
    for dev in devices:
        print(dev.describe())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `soundscape capture`."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        settings = _settings(args)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"capture: {field}: {err['msg']}", file=sys.stderr)
        return 2
    if args.list_devices:
        return asyncio.run(_print_devices(settings))
    try:
        mqtt = MqttSettings()
        replay = Replay.find(settings.path) if settings.path and settings.source == "file" else None
    except (ConfigError, ValidationError) as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 2
    try:
        outbox = open_outbox(settings)
    except (OSError, sqlite3.Error) as exc:
        log.error("cannot open the gap-report outbox in %s: %s", settings.state_dir, exc)
        return 2
    try:
        return asyncio.run(run(settings, mqtt, replay, outbox))
    finally:
        outbox.close()
