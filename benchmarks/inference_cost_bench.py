"""CPU per window of what inference does with a chunk, the old path and the new, same run.

    .venv/bin/python -m benchmarks.inference_cost_bench [--devices 100] [--seconds 8]
        [--batch 8] [--new-batch 32] [--rounds 5] [--threads 1] [--dir YAMNET_DIR]

Audio: `--devices` simulated sensors' 1 s chunks of the generated street scene (each sensor
at its own offset, as `soundscape simulate` sends them), encoded as on the wire. Each round
runs, on the same chunks, both paths a window goes through in the service, timed in CPU
seconds of this process (`time.process_time`: ONNX Runtime's threads included):

- decode (`AudioChunk.from_mqtt`) and windowing (`WindowAssembler`): the same code in both
  (shared/ decodes; the assembler is the service's own);
- the old batch path, inlined here as it was before this benchmark's commit (features a
  window at a time, `np.argsort` and one `top_k` per window, batches of `--batch`), and the
  new one (`services.inference.core.classify`: every window of a batch in one feature pass,
  one `argpartition` over the batch, batches of `--new-batch`);
- encoding the results as the bus does (msgpack), the same code in both.

Figures are the best round (least disturbed by other work), in ms per window, with the
model's own share (ONNX Runtime alone on the same patches) and the load average before and
after: the development machine is shared, so the absolute figures move with its load; the
old/new pair is measured back to back. It also checks that both paths give every window the
same labels and scores within 1e-5, and says by how much they differ.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from services.inference import yamnet_features as features
from services.inference.backends import limit_blas_threads
from services.inference.backends.yamnet import YamNet
from services.inference.core import (
    LabelOptions,
    Window,
    WindowAssembler,
    classify,
    resample,
    speech_indices,
)
from services.inference.settings import InferenceSettings, default_yamnet_dir
from shared.messages import AudioChunk, LabelScore, LabelsResult

RATE = 16_000
PREFIX = "bench"
T = TypeVar("T")


# --- the old path, as it was (services/inference at a9d177f) ------------------------------
def old_patches(samples: np.ndarray) -> np.ndarray:
    """One window's patches, computed alone (the old `yamnet_features.patches`)."""
    x = np.asarray(samples, dtype=np.float32)
    frames = 1 + (len(x) - features.WINDOW) // features.HOP
    index = np.arange(features.WINDOW)[None, :] + features.HOP * np.arange(frames)[:, None]
    magnitude = np.abs(np.fft.rfft(x[index] * features._hann(), features.FFT, axis=1))
    spec = np.log(magnitude.astype(np.float32) @ features.mel_matrix() + features.LOG_OFFSET)
    starts = features.patch_starts(len(spec))
    return np.stack([spec[s : s + features.PATCH_FRAMES] for s in starts])[:, None].astype(
        np.float32
    )


def old_top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[LabelScore]:
    """The old `core.top_k`: a full stable sort of one row."""
    row = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(row)):
        raise ValueError("non-finite score from the model")
    order = np.argsort(-row, kind="stable")[: max(1, min(k, len(row)))]
    return [LabelScore(label=labels[i], score=float(np.clip(row[i], 0.0, 1.0))) for i in order]


def old_classify(
    model: YamNet, windows: Sequence[Window], options: LabelOptions
) -> list[LabelsResult]:
    """The old `core.classify` with the old `YamNet.scores`."""
    began = time.perf_counter()
    audio = [resample(w.samples, w.rate, model.sample_rate) for w in windows]
    per_window = [old_patches(a) for a in audio]
    scores = model.patch_scores(np.concatenate(per_window))
    bounds = np.cumsum([0, *[len(p) for p in per_window]])
    scores = np.stack([scores[a:b].max(axis=0) for a, b in itertools.pairwise(bounds)])
    ms = (time.perf_counter() - began) * 1000.0 / len(windows)
    idx = list(options.speech_indices)
    return [
        LabelsResult(
            device=w.device,
            seq=w.seq,
            start=w.start,
            duration=w.duration,
            model=options.model_id,
            labels=old_top_k(row, model.labels, options.top_k),
            speech_present=bool(np.max(row[idx]) >= options.speech_threshold) if idx else None,
            inference_ms=ms,
        )
        for w, row in zip(windows, scores, strict=True)
    ]


# --- measuring -----------------------------------------------------------------------------
def cpu(fn: Callable[[], T]) -> tuple[float, T]:
    """CPU seconds of this process spent in `fn()`, and its value."""
    began = time.process_time()
    out = fn()
    return time.process_time() - began, out


