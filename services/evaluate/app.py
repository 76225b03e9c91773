"""`soundscape evaluate`: run a backend over a labelled folder; or compare two on the same audio.

    soundscape evaluate DATASET [--backend SPEC] [--mapping FILE] [--window S] [--folds 1,2]
    soundscape evaluate DATASET --compare SPEC_A SPEC_B

DATASET is a folder of class folders, a CSV of `file,labels`, or ESC-50's folder
(`audio/*.wav` + `meta/esc50.csv`); see `services/evaluate/dataset.py`. SPEC is a backend,
optionally with a variant: `yamnet` (`yamnet:float`, `yamnet:int8`), `transformers` or `onnx`
(`:pad` for 1024 frames, `:window` for the true-length input), `birdnet`. Everything else
comes from the inference settings (`SOUNDSCAPE_INFERENCE_*`: the AST model, YAMNet and
BirdNET folders...), as for `soundscape inference`.

Each clip is cut into windows of `--window` seconds (default: the backend's window, 1 s, or
3 s for BirdNET; a tail of at least half a window counts too), each window is scored, and a
clip's score for a label is its highest over the windows. A class's score is the highest of
the labels it maps to: the mapping file's (`class,label` rows), else the label of the same
name, exactly or ignoring case, `_` and `-`. Printed: top-1 and top-5 accuracy, mAP and each
class's AP; with `--compare`, the share of windows whose top-1 labels agree and the mean
overlap of their top-5 labels (and each backend's accuracy, if the clips are labelled).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from services.evaluate import metrics
from services.evaluate.dataset import Clip, discover, read_mapping
from services.inference.backends import limit_blas_threads, load_classifier
from services.inference.core import resample
from services.inference.settings import InferenceSettings
from shared.contracts import Classifier
from shared.errors import ConfigError
from shared.runtime import setup_logging

log = logging.getLogger(__name__)

VARIANTS = {
    "yamnet": ("yamnet_precision", ("float", "int8")),
    "transformers": ("ast_length", ("pad", "window")),
    "onnx": ("ast_length", ("pad", "window")),
}


def settings_for(spec: str, window_s: float | None, **overrides: Any) -> InferenceSettings:
    """Inference settings for a backend spec (`backend[:variant]`), with `overrides`."""
    backend, _, variant = spec.partition(":")
    values: dict[str, Any] = {"backend": backend, **overrides}
    if variant:
        if backend not in VARIANTS or variant not in VARIANTS[backend][1]:
            known = ", ".join(f"{b}:{v}" for b, (_, vs) in VARIANTS.items() for v in vs)
            raise ConfigError(f"unknown backend variant {spec!r}; known: {known}")
        values[VARIANTS[backend][0]] = variant
    if window_s is not None and backend != "birdnet":
        values["window_seconds"] = window_s
    try:
        return InferenceSettings(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings for {spec!r}: {exc}") from exc


def read_clip(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples of an audio file and its rate."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise ConfigError(f"cannot read audio file {path}: {exc}") from exc
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32), int(rate)


def windows_of(samples: np.ndarray, rate: int, window_s: float) -> list[np.ndarray]:
    """Consecutive windows of `window_s`; a tail of at least half a window counts too (the
    whole clip when it is shorter)."""
    size = max(1, round(window_s * rate))
    out = [samples[i : i + size] for i in range(0, len(samples), size)]
    if len(out) > 1 and len(out[-1]) < size / 2:
        out.pop()
    return out or [samples]


@dataclass(frozen=True, slots=True)
class Scored:
    """A backend's scores on a dataset: per window, and per clip (max over its windows)."""

    model_id: str
    labels: Sequence[str]
    windows: np.ndarray
    clips: np.ndarray


def score(classifier: Classifier, clips: Sequence[Clip], window_s: float) -> Scored:
    """Score every window of every clip."""
    per_window: list[np.ndarray] = []
    per_clip: list[np.ndarray] = []
    for clip in clips:
        samples, rate = read_clip(clip.path)
        audio = resample(samples, rate, classifier.sample_rate)
        parts = windows_of(audio, classifier.sample_rate, window_s)
        scores = np.asarray(classifier.scores(parts), dtype=np.float32)
        per_window.append(scores)
        per_clip.append(scores.max(axis=0))
    return Scored(
        classifier.model_id,
        list(classifier.labels),
        np.concatenate(per_window),
        np.stack(per_clip),
    )


