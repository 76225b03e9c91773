"""Privacy: capture, run as the real service, writes no audio anywhere it could write.

The service runs with its working directory and TMPDIR pointed at fresh folders; afterwards
those hold no new file at all, and no file modified during the run, there or in the system
temp folder, contains any of the audio that was published. Audio is never retained.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from shared.settings import MqttSettings
from tests.capture.helpers import fake_arecord, listening

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def files_touched_since(folder: Path, since: float) -> list[Path]:
    found = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since:
                    found.append(path)
            except OSError:
                continue
    return found


def holding(paths: list[Path], needles: list[bytes]) -> list[Path]:
    bad = []
    for path in paths:
        try:
            if path.stat().st_size > 200_000_000:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if any(n in data for n in needles):
            bad.append(path)
    return bad


async def run_service(
    args: list[str], cwd: Path, env: dict[str, str], stop_when: Awaitable[object] | None
) -> tuple[int | None, str]:
    """Run capture as a process until it exits, or (with `stop_when`) until that is done and
    a SIGTERM stopped it; its exit status and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.capture",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(60):
            output = asyncio.ensure_future(proc.communicate())
            if stop_when is not None:
                ready = asyncio.ensure_future(stop_when)
                await asyncio.wait({ready, output}, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                proc.send_signal(signal.SIGTERM)
            out, _ = await output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(errors="replace")


async def test_no_audio_reaches_the_disk(tmp_path: Path, mqtt_settings: MqttSettings) -> None:
    work, tmp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    sd = tmp_path / "sd"
    sd.mkdir()
    recording = np.random.default_rng(7).integers(-30000, 30000, 16000 * 3, dtype=np.int16)
    sf.write(sd / "20250524_103000.WAV", recording, 16000, subtype="PCM_16")
    env = dict(os.environ)
    env.update(
        TMPDIR=str(tmp),
        TEMP=str(tmp),
        TMP=str(tmp),
        PYTHONPATH=str(ROOT),
        SOUNDSCAPE_MQTT_HOST="127.0.0.1",
        SOUNDSCAPE_MQTT_PORT=str(mqtt_settings.port),
        SOUNDSCAPE_MQTT_TOPIC_PREFIX=mqtt_settings.topic_prefix,
    )
    before = {**snapshot(work), **snapshot(tmp)}
    since = time.time() - 1
    async with listening(mqtt_settings, "priv") as got:
        arecord = fake_arecord("--signal", "hash")
        live = ["--device-id", "priv", "--arecord", arecord, "--chunk-seconds", "0.5"]
        # its audio on the broker shows the service running, its signal handlers set
        seen = got.wait(lambda g: len(g.chunks) >= 3, limit_s=50)
        code, log = await run_service(live, work, env, stop_when=seen)
        assert code == 0, log
        n_live = len(got.chunks)
        replay = ["--device-id", "priv", "--source", "file", "--path", str(sd), "--fast"]
        code, log = await run_service(replay, work, env, stop_when=None)
        assert code == 0, log
        await got.wait(lambda g: len(g.chunks) >= n_live + 3)
    assert n_live >= 2
    assert {**snapshot(work), **snapshot(tmp)} == before, "capture wrote files"
    # No trace of the published audio in anything written meanwhile: here, /tmp, the repo.
    needles = [c.pcm[1000:1256] for c in got.chunks if len(c.pcm) > 1256]
    assert len(needles) >= 5
    touched = [
        p
        for folder in {tmp_path, Path(tempfile.gettempdir()), Path("/tmp"), ROOT}
        for p in files_touched_since(folder, since)
        if folder != ROOT or ".git" not in p.parts
    ]
    touched = [p for p in touched if p.parent != sd]  # the recording replayed
    assert holding(touched, needles) == []
    # audio is never retained: a fresh subscriber gets no audio
    async with listening(mqtt_settings, "priv") as late:
        await asyncio.sleep(0.5)
    assert late.chunks == []
