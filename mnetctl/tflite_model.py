"""What a .tflite classifier says about itself, read without LiteRT: its input/output tensors and mnetctl metadata.

The metadata (`ModelMeta`: preprocessing, labels, arch) comes, first found wins, from
  1. a sidecar JSON beside the file (`model.tflite.json` or `model.json`): an object of `mnetctl.*` keys,
     or one holding such an object under "metadata"/"meta"/"metadata_props";
  2. a TFLite metadata entry (the FlatBuffer's `metadata` list) whose buffer is such a JSON object;
  3. for a third-party checkpoint: the TF convention (RGB, pixels to [-1, 1], 87.5% centre crop), resolution and
     classes from the tensors, logit 0 as background when there are 1001 outputs.
The layout always follows the file's input tensor: [1, R, R, 3] is NHWC, [1, 3, R, R] NCHW. A uint8 input takes the
crop's pixels as they are; an int8 input takes the normalised image, quantised by the runtime with the input's
own (scale, zero point), so the preprocessor of such a file yields float32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInput, MnetctlError
from .meta import PREFIX, ModelMeta

TFLITE_SUFFIX = ".tflite"
_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 9: np.int8, 1: np.float16}


def is_tflite(path: Path | str) -> bool:
    """A .tflite name, or a file that starts like a TFLite FlatBuffer ('TFL3' at byte 4)."""
    path = Path(path)
    if path.suffix.lower() == TFLITE_SUFFIX:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] == b"TFL3"


@dataclass(frozen=True)
class TFLiteTensor:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int


@dataclass(frozen=True)
class TFLiteFacts:
    path: Path
    input: TFLiteTensor
    output: TFLiteTensor
    meta: ModelMeta
    meta_source: str  # "sidecar PATH", "tflite metadata NAME" or "defaults"
    ops: dict[str, int]

    @property
    def layout(self) -> str:
        return "NCHW" if len(self.input.shape) == 4 and self.input.shape[1] == 3 and self.input.shape[3] != 3 else "NHWC"

    @property
    def resolution(self) -> int:
        return int(self.input.shape[2] if self.layout == "NCHW" else self.input.shape[1])

    @property
    def classes(self) -> int:
        return int(np.prod(self.output.shape[1:])) if len(self.output.shape) > 1 else int(self.output.shape[0])


def _tensor(graph, index: int) -> TFLiteTensor:
    t = graph.Tensors(index)
    q = t.Quantization()
    scale = float(q.ScaleAsNumpy()[0]) if q is not None and q.ScaleLength() else 0.0
    zero = int(q.ZeroPointAsNumpy()[0]) if q is not None and q.ZeroPointLength() else 0
    dtype = _TYPES.get(t.Type())
    if dtype is None:
        raise BadInput(f"tensor {t.Name().decode(errors='replace')!r} has TFLite type {t.Type()}, which mnetctl does not run")
    return TFLiteTensor(t.Name().decode(errors="replace"), tuple(int(d) for d in t.ShapeAsNumpy()), np.dtype(dtype), scale, zero)


def _props(doc: Any) -> dict[str, str] | None:
    """`mnetctl.*` string pairs found in a decoded sidecar/metadata JSON value (None if it holds none)."""
    if not isinstance(doc, dict):
        return None
    for key in ("metadata", "meta", "metadata_props", "mnetctl"):
        inner = doc.get(key)
        if isinstance(inner, dict):
            found = _props(inner)
            if found:
                return found
        if isinstance(inner, list):  # [{"key": ..., "value": ...}] as ONNX spells metadata_props
            pairs = {str(e.get("key")): str(e.get("value")) for e in inner if isinstance(e, dict) and "key" in e}
            if any(k.startswith(PREFIX) for k in pairs):
                return pairs
    pairs = {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in doc.items() if str(k).startswith(PREFIX)}
    return pairs or None


def sidecar_paths(path: Path) -> list[Path]:
    return [path.with_name(path.name + ".json"), path.with_suffix(".json")]


def _read_meta(path: Path, model) -> tuple[dict[str, str] | None, str]:
    for side in sidecar_paths(path):
        if side.is_file():
            try:
                doc = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadInput(f"sidecar {side} of {path} is not readable JSON ({exc})") from None
            props = _props(doc)
            if props:
                return props, f"sidecar {side}"
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buf = entry.Buffer()
        if buf >= model.BuffersLength():
            continue
        data = model.Buffers(buf).DataAsNumpy()
        if not isinstance(data, np.ndarray) or not data.size:
            continue
        try:
            doc = json.loads(data.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # e.g. the runtime-version string TFLite converters add
        props = _props(doc)
        if props:
            return props, f"tflite metadata {(entry.Name() or b'').decode(errors='replace')}"
    return None, "defaults"


def read_tflite_facts(path: Path | str) -> TFLiteFacts:
    """Tensors, op counts and metadata of a one-input TFLite classifier (BadInput for anything else)."""
    import tflite

    path = Path(path)
    if not path.exists():
        raise BadInput(f"model file {path} does not exist")
    if path.is_dir():
        raise BadInput(f"model path {path} is a directory, not a TFLite file")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BadInput(f"{path} is not a TFLite model (no 'TFL3' FlatBuffer identifier)")
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise BadInput(f"{path} is not a TFLite model (no subgraph)")
        graph = model.Subgraphs(0)
        if graph.InputsLength() != 1:
            raise BadInput(f"{path} has {graph.InputsLength()} inputs; mnetctl runs classifiers with one image input")
        inp = _tensor(graph, int(graph.Inputs(0)))
        out = _tensor(graph, int(graph.Outputs(0)))
        names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
        ops: dict[str, int] = {}
        for k in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(k).OpcodeIndex())
            op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            ops[names.get(op, f"op{op}")] = ops.get(names.get(op, f"op{op}"), 0) + 1
        props, source = _read_meta(path, model)
    except MnetctlError:
        raise
    except Exception as exc:  # a truncated or corrupt FlatBuffer surfaces as an arbitrary exception
        raise BadInput(f"{path} is not a readable TFLite model ({type(exc).__name__})") from None
    if len(inp.shape) != 4 or 3 not in (inp.shape[1], inp.shape[3]):
        raise BadInput(f"{path}: input shape {list(inp.shape)} is not an image batch [N, R, R, 3]")
    facts = TFLiteFacts(path, inp, out, ModelMeta(), source, ops)
    meta = ModelMeta.from_props(props) if props else ModelMeta(weights="tflite", precision="fp32")
    classes = facts.classes
    layout = facts.layout
    fmt = "uint8-nhwc" if inp.dtype == np.uint8 and layout == "NHWC" else ("float-nchw" if layout == "NCHW" else "float-nhwc")
    changes: dict[str, Any] = {"resolution": facts.resolution, "classes": classes, "layout": layout, "input_format": fmt}
    if props is None:
        changes["label_offset"] = 1 if classes == 1001 else 0
        changes["precision"] = "int8" if inp.dtype != np.float32 or "QUANTIZE" in ops or "DEQUANTIZE" in ops else "fp32"
    elif PREFIX + "label_offset" not in props and classes == 1001:
        changes["label_offset"] = 1
    return replace(facts, meta=replace(meta, **changes))
