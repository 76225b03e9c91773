"""Chunks per second and peak memory of each inference backend, next to the prototype's path.

    .venv/bin/python -m benchmarks.inference_bench            # quick: a few batches each
    .venv/bin/python -m benchmarks.inference_bench --full     # longer runs, more variants
    .venv/bin/python -m benchmarks.inference_bench --only yamnet-b32,prototype

The AST figures use a full-size AST (ASTConfig's defaults: 12 layers, 768 wide, 1024 x 128
input, 527 labels) with random weights, built here: the cost is that of
MIT/ast-finetuned-audioset-10-10-0.4593, no download needed. It and its ONNX exports (fp32
and int8, for 1024 frames and for 1-second windows of 98 frames) are made once and cached in
`--cache` (default ~/.cache/soundscape/bench; the first run spends a few minutes exporting).
YAMNet is the real int8 model (fetched like the service does).

Each variant runs in its own process (so its peak memory is its own: interpreter, libraries,
model and batch) through what the service does per window: resampling check, features,
model, sigmoid, top-k and `LabelsResult` building (`services.inference.core.classify`), on
1-second windows of 16 kHz audio, with all cores (`threads=0`). Reported per variant:
chunks/s, ms per chunk, peak RSS, speed-up over the prototype path measured in the same run,
and how many sensors sending one 1-second chunk per second one process keeps up with
(floor of chunks/s; decoding a chunk and encoding its result add ~0.01 ms, not included).

The prototype path: transformers fp32, each 1-second chunk padded to 1024 frames, batch 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

LABELS_CSV = Path(__file__).resolve().parents[1] / "shared" / "data" / "audioset_labels.csv"
T0 = 1_764_400_000.0


@dataclass(frozen=True)
class Variant:
    """One configuration to measure."""

    name: str
    backend: str
    batch: int
    model: str = ""  #: "base" (the random full-size AST) or an export folder name
    onnx_file: str = ""
    ast_length: str = "pad"
    quick: bool = True  #: part of the default (quick) run
    note: str = ""


VARIANTS = [
    Variant("prototype", "transformers", 1, "base", note="fp32, pad to 1024, batch 1"),
    Variant("transformers-pad-b8", "transformers", 8, "base", quick=False),
    Variant(
        "transformers-1s-b16",
        "transformers",
        16,
        "base",
        ast_length="window",
        note="true length: 98 frames",
    ),
    Variant(
        "onnx-int8-pad-b1",
        "onnx",
        1,
        "onnx-1024",
        "model_quantized.onnx",
        note="the prototype's ONNX option",
    ),
    Variant("onnx-fp32-pad-b1", "onnx", 1, "onnx-1024", "model.onnx", quick=False),
    Variant("onnx-fp32-1s-b16", "onnx", 16, "onnx-98", "model.onnx", ast_length="window"),
    Variant("onnx-int8-1s-b16", "onnx", 16, "onnx-98", "model_quantized.onnx", ast_length="window"),
    Variant(
        "onnx-int8-1s-b1",
        "onnx",
        1,
        "onnx-98",
        "model_quantized.onnx",
        ast_length="window",
        quick=False,
    ),
    Variant("yamnet-b1", "yamnet", 1, quick=False),
    Variant("yamnet-b32", "yamnet", 32),
]


# --- models --------------------------------------------------------------------------------
def audioset_labels() -> list[str]:
    """The 527 AudioSet display names in AST order."""
    with LABELS_CSV.open(newline="", encoding="utf-8") as fh:
        return [row["display_name"] for row in csv.DictReader(fh)]


def build_base(folder: Path) -> Path:
    """A full-size AST (default ASTConfig, 527 labels) with random weights, saved once."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    from services.inference.backends.common import quiet_third_party

    labels = audioset_labels()
    torch.manual_seed(0)
    config = ASTConfig(  # type: ignore[no-untyped-call]
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    print(f"building a full-size random AST in {folder} ...", flush=True)
    model = ASTForAudioClassification(config)
    model.eval()  # type: ignore[no-untyped-call]
    model.save_pretrained(folder)
    with quiet_third_party():
        ASTFeatureExtractor().save_pretrained(folder)  # type: ignore[no-untyped-call]
    return folder


def prepare(cache: Path, variants: list[Variant]) -> None:
    """Build the base model and the exports the chosen variants need (cached)."""
    needs = {v.model for v in variants if v.backend != "yamnet"}
    if not needs:
        return
    base = build_base(cache / "ast-base-random")
    from services.inference.export import export

    for name, seconds in (("onnx-1024", None), ("onnx-98", 1.0)):
        out = cache / name
        if name in needs and not (out / "onnx" / "model_quantized.onnx").is_file():
            print(f"exporting {name} (once; cached in {out}) ...", flush=True)
            began = time.perf_counter()
            export(str(base), out, quantize=True, window_seconds=seconds, offline=True)
            print(f"  done in {time.perf_counter() - began:.0f} s", flush=True)


# --- one variant, in its own process ------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def test_windows(n: int) -> list[Any]:
    """`n` different 1-second windows: noise and tones."""
    from services.inference.core import Window

    rng = np.random.default_rng(1)
    t = np.arange(16_000) / 16_000
    out = []
    for i in range(n):
        x = 0.05 * rng.standard_normal(16_000) + 0.2 * np.sin(2 * np.pi * (300 + 97 * i) * t)
        out.append(Window("bench", i, T0 + i, 16_000, x.astype(np.float32)))
    return out


def run_one(variant: Variant, cache: Path, min_batches: int, min_seconds: float) -> dict[str, Any]:
    """Measure one variant in this process; a dict of figures."""
    from services.inference.backends import limit_blas_threads, load_classifier
    from services.inference.core import LabelOptions, classify
    from services.inference.settings import InferenceSettings

    limit_blas_threads()  # as the service does
    began = time.perf_counter()
    model = {"base": cache / "ast-base-random"}.get(variant.model, cache / variant.model)
    settings = InferenceSettings(
        backend=variant.backend,
        model=str(model),
        onnx_file=variant.onnx_file or "model_quantized.onnx",
        ast_length=variant.ast_length,
        offline=True,
        threads=0,
        node_id="bench",
    )
    classifier = load_classifier(settings)
    load_s = time.perf_counter() - began
    options = LabelOptions(classifier.model_id, top_k=5)
    batch = test_windows(variant.batch)
    classify(classifier, batch, options)  # warm-up
    done, spent, batches = 0, 0.0, 0
    # At least `min_batches` timed batches, and more until `min_seconds` have been timed.
    while batches < min_batches or spent < min_seconds:
        t = time.perf_counter()
        results = classify(classifier, batch, options)
        spent += time.perf_counter() - t
        done += len(results)
        batches += 1
        if spent > 2 * min_seconds:  # slow variants: a couple of batches say enough
            break
    return {
        **asdict(variant),
        "chunks_per_s": done / spent,
        "ms_per_chunk": 1000 * spent / done,
        "peak_rss_mb": peak_rss_mb(),
        "load_s": load_s,
        "batches": batches,
        "threads": os.cpu_count(),
    }


# --- the report ---------------------------------------------------------------------------
def report(rows: list[dict[str, Any]]) -> str:
    """The table, speed-ups against the prototype row, and the goals."""
    base = next((r for r in rows if r["name"] == "prototype"), None)
    lines = [
        f"{'variant':<22} {'chunks/s':>9} {'ms/chunk':>9} {'peak MiB':>9} {'x proto':>8} "
        f"{'sensors':>8}  note",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:<22} failed: {r['error']}")
            continue
        speedup = r["chunks_per_s"] / base["chunks_per_s"] if base else math.nan
        lines.append(
            f"{r['name']:<22} {r['chunks_per_s']:>9.2f} {r['ms_per_chunk']:>9.1f} "
            f"{r['peak_rss_mb']:>9.0f} {speedup:>8.1f} {math.floor(r['chunks_per_s']):>8d}  "
            f"{r['note']}"
        )
    ok = [r for r in rows if "error" not in r]
    ast = [r for r in ok if r["backend"] != "yamnet" and r["name"] != "prototype"]
    yam = [r for r in ok if r["backend"] == "yamnet"]
    if base and ast:
        best = max(ast, key=lambda r: r["chunks_per_s"])
        verdict = (
            "met"
            if best["chunks_per_s"] >= 20 and best["chunks_per_s"] >= 25 * base["chunks_per_s"]
            else "NOT met"
        )
        lines.append(
            f"AST goal (>= 20 sensors and >= 25x the prototype): {verdict} by {best['name']}: "
            f"{math.floor(best['chunks_per_s'])} sensors, "
            f"{best['chunks_per_s'] / base['chunks_per_s']:.0f}x"
        )
    if yam:
        best = max(yam, key=lambda r: r["chunks_per_s"])
        verdict = "met" if best["chunks_per_s"] >= 500 else "NOT met"
        lines.append(
            f"YAMNet goal (>= 500 sensors): {verdict} by {best['name']}: "
            f"{math.floor(best['chunks_per_s'])} sensors"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Prepare models, run every variant in a child process, print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inference_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--full", action="store_true", help="more variants, longer runs")
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "soundscape" / "bench",
        help="folder for the built and exported models",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--min-batches", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--min-seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:  # child: one variant, figures as JSON on the last line
        import logging

        logging.basicConfig(level=logging.WARNING)
        variant = next(v for v in VARIANTS if v.name == args.one)
        row = run_one(variant, args.cache, args.min_batches, args.min_seconds)
        print(json.dumps(row))
        return 0
    chosen = [
        v
        for v in VARIANTS
        if (v.name in args.only.split(",") if args.only else (args.full or v.quick))
    ]
    min_batches, min_seconds = (5, 15.0) if args.full else (3, 3.0)
    args.cache.mkdir(parents=True, exist_ok=True)
    prepare(args.cache, chosen)
    rows: list[dict[str, Any]] = []
    for variant in chosen:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.inference_bench",
            "--one",
            variant.name,
            "--cache",
            str(args.cache),
            "--min-batches",
            str(min_batches),
            "--min-seconds",
            str(min_seconds),
        ]
        print(f"measuring {variant.name} ...", flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            rows.append({**asdict(variant), "error": tail[0] if tail else done.returncode})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"1-second chunks of 16 kHz audio, {os.cpu_count()} CPU cores, all threads; "
        f"load average now {load} (other processes slow every row alike)"
    )
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