def report_accuracy(
    scored: Scored, clips: Sequence[Clip], mapping: dict[str, list[str]]
) -> list[str]:
    """The accuracy lines of one backend (none when the clips carry no classes)."""
    classes = sorted({c for clip in clips for c in clip.classes})
    if not classes:
        return [f"{scored.model_id}: the clips have no classes; no accuracy"]
    class_map = metrics.map_classes(classes, scored.labels, mapping)
    result = metrics.accuracy(scored.clips, [set(c.classes) for c in clips], class_map)
    lines = [
        f"{scored.model_id}: {result.clips} clips of {len(clips)}, {len(result.per_class)} classes",
        f"  top-1 accuracy {result.top1:.3f}",
        f"  top-5 accuracy {result.top5:.3f}",
        f"  mAP            {result.mean_ap:.3f}",
        "  per-class AP (clips) -> model labels:",
    ]
    for cls, (ap, n) in sorted(result.per_class.items()):
        names = ", ".join(scored.labels[i] for i in class_map[cls])
        lines.append(f"    {cls}: {ap:.3f} ({n}) -> {names}")
    if result.unmapped:
        lines.append(
            "  classes matching no model label (left out; map them with --mapping): "
            + ", ".join(result.unmapped)
        )
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="soundscape evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", type=Path, help="class folders, a file,labels CSV, or ESC-50")
    p.add_argument("--backend", help="backend[:variant] to evaluate (default: the setting)")
    p.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), help="agreement of two backend[:variant]s"
    )
    p.add_argument("--mapping", type=Path, help="CSV of class,label rows")
    p.add_argument("--window", type=float, help="seconds per window (default: the backend's)")
    p.add_argument(
        "--folds",
        type=lambda s: {int(f) for f in s.split(",") if f},
        default=set(),
        help="ESC-50: comma-separated folds to use (default: all)",
    )
    p.add_argument("--model", help="AST checkpoint or folder (transformers, onnx backends)")
    p.add_argument("--threads", type=int, help="CPU threads for the model (0: all cores)")
    return p


def run(args: argparse.Namespace) -> list[str]:
    """Evaluate or compare; the lines to print."""
    overrides: dict[str, Any] = {
        k: v for k, v in (("model", args.model), ("threads", args.threads)) if v is not None
    }
    clips = discover(args.dataset, args.folds)
    mapping = read_mapping(args.mapping)
    specs = list(args.compare) if args.compare else [args.backend or InferenceSettings().backend]
    scored: list[Scored] = []
    for spec in specs:
        settings = settings_for(spec, args.window, **overrides)
        classifier = load_classifier(settings)
        log.info("scoring %d clips with %s", len(clips), classifier.model_id)
        scored.append(score(classifier, clips, args.window or settings.window_seconds))
    lines = [f"dataset {args.dataset}: {len(clips)} clips"]
    for s in scored:
        lines += report_accuracy(s, clips, mapping)
    if args.compare:
        a, b = scored
        if len(a.windows) != len(b.windows):
            raise ConfigError(
                f"{specs[0]} and {specs[1]} cut the clips into different windows "
                f"({len(a.windows)} and {len(b.windows)}): give both one --window"
            )
        agree = metrics.agreement(a.windows, a.labels, b.windows, b.labels)
        lines += [
            f"{specs[0]} ({a.model_id}) against {specs[1]} ({b.model_id}), {agree.windows} "
            "windows:",
            f"  top-1 agreement {agree.top1:.1%}",
            f"  top-5 overlap   {agree.top5_overlap:.1%}",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point of `soundscape evaluate`."""
    args = parser().parse_args(argv)
    setup_logging()
    if args.compare and args.backend:
        print("soundscape evaluate: give --backend or --compare, not both", file=sys.stderr)
        return 2
    try:
        limit_blas_threads()
        lines = run(args)
    except ConfigError as exc:
        print(f"soundscape evaluate: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
