"""An AST of the real checkpoint's architecture with RANDOM weights, exported int8 for 1 s
windows, and what one window costs in ONNX Runtime on one thread.

    .venv/bin/python -m benchmarks.ast_architecture \\
        [--folder ~/.cache/soundscape/ast-random] [--out ~/.cache/soundscape/ast-random-onnx-1s]

The checkpoint the project names (MIT/ast-finetuned-audioset-10-10-0.4593) cannot be
downloaded here, but what a window costs depends only on its architecture, which is
transformers' default `ASTConfig` (12 layers, 768 wide, 16 x 16 patches at stride 10, 1024 x
128 input) with AudioSet's 527 labels (shared/data/audioset_labels.csv). This builds that
model with random weights in `--folder` (once; a README.md and the model id in config.json
say RANDOM WEIGHTS), exports it with

    soundscape export-onnx --model FOLDER --out OUT --quantize --window-seconds 1 --offline

(once, skipped when OUT has the int8 file), and times the `onnx` backend on 1 s windows:
features (the AST feature extractor), ONNX Runtime int8 with one intra-op thread, sigmoid,
top-5 (`services.inference.core.classify`), batches of `--batch`, best of `--rounds`, CPU
seconds of this process, with the load average. Its labels mean nothing; only its cost is
the real model's. The end-to-end benchmark takes OUT with `--ast-onnx OUT`. Nothing here goes
into git: both folders are under ~/.cache by default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.inference_bench import build_base, test_windows

RANDOM_ID = "random-weights/ast-audioset-architecture"
README = """# RANDOM WEIGHTS: not a trained model

An `ASTForAudioClassification` with the architecture of
MIT/ast-finetuned-audioset-10-10-0.4593 (transformers' default ASTConfig, 527 AudioSet
labels) and **random weights** (torch seed 0), built by benchmarks/ast_architecture.py to
measure what the real model costs per window. Its scores and labels are meaningless: never
use it to label audio.
"""


def build(folder: Path) -> None:
    """The random full-size AST in `folder` (once), labelled as random in two places."""
    build_base(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if config.get("_name_or_path") != RANDOM_ID:
        config["_name_or_path"] = RANDOM_ID
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    (folder / "README.md").write_text(README)


def export(folder: Path, out: Path) -> None:
    """`soundscape export-onnx` for 1 s windows, int8 (once)."""
    if not (out / "onnx" / "model_quantized.onnx").is_file():
        command = [
            sys.executable,
            "-m",
            "services.cli",
            "export-onnx",
            "--model",
            str(folder),
            "--out",
            str(out),
            "--quantize",
            "--window-seconds",
            "1",
            "--offline",
        ]
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    (out / "README.md").write_text(README)


def measure(out: Path, batch: int, rounds: int) -> tuple[float, float, int]:
    """(best CPU ms per window of classify, of the model alone, input frames)."""
    from services.inference.backends import limit_blas_threads
    from services.inference.backends.ast_onnx import OnnxAST
    from services.inference.core import LabelOptions, classify
    from services.inference.settings import InferenceSettings

    limit_blas_threads()
    settings = InferenceSettings(
        backend="onnx", model=str(out), offline=True, threads=1, node_id="bench"
    )
    classifier = OnnxAST.load(settings)
    options = LabelOptions(model_id=RANDOM_ID, top_k=5)
    windows = test_windows(batch)
    features = np.asarray(
        classifier.extractor(
            [w.samples for w in windows], sampling_rate=16_000, return_tensors="np"
        )["input_values"],
        np.float32,
    )
    classify(classifier, windows, options)  # warm-up
    best_all = best_model = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        classify(classifier, windows, options)
        best_all = min(best_all, (time.process_time() - began) * 1000 / batch)
        began = time.process_time()
        classifier.model(input_values=features)
        best_model = min(best_model, (time.process_time() - began) * 1000 / batch)
    return best_all, best_model, classifier.frames


def main(argv: list[str] | None = None) -> int:
    """Build, export, measure, print."""
    cache = Path("~/.cache/soundscape").expanduser()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", type=Path, default=cache / "ast-random")
    p.add_argument("--out", type=Path, default=cache / "ast-random-onnx-1s")
    p.add_argument("--batch", type=int, default=8, help="windows per batch")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    folder, out = args.folder.expanduser(), args.out.expanduser()
    build(folder)
    export(folder, out)
    load_before = os.getloadavg()[0]
    total, model, frames = measure(out, args.batch, args.rounds)
    load_after = os.getloadavg()[0]
    print(
        f"AST architecture, RANDOM weights, ONNX int8 for 1 s windows ({frames} frames), one "
        f"ONNX Runtime thread, batches of {args.batch}, best of {args.rounds}; load average "
        f"{load_before:.2f} before, {load_after:.2f} after (shared machine)"
    )
    print(f"CPU ms per 1 s window: {total:.1f} (features + model + top-5), model alone {model:.1f}")
    print(f"end-to-end: python -m benchmarks.e2e_bench ... --ast-onnx {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
