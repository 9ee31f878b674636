"""The model handle: one ONNX file opened and validated once, then handed through the stages.

`Model.open(path)` parses the file once (weights in external data are not loaded), reads the metadata once,
checks the image input against it, builds the preprocessor, and lets the model's task (`mnetctl.task`
metadata, classification by default) check and describe the outputs. Stages (quantize, evaluate, predict,
bench, compare) take a handle or a path; a path is opened here, so every stage reports bad files alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .data import Preprocessor, class_name
from .errors import BadInput
from .labels import model_labels
from .meta import ModelMeta, read_meta
from .modelio import check_model_path, load_onnx, size_on_disk
from .tasks import Task, get_task

QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm", "ConvInteger",
                       "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul"})


@dataclass(frozen=True)
class InputSpec:
    """The model's one image input."""

    name: str
    dtype: np.dtype
    dims: tuple[int | None, ...]  # None where a dimension is symbolic
    fixed_batch: int | None  # the batch dimension when it is a fixed number


@dataclass
class Model:
    path: Path | None
    proto: Any  # onnx.ModelProto, without external weight data
    meta: ModelMeta
    input: InputSpec
    task: Task
    head: Any  # what the task needs to decode outputs (e.g. tasks.classification.ClassifierHead)
    preprocessor: Preprocessor
    format: str = "onnx"  # "onnx", or "tflite" (then `proto` is None and a LiteRT engine runs it)

    @classmethod
    def open(cls, path: Path | str) -> "Model":
        path = check_model_path(path)
        return cls.from_proto(load_onnx(path, load_external_data=False), path)

    @classmethod
    def open_tflite(cls, path: Path | str) -> "Model":
        """A .tflite classifier (metadata from its sidecar or TFLite metadata, else the TF convention; see
        `tflite_model`). Its input spec says what the preprocessor yields: float32 for an int8 or float input
        (the runtime quantises with the input's own parameters), uint8 for a uint8 one; batch fixed at 1."""
        from .tasks.classification import ClassifierHead
        from .tflite_model import read_tflite_facts

        facts = read_tflite_facts(path)
        meta = facts.meta
        if meta.task != "classification":
            raise BadInput(f"{path}: mnetctl runs TFLite classifiers; its metadata says task {meta.task!r}")
        pre = Preprocessor.from_meta(meta)
        dtype = np.dtype(np.uint8) if pre.input_format == "uint8-nhwc" else np.dtype(np.float32)
        dims = (1,) + tuple(int(d) for d in facts.input.shape[1:])
        inp = InputSpec(facts.input.name, dtype, dims, 1)
        head = ClassifierHead(facts.output.name, facts.classes, meta.label_offset, ends_in_softmax="SOFTMAX" in facts.ops)
        return cls(Path(path), None, meta, inp, get_task("classification"), head, pre, format="tflite")

    @classmethod
    def from_proto(cls, proto, path: Path | str | None = None) -> "Model":
        where = str(path) if path is not None else "model"
        meta = read_meta(proto, where)
        task = get_task(meta.task)
        pre = Preprocessor.from_meta(meta)
        inp = _image_input(proto, meta, pre, where)
        head = task.inspect_outputs(proto, meta, inp, where)
        return cls(Path(path) if path is not None else None, proto, meta, inp, task, head, pre)

    # -- facts -----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "model"

    @property
    def quantized(self) -> bool:
        if self.proto is None:
            return self.meta.precision == "int8"
        return any(n.op_type in QUANT_OPS for n in self.proto.graph.node)

    @property
    def opset(self) -> int | None:
        if self.proto is None:
            return None
        return next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), None)

    def size_bytes(self) -> int:
        """Bytes on disk, external-data files included."""
        if self.path is None:
            return self.proto.ByteSize()
        if self.proto is None:
            return self.path.stat().st_size
        return size_on_disk(self.path, self.proto)

    @property
    def label_names(self) -> list[str] | None:
        """The class names in its metadata (`mnetctl.labels`), when there is one per predicted class."""
        names = model_labels(self.meta)
        return names if names is not None and len(names) == getattr(self.head, "num_labels", None) else None

    def label(self, index: int) -> str:
        """A class name for a classifier's output index: its own label names, else ImageNet names for
        1000-class models, else `class N`."""
        names = self.label_names
        if names is not None and 0 <= index < len(names):
            return names[index]
        return class_name(index) if getattr(self.head, "num_labels", None) == 1000 else f"class {index}"

    # -- classifier shorthands (what evaluate, predict and compare read) --------------------------

    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def input_dtype(self) -> np.dtype:
        return self.input.dtype

    @property
    def fixed_batch(self) -> int | None:
        return self.input.fixed_batch

    @property
    def output_name(self) -> str:
        return self.head.output_name

    @property
    def label_offset(self) -> int:
        return self.head.label_offset

    @property
    def num_labels(self) -> int:
        return self.head.num_labels

    # -- running ---------------------------------------------------------------------------------

    def session(self, threads: int | None = None):
        """A CPU ONNX Runtime session; a graph ORT cannot load is a BadInput naming the file."""
        from .runtime import check_threads, open_cpu_session

        if self.format != "onnx":
            raise BadInput(f"{self.name} is a TFLite model; ONNX Runtime cannot run it", "pass --runtime litert")
        if threads is not None:
            check_threads(threads)  # before the session, whose errors are reported as a bad model
        source = self.path if self.path is not None else self.proto.SerializeToString()
        return open_cpu_session(source, self.name, threads=threads)


