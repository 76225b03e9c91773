"""The file source: replay a WAV/FLAC file, or a folder of AudioMoth recordings.

Files are read block by block (in a thread) and go through the same pipeline as live audio,
each starting a new segment at its own start time (see `recordings.py`). Every sample of
every file is published exactly once, in order of start time. Real time by default; with
`fast`, as fast as the broker takes it (the worker waits while the outbox is full, so memory
stays bounded). A progress bar goes to stderr when it is a terminal.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from shared.errors import ConfigError
from shared.messages.audio import MAX_CHANNELS

from .core import Event, FileBlock, FileStart
from .recordings import is_recording, is_triggered, start_time

log = logging.getLogger(__name__)

Sink = Callable[[Event], Awaitable[None]]
Health = Callable[[str, str | None], None]


@dataclass(frozen=True, slots=True)
class Recording:
    """One file to replay."""

    path: Path
    start: float
    origin: str
    """Where the start time came from: name, comment or mtime."""
    rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.rate


def probe(path: Path) -> Recording:
    """Read a file's format and start time (not its audio). Raises ValueError or sf errors."""
    with sf.SoundFile(path) as f:
        comment = f.comment
        rate, channels, frames = f.samplerate, f.channels, f.frames
    if channels > MAX_CHANNELS:
        raise ValueError(f"{channels} channels; an audio chunk carries at most {MAX_CHANNELS}")
    if is_triggered(path, comment):
        raise ValueError(
            "an AudioMoth triggered recording (amplitude threshold or frequency trigger): its "
            "quiet stretches are cut out, so its samples do not follow its start time; expand "
            "it first (AudioMoth Configuration App, or audiomoth-utils `expand`)"
        )
    when = start_time(path, comment, path.stat().st_mtime, frames / rate)
    return Recording(path, when.start, when.origin, rate, channels, frames)


def scan(path: Path, counters: Counter[str] | None = None) -> list[Recording]:
    """The recordings under `path` (a file, or a folder searched recursively), by start time.

    Unreadable files in a folder are logged, counted as `file_errors` and skipped. Raises
    ConfigError when `path` is missing or holds no readable recording.
    """
    counters = Counter() if counters is None else counters
    if path.is_dir():
        # Hidden folders (.Trashes, .Spotlight-V100, ...) hold deleted or indexed copies.
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and is_recording(p)
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"no such file or folder: {path}")
    found = []
    for file in files:
        try:
            found.append(probe(file))
        except (sf.LibsndfileError, ValueError, OSError) as exc:
            counters["file_errors"] += 1
            log.error("skipping %s: %s", file, exc)
    if not found:
        raise ConfigError(f"no readable WAV/FLAC recording in {path}")
    return sorted(found, key=lambda r: (r.start, str(r.path)))


class FileSource:
    """Replays recordings through the pipeline, in real time or as fast as possible."""

    paced_by_outbox = True

    def __init__(
        self,
        recordings: list[Recording],
        fast: bool,
        health: Health,
        counters: Counter[str] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.recordings = recordings
        self.fast = fast
        self.health = health
        self.counters: Counter[str] = Counter() if counters is None else counters
        self.progress = sys.stderr.isatty() if progress is None else progress

    async def run(self, sink: Sink) -> None:
        """Replay every recording once, then return."""
        total = sum(r.seconds for r in self.recordings)
        self.health("online", f"replaying {len(self.recordings)} file(s), {total:.0f} s")
        bar = tqdm(
            total=round(total, 3),
            unit="s",
            desc="replay",
            file=sys.stderr,
            disable=not self.progress,
            unit_scale=True,
        )
        played = 0.0
        t0 = time.monotonic()
        try:
            for rec in self.recordings:
                log.info(
                    "replaying %s (start %.3f from %s, %d Hz, %d ch, %.1f s)",
                    rec.path.name,
                    rec.start,
                    rec.origin,
                    rec.rate,
                    rec.channels,
                    rec.seconds,
                )
                await sink(FileStart(rec.path.name, rec.start, rec.rate, rec.channels))
                block = rec.rate if self.fast else max(1, rec.rate // 10)
                try:
                    with sf.SoundFile(rec.path) as f:
                        while True:
                            data = await asyncio.to_thread(f.read, block, "int16")
                            if not len(data):
                                break
                            await sink(FileBlock(data.tobytes()))
                            seconds = len(data) / rec.rate
                            played += seconds
                            bar.update(seconds)
                            if not self.fast:
                                await asyncio.sleep(max(0.0, t0 + played - time.monotonic()))
                except (sf.LibsndfileError, OSError) as exc:
                    self.counters["file_errors"] += 1
                    log.error("stopped reading %s: %s", rec.path, exc)
        finally:
            bar.close()
        self.health("online", f"replay done: {len(self.recordings)} file(s)")
