"""CPU time per device-hour of the levels service, next to the prototype's SPL alone.

    .venv/bin/python -m benchmarks.levels_bench [--minutes 10] [--rate 16000] [--repeat 3]

Generates `--minutes` of city-like audio (noise, a hum, passing tones, bursts), cut into
1-second chunks as capture publishes them, and measures process CPU time (best of `--repeat`)
for:

- baseline: the prototype's per-second SPL, `mean_dB(wav2dBSPL(x, 25, -18, 1.25))` alone;
- decode: msgpack + validation of the audio chunks (what every subscriber pays);
- levels: everything the service measures per chunk (prototype Leq, A/C weighting, Fast
  weighting, peak, dBFS, 1/3-octave bands, summary statistics, buffering for indices);
- indices: scikit-maad indices (ACI, ADI, AEI, BI, NDSI, Ht, Hf, events) on 60 s windows.

Figures are CPU seconds per hour of one device's audio, and the share of one core that is.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from maad.spl import wav2dBSPL
from maad.util import mean_dB

from services.levels.core import LevelsCore
from services.levels.indices import IndicesJob, compute
from shared.devices import DeviceRegistry
from shared.messages import AudioChunk

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


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="audio to process per run")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate, Hz")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts")
    args = parser.parse_args(argv)
    seconds, rate = args.minutes * 60, args.rate

    audio = city_audio(seconds, rate)
    chunks = [
        AudioChunk.from_float("bench", s, T0 + s, rate, audio[s * rate : (s + 1) * rate])
        for s in range(seconds)
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

    jobs: list[IndicesJob] = []

    def levels() -> None:
        core = LevelsCore(DeviceRegistry(), summary_seconds=60, indices_seconds=60)
        jobs.clear()
        for c in chunks:
            jobs.extend(core.process(c).jobs)

    def indices() -> None:
        for job in jobs:
            compute(job)

    figures = {
        "baseline (prototype wav2dBSPL + mean_dB)": best_cpu(baseline, args.repeat),
        "decode (msgpack + validation)": best_cpu(decode, args.repeat),
        "levels (all per-chunk measurements)": best_cpu(levels, args.repeat),
        f"indices ({len(jobs)} windows of 60 s)": best_cpu(indices, args.repeat),
    }
    scale = 3600 / seconds
    print(f"{args.minutes} min of audio at {rate} Hz, 1 s chunks, best of {args.repeat} runs")
    print(f"{'':44s} {'CPU s / device-hour':>20s} {'share of a core':>16s}")
    for name, cpu in figures.items():
        per_hour = cpu * scale
        print(f"{name:44s} {per_hour:20.2f} {per_hour / 3600:16.3%}")
    base = figures["baseline (prototype wav2dBSPL + mean_dB)"]
    lv = figures["levels (all per-chunk measurements)"]
    print(f"levels cost {lv / base:.1f}x the prototype's SPL alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