def fit_batches(array: np.ndarray, spec: InputSpec) -> Iterator[tuple[np.ndarray, int]]:
    """`array` as the model's input takes it: cast to the input's dtype and, where the batch dimension is
    fixed, cut into chunks of that size, the last one padded by repeating its rows. Yields (chunk, real rows)."""
    if array.dtype != spec.dtype:
        array = array.astype(spec.dtype)
    fixed, n = spec.fixed_batch, array.shape[0]
    if not fixed or n == fixed:
        yield array, n
        return
    for start in range(0, n, fixed):
        chunk = array[start:start + fixed]
        m = chunk.shape[0]
        yield (chunk if m == fixed else chunk[np.arange(fixed) % m]), m


def run_batched(run_one: Callable[[np.ndarray], np.ndarray], array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """`run_one` (one inference call, outputs batch-first; one array or a tuple of them) over `array` of any batch
    size, via `fit_batches`."""
    outs = [(run_one(chunk), m) for chunk, m in fit_batches(array, spec)]
    if isinstance(outs[0][0], tuple):  # several outputs (a detector): each one cut and joined alike
        parts = list(zip(*[tuple(o[:m] for o in out) for out, m in outs]))
        return tuple(p[0] if len(p) == 1 else np.concatenate(p) for p in parts)
    cut = [out[:m] for out, m in outs]
    return cut[0] if len(cut) == 1 else np.concatenate(cut)


def as_model(model: "Model | Path | str", tflite_ok: bool = False) -> Model:
    """A handle for a handle or a path (the one way stages accept either); with `tflite_ok`, a .tflite path too."""
    if isinstance(model, Model):
        return model
    if tflite_ok:
        from .tflite_model import is_tflite

        if Path(model).is_file() and is_tflite(model):
            return Model.open_tflite(model)
    return Model.open(model)


def _image_input(proto, meta: ModelMeta, pre: Preprocessor, path: str) -> InputSpec:
    """Check that the model has one 4-D image input matching its metadata."""
    from onnx import TensorProto, helper

    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise BadInput(f"{path} has {len(inputs)} inputs; mnetctl needs a model with one image input")
    inp = inputs[0]
    ttype = inp.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
    if len(dims) != 4:
        raise BadInput(f"{path}: input {inp.name!r} has rank {len(dims)}, expected a 4-D image batch")
    spatial = dims[2:4] if pre.input_format == "float-nchw" else dims[1:3]
    channels = dims[1] if pre.input_format == "float-nchw" else dims[3]
    if channels not in (None, 3):
        raise BadInput(f"{path}: input {inp.name!r} {list(dims)} does not match the layout {pre.input_format} in its metadata")
    if None not in spatial and spatial[0] != spatial[1]:
        raise BadInput(f"{path}: input {inp.name!r} {list(dims)} is not a square image ({spatial[0]}x{spatial[1]}) in "
                       f"the {pre.input_format} layout; mnetctl needs square image inputs")
    for d in spatial:
        if d is not None and d != meta.resolution:
            raise BadInput(f"{path}: input {inp.name!r} is {list(spatial)}, but its metadata says resolution {meta.resolution}")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)) if ttype.elem_type else np.dtype(np.float32)
    except Exception:  # an element type number ONNX does not know (a corrupt file)
        raise BadInput(f"{path}: input {inp.name!r} has an unknown element type {ttype.elem_type}") from None
    if (ttype.elem_type == TensorProto.UINT8) != (pre.input_format == "uint8-nhwc"):
        raise BadInput(f"{path}: input {inp.name!r} is {dtype}, but its metadata says input format {pre.input_format}")
    if dtype.kind not in "fu":
        raise BadInput(f"{path}: unsupported input type {dtype}")
    fixed = dims[0] if dims[0] and dims[0] > 0 else None
    return InputSpec(inp.name, dtype, dims, fixed)
