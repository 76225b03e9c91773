"""Small, randomly initialised models built locally: no hub access at test time."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

LABELS_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "audioset_labels.csv"


def audioset_labels() -> list[str]:
    """The 527 AudioSet display names in AST checkpoint order."""
    with LABELS_CSV.open(newline="", encoding="utf-8") as fh:
        return [row["display_name"] for row in csv.DictReader(fh)]


def build_tiny_ast(path: Path, max_length: int = 1024, layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny ASTForAudioClassification (527 AudioSet labels) and its feature extractor.

    Same architecture and input pipeline as MIT/ast-finetuned-audioset-10-10-0.4593, with few,
    narrow layers and random weights: loading and inference code paths are the real ones.
    """
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    labels = audioset_labels()
    torch.manual_seed(seed)
    config = ASTConfig(  # type: ignore[no-untyped-call]
        hidden_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=128,
        max_length=max_length,
        num_mel_bins=128,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    model = ASTForAudioClassification(config).eval()  # type: ignore[no-untyped-call]
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    with warnings.catch_warnings():
        # 128 mel bins at 16 kHz leave a few filters empty; AST's own checkpoint does the same.
        warnings.filterwarnings("ignore", "At least one mel filter has all zero values")
        extractor = ASTFeatureExtractor(max_length=max_length)  # type: ignore[no-untyped-call]
    extractor.save_pretrained(path)
    return path
