"""Pure maths of `soundscape evaluate`: class mapping, top-k hits, average precision, agreement.

No I/O. Scores are (n, labels) arrays of one backend; a dataset class maps to one or more of
the backend's labels, and its score on a clip is the highest of theirs.

- top-k accuracy: a clip counts when one of the model's k best labels belongs to one of the
  clip's classes;
- average precision (AP) of a class: clips ranked by the class's score, the mean of the
  precision at each clip of the class (scikit-learn's `average_precision_score`: the sum of
  (R_n - R_{n-1}) P_n, ties broken the same way, all tied scores as one threshold); mAP is the
  mean over the classes that have at least one clip;
- agreement of two backends on the same windows: the share whose top-1 labels are the same,
  and the mean share of their top-5 labels in common.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise(name: str) -> str:
    """A class name for loose matching: case folded, `_`, `-` and runs of spaces as one space."""
    return _SEPARATORS.sub(" ", name).strip().casefold()


def map_classes(
    classes: Sequence[str], labels: Sequence[str], mapping: Mapping[str, Sequence[str]]
) -> dict[str, list[int]]:
    """Each dataset class -> indices of the model labels it stands for (empty: unmapped).

    The mapping file's entry wins (its label names matched exactly, then loosely); else the
    label with the class's exact name; else one whose `normalise`d name equals the class's.
    """
    exact = {label: i for i, label in enumerate(labels)}
    loose: dict[str, int] = {}
    for i, label in enumerate(labels):
        loose.setdefault(normalise(label), i)
    out: dict[str, list[int]] = {}
    for cls in classes:
        names = list(mapping.get(cls, [cls]))
        found: list[int] = []
        for name in names:
            index = exact.get(name, loose.get(normalise(name)))
            if index is not None and index not in found:
                found.append(index)
        out[cls] = found
    return out


def top_k_hits(scores: np.ndarray, targets: Sequence[set[int]], k: int) -> np.ndarray:
    """Boolean per clip: one of its k best labels is among its target label indices."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.array([bool(set(row.tolist()) & t) for row, t in zip(order, targets, strict=True)])


def average_precision(truth: np.ndarray, score: np.ndarray) -> float:
    """AP of one class: `truth` booleans, `score` floats, one per clip (NaN without positives)."""
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    ranked, y = np.asarray(score)[order], truth[order]
    # one threshold per distinct score: the last clip of each run of ties
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True, slots=True)
class Accuracy:
    """What `evaluate` reports for one backend on a labelled dataset."""

    clips: int
    top1: float
    top5: float
    mean_ap: float
    per_class: dict[str, tuple[float, int]]  #: class -> (AP, clips of the class)
    unmapped: list[str]


def accuracy(
    scores: np.ndarray, clip_classes: Sequence[set[str]], class_map: Mapping[str, list[int]]
) -> Accuracy:
    """Top-1/top-5 accuracy and (m)AP over the clips whose classes are all mapped."""
    unmapped = sorted(c for c, idx in class_map.items() if not idx)
    keep = [i for i, cs in enumerate(clip_classes) if cs and all(class_map[c] for c in cs)]
    if not keep:
        return Accuracy(0, float("nan"), float("nan"), float("nan"), {}, unmapped)
    s = scores[keep]
    classes = [clip_classes[i] for i in keep]
    targets = [{j for c in cs for j in class_map[c]} for cs in classes]
    per_class: dict[str, tuple[float, int]] = {}
    for cls, idx in class_map.items():
        if not idx:
            continue
        truth = np.array([cls in cs for cs in classes])
        if truth.any():
            per_class[cls] = (average_precision(truth, s[:, idx].max(axis=1)), int(truth.sum()))
    aps = [ap for ap, _ in per_class.values()]
    return Accuracy(
        clips=len(keep),
        top1=float(top_k_hits(s, targets, 1).mean()),
        top5=float(top_k_hits(s, targets, 5).mean()),
        mean_ap=float(np.mean(aps)) if aps else float("nan"),
        per_class=per_class,
        unmapped=unmapped,
    )


@dataclass(frozen=True, slots=True)
class Agreement:
    """How two backends agree on the same windows."""

    windows: int
    top1: float  #: share of windows with the same top-1 label
    top5_overlap: float  #: mean share of top-5 labels in common


def agreement(
    a: np.ndarray, labels_a: Sequence[str], b: np.ndarray, labels_b: Sequence[str]
) -> Agreement:
    """Agreement of two score arrays over the same windows, compared by label name."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} windows against {len(b)}")
    if not len(a):
        return Agreement(0, float("nan"), float("nan"))
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :5]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :5]
    same1 = same5 = 0.0
    for ra, rb in zip(top_a, top_b, strict=True):
        names_a = [labels_a[i] for i in ra]
        names_b = [labels_b[i] for i in rb]
        same1 += names_a[0] == names_b[0]
        same5 += len(set(names_a) & set(names_b)) / len(names_a)
    return Agreement(len(a), same1 / len(a), same5 / len(a))
