"""Labelled audio for `soundscape evaluate`: three layouts, found from what the path holds.

- ESC-50: a folder with `meta/esc50.csv` (filename, fold, target, category, ...) and
  `audio/`: each file's class is its `category`; `folds` keeps only those folds;
- a CSV file: `file,labels` rows (a header row naming them), paths relative to the CSV's
  folder, several classes separated by `;`;
- a folder of class folders: every audio file under `<folder>/<class>/` is of that class
  (files directly in the folder have no class: they count only for `--compare`).

The mapping file (`--mapping`) is a CSV of `class,label` rows (header included), one row per
model label a class stands for.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError

#: File endings read as audio (libsndfile's formats).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3"})
ESC50_META = Path("meta") / "esc50.csv"


@dataclass(frozen=True, slots=True)
class Clip:
    """One audio file and its classes (empty: unlabelled)."""

    path: Path
    classes: frozenset[str]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _need(rows: list[dict[str, str]], path: Path, columns: Collection[str]) -> None:
    if rows and not set(columns) <= set(rows[0]):
        raise ConfigError(f"{path} needs the columns {sorted(columns)}, has {sorted(rows[0])}")


def discover(path: Path, folds: Collection[int] = ()) -> list[Clip]:
    """The clips of a dataset in any of the three layouts, in a stable order."""
    if path.is_file():
        return _from_csv(path)
    if (path / ESC50_META).is_file():
        return _esc50(path, folds)
    if not path.is_dir():
        raise ConfigError(f"{path} is neither a dataset folder nor a CSV file")
    clips = []
    for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        parts = file.relative_to(path).parts
        classes = frozenset({parts[0]}) if len(parts) > 1 else frozenset()
        clips.append(Clip(file, classes))
    if not clips:
        raise ConfigError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {path}")
    return clips


def _from_csv(path: Path) -> list[Clip]:
    rows = _csv_rows(path)
    _need(rows, path, ("file", "labels"))
    clips = []
    for row in rows:
        classes = frozenset(c.strip() for c in (row["labels"] or "").split(";") if c.strip())
        clips.append(Clip(path.parent / row["file"], classes))
    return clips


def _esc50(root: Path, folds: Collection[int]) -> list[Clip]:
    meta = root / ESC50_META
    rows = _csv_rows(meta)
    _need(rows, meta, ("filename", "fold", "category"))
    return [
        Clip(root / "audio" / row["filename"], frozenset({row["category"]}))
        for row in rows
        if not folds or int(row["fold"]) in folds
    ]


def read_mapping(path: Path | None) -> dict[str, list[str]]:
    """Class -> model labels from a `class,label` CSV (None: no mapping, names match)."""
    if path is None:
        return {}
    rows = _csv_rows(path)
    _need(rows, path, ("class", "label"))
    out: defaultdict[str, list[str]] = defaultdict(list)
    for row in rows:
        out[row["class"]].append(row["label"])
    return dict(out)
