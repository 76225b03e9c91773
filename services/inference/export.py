"""`soundscape export-onnx`: turn an AST checkpoint into ONNX (fp32) and int8 models.

    soundscape export-onnx --model MIT/ast-finetuned-audioset-10-10-0.4593 \\
        --out models/ast-onnx --quantize
    soundscape export-onnx --model ./my-ast --out models/ast-1s --quantize --window-seconds 1

The folder it writes has the hub's layout, so the `onnx` backend loads it like a hub repo:

    OUT/config.json, OUT/preprocessor_config.json   the model's config and feature extractor
    OUT/onnx/model.onnx                             fp32, dynamic batch
    OUT/onnx/model_quantized.onnx                   int8 weights, dynamic activation quantisation
    OUT/export.json                                 what was exported, from what, how

With `--window-seconds S` the model is exported for windows of S seconds without padding to
1024 frames (position embeddings cut as `--position-embeddings` says; unvalidated for
accuracy, see docs/inference.md); the `onnx` backend then needs `--window S --ast-length
window`. The command checks the exported models against PyTorch on a test input and prints
the largest score difference of each.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.settings import DEFAULT_MODEL, InferenceSettings
from shared.errors import ConfigError
from shared.runtime import setup_logging

log = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
SUBFOLDER = "onnx"


def export(
    model_id: str,
    out: Path,
    *,
    quantize: bool = True,
    window_seconds: float | None = None,
    position_embeddings: str = "start",
    offline: bool = False,
    opset: int | None = None,
) -> dict[str, Any]:
    """Export `model_id` (hub id or folder) into `out`; return what `export.json` records."""
    from services.inference.backends.ast_torch import load_ast, shorten
    from services.inference.backends.common import quiet_export

    settings = InferenceSettings(
        backend="transformers",
        model=model_id,
        offline=offline,
        position_embeddings=position_embeddings,
    )
    model, extractor = load_ast(settings)
    frames = int(model.config.max_length)
    if window_seconds is not None:
        frames = shorten(model, extractor, window_seconds, settings.position_embeddings)
    onnx_dir = out / SUBFOLDER
    onnx_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    from optimum.exporters.onnx import onnx_export_from_model

    with quiet_export():
        onnx_export_from_model(
            model,
            onnx_dir,
            task="audio-classification",
            opset=opset,
            do_validation=False,
        )
    model.config.save_pretrained(out)
    extractor.save_pretrained(out)
    log.info(
        "exported %s to %s in %.1f s", model_id, onnx_dir / FP32_FILE, time.perf_counter() - began
    )
    files = [FP32_FILE]
    if quantize:
        quantize_dynamic(onnx_dir / FP32_FILE, onnx_dir / INT8_FILE)
        files.append(INT8_FILE)
    record: dict[str, Any] = {
        "source": model_id,
        "frames": frames,
        "window_seconds": window_seconds,
        "position_embeddings": position_embeddings if window_seconds is not None else None,
        "files": {name: f"{SUBFOLDER}/{name}" for name in files},
        "quantization": (
            "onnxruntime.quantization.quantize_dynamic: int8 weights (per channel, reduced range), "
            "uint8 activations quantised at run time"
            if quantize
            else None
        ),
        "max_abs_score_difference": check(model, extractor, onnx_dir, files),
    }
    (out / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def quantize_dynamic(source: Path, target: Path) -> None:
    """int8 weights (per output channel, 7 bits of range), activations quantised dynamically at
    run time.

    `reduce_range`: on x86-64 CPUs without VNNI (AVX2, AVX-512 without VNNI) ONNX Runtime's
    u8 x s8 kernels add pairs of products in saturating 16-bit sums, and full-range weights
    overflow them (a tiny AST's scores moved by 0.03 on such a CPU, against under 0.02 with
    VNNI); with 7-bit weights no pair can overflow, wherever the model later runs."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    began = time.perf_counter()
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # onnxruntime logs every tensor at INFO on root
    try:
        ort_quantize_dynamic(
            source, target, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
        )
    finally:
        root.setLevel(level)
    log.info("quantised to %s in %.1f s", target, time.perf_counter() - began)


def check(model: Any, extractor: Any, onnx_dir: Path, files: list[str]) -> dict[str, float]:
    """Largest |score difference| of each exported file against PyTorch on two test inputs."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    audio = [
        (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32),
        (0.1 * rng.standard_normal(16_000)).astype(np.float32),
    ]
    features = np.asarray(
        extractor(audio, sampling_rate=16_000, return_tensors="np")["input_values"], np.float32
    )
    with torch.inference_mode():
        reference = torch.sigmoid(model(input_values=torch.from_numpy(features)).logits).numpy()
    out: dict[str, float] = {}
    for name in files:
        session = ort.InferenceSession(str(onnx_dir / name), providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input_values": features})[0]
        scores = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
        out[name] = float(np.max(np.abs(scores - reference)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Export a model; print where it went and how close it is to PyTorch."""
    parser = argparse.ArgumentParser(
        prog="soundscape export-onnx",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="AST hub id or local folder")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument(
        "--quantize", action="store_true", help=f"also write the int8 {SUBFOLDER}/{INT8_FILE}"
    )
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=None,
        help="export for windows of this length instead of 1024 frames (unvalidated)",
    )
    parser.add_argument(
        "--position-embeddings",
        choices=["start", "center", "interpolate"],
        default="start",
        help="with --window-seconds: how the position embeddings are cut",
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: optimum's)")
    parser.add_argument("--offline", action="store_true", help="never contact the model hub")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        record = export(
            args.model,
            args.out,
            quantize=args.quantize,
            window_seconds=args.window_seconds,
            position_embeddings=args.position_embeddings,
            offline=args.offline,
            opset=args.opset,
        )
    except ConfigError as exc:
        print(f"export-onnx: {exc}", file=sys.stderr)
        return 78
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
