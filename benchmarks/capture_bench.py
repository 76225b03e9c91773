"""CPU time of capture per device-hour of audio, next to the prototype's per-second path.

    .venv/bin/python -m benchmarks.capture_bench [--minutes 60] [--repeat 3]

Feeds `--minutes` of PCM, in blocks the size arecord writes (one 125 ms ALSA period), as fast
as possible through what capture does to every block: sample clock, frame carry, soxr
resampling (when the rates differ), chunking into 1-second chunks, AudioChunk validation and
msgpack encoding (what `bus.publish` pays). Figures are process CPU seconds per hour of one
device's audio, and the share of one core that is (best of `--repeat` runs):

- capture 16 kHz: a 16 kHz microphone published at 16 kHz;
- capture 192 kHz -> 16 kHz: an AudioMoth at 192 kHz, streamed through soxr (HQ) to 16 kHz;
- prototype per-second path: what the original prototype spent per second of audio besides
  the model, measured here without a microphone: start one process (`true`, a lower bound
  for `arecord -d 1`), write the second as a WAV (in memory here; it used a temp file) and
  decode it again with soundfile (librosa's loader);
- prototype path at 192 kHz: the same, plus resampling each 1-s file to 16 kHz on its own
  (librosa.load's default `soxr_hq`).

With a broker on 127.0.0.1:1883 (or SOUNDSCAPE_MQTT_HOST/PORT), the whole service is also
measured end to end in real time for `--live-seconds`: `python -m services.capture` reading
the stand-in arecord (tests/capture/fake_arecord.py) through its pipe and publishing to the
broker; the figure is the service process's own CPU (not the stand-in's), after start-up.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from services.capture.core import CapturePipeline, LiveBlock

T0 = 1_764_400_000.0
PERIOD_S = 0.125


def test_signal(seconds: int, rate: int) -> bytes:
    """Noise and a gliding tone, S16_LE."""
    rng = np.random.default_rng(0)
    t = np.arange(seconds * rate) / rate
    x = 0.05 * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * (500 + 200 * t) * t)
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


def capture_path(rate_in: int, minutes: float) -> float:
    """CPU seconds to push `minutes` of audio at `rate_in` through capture (publishing 16 kHz)."""
    loop_s = 10
    pcm = test_signal(loop_s, rate_in)
    block = int(rate_in * PERIOD_S) * 2
    blocks = [pcm[i : i + block] for i in range(0, len(pcm), block)]
    pipe = CapturePipeline("bench", 16000, capture_rate=rate_in)
    total = int(minutes * 60 / PERIOD_S)
    start = time.process_time()
    for i in range(total):
        t = (i + 1) * PERIOD_S
        for chunk in pipe.handle(LiveBlock(blocks[i % len(blocks)], t, T0 + t)):
            chunk.encode()
    for chunk in pipe.finish():
        chunk.encode()
    used = time.process_time() - start
    assert pipe.counters["gaps"] == 0 and pipe.counters["chunks"] >= minutes * 60
    return used


def prototype_path(rate_in: int, seconds: int) -> float:
    """CPU seconds (this process and its children) for `seconds` of the per-second path."""
    pcm = np.frombuffer(test_signal(1, rate_in), "<i2")

    def one_second() -> None:
        subprocess.run(["true"], check=True)
        wav = io.BytesIO()
        sf.write(wav, pcm, rate_in, format="WAV", subtype="PCM_16")
        wav.seek(0)
        data, sr = sf.read(wav, dtype="float32")
        if sr != 16000:
            data = soxr.resample(data, sr, 16000, quality="HQ")

    before = os.times()
    for _ in range(seconds):
        one_second()
    after = os.times()
    return (
        after.user
        - before.user
        + after.system
        - before.system
        + after.children_user
        - before.children_user
        + after.children_system
        - before.children_system
    )


def process_cpu(pid: int) -> float:
    """CPU seconds a process has used itself (not its children), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    ticks_per_s = int(os.sysconf("SC_CLK_TCK"))
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def live_service(rate_in: int, seconds: float) -> float | None:
    """CPU seconds per hour of the real service at real rate; None without a broker."""
    host = os.environ.get("SOUNDSCAPE_MQTT_HOST", "127.0.0.1")
    port = int(os.environ.get("SOUNDSCAPE_MQTT_PORT", "1883"))
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return None
    stand_in = Path(__file__).resolve().parents[1] / "tests" / "capture" / "fake_arecord.py"
    arecord = shlex.join([sys.executable, str(stand_in), "--period", str(PERIOD_S)])
    env = dict(os.environ, SOUNDSCAPE_MQTT_TOPIC_PREFIX=f"bench-{uuid.uuid4().hex[:8]}")
    cmd = [
        sys.executable,
        "-m",
        "services.capture",
        "--device-id",
        "bench",
        "--arecord",
        arecord,
        "--capture-rate",
        str(rate_in),
        "--rate",
        "16000",
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # imports and start-up are not what a device-hour costs
        before = process_cpu(proc.pid)
        time.sleep(seconds)
        used = process_cpu(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(15)
    return used / seconds * 3600


def best(fn: Callable[[], float], repeat: int) -> float:
    """Smallest of `repeat` measurements."""
    return min(fn() for _ in range(repeat))


def row(name: str, cpu_per_hour: float) -> str:
    return f"{name:<50} {cpu_per_hour:9.2f} s {100 * cpu_per_hour / 3600:8.3f} %"


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="audio per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts")
    parser.add_argument(
        "--prototype-seconds", type=int, default=600, help="seconds of the prototype path timed"
    )
    parser.add_argument(
        "--live-seconds", type=float, default=20.0, help="end-to-end run per rate (0: skip)"
    )
    args = parser.parse_args(argv)
    per_hour = 60.0 / args.minutes
    proto_scale = 3600.0 / args.prototype_seconds
    print(f"capture CPU per device-hour ({args.minutes:g} min measured, best of {args.repeat})")
    print(f"{'path':<50} {'CPU/hour':>11} {'of 1 core':>10}")
    results = [
        (
            "prototype per-second path, 16 kHz (baseline)",
            best(lambda: prototype_path(16000, args.prototype_seconds), args.repeat) * proto_scale,
        ),
        ("capture 16 kHz", best(lambda: capture_path(16000, args.minutes), args.repeat) * per_hour),
        (
            "prototype per-second path, 192 kHz (baseline)",
            best(lambda: prototype_path(192000, args.prototype_seconds), args.repeat) * proto_scale,
        ),
        (
            "capture 192 kHz -> 16 kHz (soxr stream)",
            best(lambda: capture_path(192000, args.minutes), args.repeat) * per_hour,
        ),
    ]
    for name, value in results:
        print(row(name, value))
    if args.live_seconds > 0:
        for rate_in in (16000, 192000):
            name = f"service end to end, {rate_in // 1000} kHz -> 16 kHz, real time"
            value = live_service(rate_in, args.live_seconds)
            print(row(name, value) if value is not None else f"{name:<50} (no broker)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