def payloads(devices: int, seconds: int) -> list[tuple[str, bytes]]:
    """Every sensor's chunks, interleaved second by second, as (topic, msgpack payload)."""
    from services.demo_audio import street_scene

    scene = street_scene(30)
    out = []
    for k in range(seconds):
        for d in range(devices):
            offset = ((d * 7 + k) % 29) * RATE
            chunk = AudioChunk.from_float(
                f"sim-{d:04d}", k, 1.7e9 + k, RATE, scene[offset : offset + RATE]
            )
            out.append((chunk.topic(PREFIX), chunk.encode()))
    return out


def batches(windows: list[Window], size: int) -> list[list[Window]]:
    """The windows in batches of `size`, in order."""
    return [windows[i : i + size] for i in range(0, len(windows), size)]


def one_round(
    model: YamNet,
    options: LabelOptions,
    wire: list[tuple[str, bytes]],
    old_batch: int,
    new_batch: int,
) -> tuple[dict[str, float], list[LabelsResult], list[LabelsResult]]:
    """CPU seconds of each step over all the chunks, and the old and new paths' results."""
    times: dict[str, float] = {}
    times["decode (shared.messages)"], chunks = cpu(
        lambda: [AudioChunk.from_mqtt(PREFIX, tp, pl, "application/msgpack") for tp, pl in wire]
    )
    assembler = WindowAssembler(1.0)
    times["windowing"], windows = cpu(lambda: [w for c in chunks for w in assembler.add(c)])
    times[f"classify, old path (batches of {old_batch})"], old = cpu(
        lambda: [r for b in batches(windows, old_batch) for r in old_classify(model, b, options)]
    )
    times[f"classify, new path (batches of {new_batch})"], new = cpu(
        lambda: [r for b in batches(windows, new_batch) for r in classify(model, b, options)]
    )
    times["  of which features, old (a window at a time)"], _ = cpu(
        lambda: [old_patches(w.samples) for w in windows]
    )
    times["  of which features, new (a batch at a time)"], _ = cpu(
        lambda: [
            features.batch_patches([w.samples for w in b]) for b in batches(windows, new_batch)
        ]
    )
    patches = np.concatenate([old_patches(w.samples) for w in windows])
    times["  of which the model (ONNX Runtime, sigmoid)"], _ = cpu(
        lambda: [
            model.patch_scores(patches[i : i + new_batch])
            for i in range(0, len(patches), new_batch)
        ]
    )
    times["encode results (shared.messages, msgpack)"], _ = cpu(lambda: [r.encode() for r in new])
    return times, old, new


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--seconds", type=int, default=8, help="chunks per sensor")
    p.add_argument("--batch", type=int, default=8, help="old path: windows per batch")
    p.add_argument("--new-batch", type=int, default=32, help="new path: windows per batch")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--dir", type=Path, default=default_yamnet_dir())
    args = p.parse_args(argv)
    limit_blas_threads()
    load_before = os.getloadavg()
    model = YamNet.from_folder(args.dir.expanduser(), args.threads)
    settings = InferenceSettings()
    options = LabelOptions(
        model_id=model.model_id,
        top_k=settings.top_k,
        speech_indices=tuple(speech_indices(model.labels, settings.speech_labels)),
        speech_threshold=settings.speech_threshold,
    )
    wire = payloads(args.devices, args.seconds)
    n = len(wire)
    best: dict[str, float] = {}
    old: list[LabelsResult] = []
    new: list[LabelsResult] = []
    for _ in range(args.rounds):
        times, old, new = one_round(model, options, wire, args.batch, args.new_batch)
        for name, seconds in times.items():
            best[name] = min(best.get(name, float("inf")), seconds * 1000.0 / n)
    load_after = os.getloadavg()

    diff = 0.0
    same = len(old) == len(new)
    for a, b in zip(old, new, strict=True):
        same = same and [x.label for x in a.labels] == [x.label for x in b.labels]
        same = same and (a.device, a.seq, a.speech_present) == (b.device, b.seq, b.speech_present)
        diff = max(diff, *(abs(x.score - y.score) for x, y in zip(a.labels, b.labels, strict=True)))
    print(
        f"{n} windows ({args.devices} sensors x {args.seconds} s), YAMNet float, "
        f"{args.threads} ONNX Runtime thread(s), best of {args.rounds} rounds; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"(shared machine)"
    )
    print("| step | CPU ms per window |")
    print("|---|---:|")
    for name, ms in best.items():
        print(f"| {name} | {ms:.3f} |")
    old_ms = best[f"classify, old path (batches of {args.batch})"]
    new_ms = best[f"classify, new path (batches of {args.new_batch})"]
    print(f"classify: old {old_ms:.3f} ms, new {new_ms:.3f} ms per window ({old_ms - new_ms:+.3f})")
    print(
        f"labels identical in every window: {same}; largest score difference {diff:.2e}"
        + ("" if diff <= 1e-5 else " (MORE THAN 1e-5)")
    )
    return 0 if same and diff <= 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
