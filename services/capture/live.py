"""Live sources: one long-running `arecord` read through a pipe, and the synthetic demo.

`ArecordSource` is the self-healing part of capture. It resolves the configured device name
to an ALSA device string (again before every start: a re-plugged AudioMoth may come back as
another card), runs `arecord -t raw ... ` once and reads its stdout for as long as it lives.
No temp file, no restart per chunk. When arecord exits, or sends nothing for `stall_timeout`
seconds, or the device cannot be found, the status turns `degraded` with the reason, and the
source retries with backoff until the device is back; then the status is `online` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from shared.mqtt import backoff_delays

from .alsa_devices import (
    CaptureDevice,
    DeviceError,
    card_of_link,
    is_alsa_string,
    parse_arecord_list,
    select_device,
    with_links,
)
from .core import WIDTH, Event, LiveBlock, SourceStopped
from .settings import CaptureSettings
from .synthetic import synthetic_pcm

log = logging.getLogger(__name__)

Sink = Callable[[Event], Awaitable[None]]
#: Reports the source's health: ("online" | "degraded", detail or None).
Health = Callable[[str, str | None], None]

#: Where udev keeps stable names for sound cards.
LINK_DIRS = (Path("/dev/snd/by-id"), Path("/dev/snd/by-path"))
#: A run of arecord this long resets the restart backoff.
HEALTHY_RUN_S = 60.0


def read_links(dirs: tuple[Path, ...] = LINK_DIRS) -> dict[str, int]:
    """udev link name -> card number, from /dev/snd/by-id and by-path (empty when absent)."""
    links: dict[str, int] = {}
    for folder in dirs:
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                with contextlib.suppress(OSError):
                    card = card_of_link(os.readlink(entry.path))
                    if card is not None:
                        links[entry.name] = card
    return links


async def list_devices(arecord: str, limit_s: float = 10.0) -> list[CaptureDevice]:
    """The capture devices `<arecord> -l` lists, with their udev links."""
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(arecord),
        "-l",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(limit_s):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            if not await _exited(proc, limit_s):
                log.error("`%s -l` (pid %d) survived SIGKILL; leaving it behind", arecord, proc.pid)
    return with_links(parse_arecord_list(out.decode(errors="replace")), read_links())


class ArecordSource:
    """PCM from one long-running arecord process; restarted with backoff when it ends."""

    paced_by_outbox = False

    def __init__(self, settings: CaptureSettings, health: Health) -> None:
        self.settings = settings
        self.health = health
        self.counters: Counter[str] = Counter()
        self.device: str | None = None
        self.read_size = max(4096, settings.input_rate * WIDTH * settings.channels)

    async def resolve(self) -> str:
        """The ALSA device string to record from, found anew each time."""
        name = self.settings.alsa_device
        if is_alsa_string(name):
            return name
        devices = await list_devices(self.settings.arecord)
        device, _ = select_device(name, devices, self.settings.alsa_plugin)
        return device

    def command(self, device: str) -> list[str]:
        """The arecord command line for `device`."""
        s = self.settings
        return [
            *shlex.split(s.arecord),
            "-t",
            "raw",
            "-D",
            device,
            "-f",
            "S16_LE",
            "-r",
            str(s.input_rate),
            "-c",
            str(s.channels),
        ]

    async def run(self, sink: Sink) -> None:
        """Record until cancelled, restarting arecord whenever it stops."""
        s = self.settings
        delays = backoff_delays(s.retry_min, s.retry_max)
        while True:
            try:
                device = await self.resolve()
            except (DeviceError, OSError, TimeoutError) as exc:
                self.counters["device_errors"] += 1
                delay = next(delays)
                reason = f"cannot find capture device: {str(exc) or type(exc).__name__}"
                log.error("%s; retrying in %.1f s", reason, delay)
                self.health("degraded", f"{reason}; retrying in {delay:.1f} s")
                await asyncio.sleep(delay)
                continue
            if device != self.device:
                log.info("recording from ALSA device %s", device)
                self.device = device
            started = time.monotonic()
            stalls = self.counters["stalls"]
            reason = await self._record(device, sink)
            await sink(SourceStopped(reason, stalled=self.counters["stalls"] > stalls))
            if time.monotonic() - started > HEALTHY_RUN_S:
                delays = backoff_delays(s.retry_min, s.retry_max)
            delay = next(delays)
            log.warning("%s; restarting in %.1f s", reason, delay)
            self.health("degraded", f"{reason}; restarting in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _record(self, device: str, sink: Sink) -> str:
        """Run arecord once; return why it stopped."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command(device),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=4 * self.read_size,
                start_new_session=True,  # its own process group: killed whole, never orphaned
            )
        except OSError as exc:
            return f"cannot start arecord: {exc}"
        tail: deque[str] = deque(maxlen=3)
        stderr = asyncio.create_task(self._stderr(proc, tail))
        stalled: bool | None = None  # None: cancelled or failed while reading
        try:
            stalled = await self._read(proc, sink)
        finally:
            ended = await self._stop(proc, stderr, wait_first=stalled is False)
        said = f": {' | '.join(tail)}" if tail else ""
        if stalled:
            reason = f"arecord sent no audio for {self.settings.stall_timeout:g} s"
        elif ended is None:
            reason = f"arecord exited with code {proc.returncode}"
        else:
            reason = (
                "arecord closed its audio output but did not exit within "
                f"{self.settings.stop_timeout:g} s"
            )
        if ended == "SIGKILL":
            reason += "; it ignored SIGTERM and was killed with SIGKILL"
        elif ended == "alive":
            reason += "; it survived SIGKILL (stuck in the driver?) and was left behind"
        return reason + said

    async def _stop(
        self, proc: asyncio.subprocess.Process, stderr: asyncio.Task[None], wait_first: bool
    ) -> str | None:
        """End one arecord run in bounded time: give it `stop_timeout` to exit by itself
        (after EOF only: after a stall or a cancel it will not), then SIGTERM its process
        group, then SIGKILL it (counted as `kills`), `stop_timeout` each. A process that
        survives even SIGKILL (a driver stuck in the kernel) is left behind rather than
        waited for. Returns what ended it: None (itself), "SIGTERM", "SIGKILL" or "alive"."""
        limit = self.settings.stop_timeout
        # both pipes are read to the end: asyncio reports an exit only once they are closed
        assert proc.stdout is not None
        drain = asyncio.create_task(_discard(proc.stdout))
        ended: str | None = "alive"
        try:
            if wait_first and await _exited(proc, limit):
                ended = None
            else:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    if sig == signal.SIGKILL:
                        self.counters["kills"] += 1
                        log.warning(
                            "arecord (pid %d) did not end within %g s of SIGTERM; sending SIGKILL",
                            proc.pid,
                            limit,
                        )
                    _signal(proc, sig)
                    if await _exited(proc, limit):
                        ended = sig.name
                        break
                else:
                    log.error(
                        "arecord (pid %d) is still running %g s after SIGKILL; leaving it behind",
                        proc.pid,
                        limit,
                    )
        finally:
            _signal(proc, signal.SIGKILL)  # when cancelled halfway; a no-op once it is gone
            for task in (drain, stderr):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return ended

    async def _read(self, proc: asyncio.subprocess.Process, sink: Sink) -> bool:
        """Read PCM until EOF (False) or a stall (True)."""
        assert proc.stdout is not None
        first = True
        while True:
            try:
                async with asyncio.timeout(self.settings.stall_timeout):
                    data = await proc.stdout.read(self.read_size)
            except TimeoutError:
                self.counters["stalls"] += 1
                return True
            if not data:
                return False
            block = LiveBlock(data, time.monotonic(), time.time(), len(data) < self.read_size)
            if first:
                first = False
                self.health("online", None)
            await sink(block)

    async def _stderr(self, proc: asyncio.subprocess.Process, tail: deque[str]) -> None:
        """Log what arecord says (never audio: that is on stdout); count overruns."""
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").strip()[:200]
            if not line:
                continue
            if "overrun" in line:
                self.counters["overruns"] += 1
                log.warning("arecord: %s", line)
            else:
                tail.append(line)
                log.info("arecord: %s", line)


