"""CPU time per chunk and per device-hour of the levels measurement: the per-chunk path before
batching beside the batched one (batches of 1, 8 and 32 devices' chunks), and the prototype's
SPL alone, all in the same run.

    .venv/bin/python -m benchmarks.levels_bench [--devices 32] [--minutes 2] [--repeat 3]

Generates `--minutes` of city-like audio (noise, a hum, passing tones, bursts) for each of
`--devices` devices (each its own stretch), cut into 1-second chunks at 16 kHz as capture
publishes them, interleaved as a fleet's chunks arrive (one of each device per second), and
measures process CPU time (best of `--repeat`) for:

- baseline: the prototype's per-second SPL, `mean_dB(wav2dBSPL(x, 25, -18, 1.25))` alone;
- decode: msgpack + validation of the audio chunks (what every subscriber pays);
- per-chunk before: the levels arithmetic as it was before batching
  (tests/levels/per_chunk_reference.py: sosfilt, FIR by np.convolve, lfilter, maad Leq,
  np.fft bands), with the same summary statistics and indices buffering, one chunk at a time;
- batched 1 / 8 / 32: `LevelsCore.process_all` on that many waiting chunks at a time (the
  service hands it up to MEASURE_BATCH = 32), everything the service measures per chunk;
- indices: scikit-maad indices (ACI, ADI, AEI, BI, NDSI, Ht, Hf, events) on 60 s windows.

Like the service, the benchmark first asks malloc to keep freed memory
(services/levels/memory.py). Then, for that, it measures batches of 32 in two fresh processes
(glibc adapts its thresholds to what a process freed before, so only a fresh one shows its
defaults): one with malloc's defaults, one keeping freed memory, each with its user and
system CPU and its page faults per chunk. The machine may be shared: the load average is
printed before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from maad.spl import wav2dBSPL
from maad.util import mean_dB

from services.levels.core import LevelsCore
from services.levels.indices import IndicesJob, IndicesWindows, compute
from services.levels.memory import keep_freed_memory
from services.levels.summary import SummaryTracker
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk, Calibration
from tests.levels.per_chunk_reference import OldFilters, old_measure

T0 = 1_764_399_960.0


def city_audio(seconds: int, rate: int, seed: int = 0) -> np.ndarray:
    """Noise with a mains hum, passing tones and occasional bursts, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * rate) / rate
    x = 0.02 * rng.standard_normal(len(t))
    x += 0.01 * np.sin(2 * np.pi * 50 * t)
    x += 0.05 * np.sin(2 * np.pi * (400 + 300 * np.sin(2 * np.pi * t / 30)) * t)
    for start in rng.integers(0, len(t) - rate, size=max(1, seconds // 20)):
        x[start : start + rate // 4] += 0.3 * rng.standard_normal(rate // 4)
    return np.clip(x, -1, 1).astype(np.float32)


def best_cpu(fn: Callable[[], object], repeat: int) -> float:
    """Smallest process CPU time of `repeat` runs, seconds."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=32, help="devices in the fleet")
    parser.add_argument("--minutes", type=int, default=2, help="audio per device and run")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate, Hz")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts")
    parser.add_argument("--malloc-probe", choices=["default", "keep"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.malloc_probe:
        return malloc_probe(args.malloc_probe == "keep", args.devices, args.rate)
    kept = keep_freed_memory()
    seconds, rate, devices = args.minutes * 60, args.rate, args.devices
    print(f"before: {load()} ({os.cpu_count()} CPUs, possibly shared with other work)")
    print("freed memory kept for reuse, as in the service" if kept else "malloc's defaults")

    audio = [city_audio(seconds, rate, seed=d) for d in range(devices)]
    chunks = [
        AudioChunk.from_float(f"dev-{d:03d}", s, T0 + s, rate, audio[d][s * rate : (s + 1) * rate])
        for s in range(seconds)
        for d in range(devices)
    ]
    payloads = [c.encode() for c in chunks]
    monos = [c.mono() for c in chunks]

    def baseline() -> None:
        with np.errstate(divide="ignore"):
            for x in monos:
                mean_dB(wav2dBSPL(x, gain=25, sensitivity=-18, Vadc=1.25))

    def decode() -> None:
        for p in payloads:
            AudioChunk.decode(p)

    def per_chunk_before() -> None:
        cal = Calibration()
        filters: dict[str, OldFilters] = {}
        summaries: dict[str, SummaryTracker] = {}
        windows: dict[str, IndicesWindows] = {}
        for c in chunks:
            if c.device not in filters:
                filters[c.device] = OldFilters(rate)
                summaries[c.device] = SummaryTracker(c.device, 60.0)
                windows[c.device] = IndicesWindows(c.device, 60.0, 0.5)
            _, _, a2, fast = old_measure(c, cal, filters[c.device])
            summaries[c.device].add(c.start, rate, c.seq, a2, fast, cal, True)
            windows[c.device].add(c.start, rate, c.seq, c.mono())

    jobs: list[IndicesJob] = []

    def batched(size: int) -> Callable[[], None]:
        def run() -> None:
            core = LevelsCore(DeviceRegistry(), summary_seconds=60, indices_seconds=60)
            jobs.clear()
            for first in range(0, len(chunks), size):
                for out in core.process_all([(c, 0.0) for c in chunks[first : first + size]]):
                    assert out is not None and not isinstance(out, Exception)
                    jobs.extend(out.jobs)

        return run

    figures = {
        "baseline (prototype wav2dBSPL + mean_dB)": best_cpu(baseline, args.repeat),
        "decode (msgpack + validation)": best_cpu(decode, args.repeat),
        "levels, per chunk as before batching": best_cpu(per_chunk_before, args.repeat),
        "levels, batched 1 (LevelsCore.process_all)": best_cpu(batched(1), args.repeat),
        "levels, batched 8": best_cpu(batched(8), args.repeat),
        "levels, batched 32 (the service's most)": best_cpu(batched(32), args.repeat),
    }
    indices_jobs = list(jobs)
    figures[f"indices ({len(indices_jobs)} windows of 60 s)"] = best_cpu(
        lambda: [compute(j) for j in indices_jobs], args.repeat
    )
    n = len(chunks)
    print(
        f"{devices} devices x {args.minutes} min of audio at {rate} Hz ({n} chunks of 1 s), "
        f"best of {args.repeat} runs"
    )
    print(f"{'':44s} {'CPU ms / chunk':>15s} {'CPU s / device-hour':>20s} {'share of a core':>16s}")
    for name, cpu in figures.items():
        per_hour = cpu * 3600 / (seconds * devices)
        print(f"{name:44s} {cpu / n * 1e3:15.3f} {per_hour:20.2f} {per_hour / 3600:16.3%}")
    before = figures["levels, per chunk as before batching"]
    for size in (1, 8, 32):
        key = next(k for k in figures if k.startswith(f"levels, batched {size}"))
        print(f"batched {size:2d}: {before / figures[key]:.2f}x faster than per chunk before")
    for mode in ("default", "keep"):
        probe = [sys.executable, "-m", "benchmarks.levels_bench", "--malloc-probe", mode]
        subprocess.run([*probe, "--devices", str(devices), "--rate", str(rate)], check=True)
    print(f"after: {load()}")
    return 0


def malloc_probe(keep: bool, devices: int, rate: int, seconds: int = 15) -> int:
    """In this fresh process: batches of 32, best of 3, user and system CPU and page faults."""
    if keep:
        keep_freed_memory()
    chunks = [
        AudioChunk.from_float(f"dev-{d:03d}", s, T0 + s, rate, x[s * rate : (s + 1) * rate])
        for s in range(seconds)
        for d, x in enumerate([city_audio(seconds, rate, seed=d) for d in range(devices)])
    ]
    best: tuple[float, float, float] | None = None
    for _ in range(3):
        core = LevelsCore(DeviceRegistry(), summary_seconds=60, indices_seconds=60)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        for first in range(0, len(chunks), 32):
            core.process_all([(c, 0.0) for c in chunks[first : first + 32]])
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        n = len(chunks)
        run = (
            (r1.ru_utime - r0.ru_utime) / n * 1e3,
            (r1.ru_stime - r0.ru_stime) / n * 1e3,
            (r1.ru_minflt - r0.ru_minflt) / n,
        )
        if best is None or sum(run[:2]) < sum(best[:2]):
            best = run
    assert best is not None
    name = "freed memory kept" if keep else "malloc's defaults"
    print(
        f"batched 32, fresh process, {name:18s}: user {best[0]:.3f} + system {best[1]:.3f} "
        f"ms per chunk, {best[2]:.0f} page faults per chunk"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