def _signal(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    """Signal arecord and whatever it started (it leads its own process group), if alive."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


async def _exited(proc: asyncio.subprocess.Process, limit_s: float) -> bool:
    """Whether arecord exits (and its pipes close) within `limit_s`."""
    try:
        async with asyncio.timeout(limit_s):
            await proc.wait()
    except TimeoutError:
        return False
    return True


async def _discard(stream: asyncio.StreamReader) -> None:
    """Read a pipe to its end, throwing the data away (leftover PCM is not kept)."""
    while await stream.read(1 << 16):
        pass


class SyntheticSource:
    """Generated demo audio at real rate, through the same clocked path as a microphone."""

    paced_by_outbox = False

    def __init__(self, settings: CaptureSettings, health: Health, block_seconds: float = 0.1):
        self.settings = settings
        self.health = health
        self.counters: Counter[str] = Counter()
        self.block_frames = max(1, round(settings.input_rate * block_seconds))

    async def run(self, sink: Sink) -> None:
        """Produce audio until cancelled."""
        rate = self.settings.input_rate
        t0 = time.monotonic()
        frame = 0
        self.health("online", "synthetic demo audio")
        while True:
            frame += self.block_frames
            await asyncio.sleep(max(0.0, t0 + frame / rate - time.monotonic()))
            pcm = synthetic_pcm(
                frame - self.block_frames, self.block_frames, rate, self.settings.channels
            )
            await sink(LiveBlock(pcm, time.monotonic(), time.time()))
