"""The metadata contract of every ONNX file mnetctl writes (`metadata_props`, keys sorted).

`eval`, `predict`, `bench`, `quantize` and `sweep` read these keys so that no flag has to be repeated.
Values are strings; lists are JSON. Files not written by mnetctl get defaults from `ModelMeta.defaults`.
A malformed value is ignored (the default applies); a number that parses but is NaN/inf (or a std <= 0)
is refused (BadInput), since preprocessing with it would turn every input into NaN.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import BadInput

PREFIX = "mnetctl."

# Preprocessing of the TF/TFLite MobileNet checkpoints: RGB, pixel -> (pixel - 127.5) / 127.5 in [-1, 1].
TF_MEAN = (127.5, 127.5, 127.5)
TF_STD = (127.5, 127.5, 127.5)
DEFAULT_CROP = 0.875


@dataclass(frozen=True)
class ModelMeta:
    """What a model says about itself. Mean/std are in 0..255 pixel units, per RGB channel."""

    task: str = "classification"  # a name in mnetctl.tasks.TASKS
    arch: str = "unknown"
    width: float = 1.0
    resolution: int = 224
    classes: int = 1000
    label_offset: int = 0  # 1 for TF checkpoints: logit 0 is "background"
    mean: tuple[float, float, float] = TF_MEAN
    std: tuple[float, float, float] = TF_STD
    color_order: str = "RGB"
    resize: str = "short-side"  # resize the short side to resolution / crop_fraction, then centre crop
    crop_fraction: float = DEFAULT_CROP
    interpolation: str = "bilinear"
    layout: str = "NCHW"  # NCHW float input or NHWC uint8 input (preprocessing inside the graph)
    input_format: str = "float-nchw"
    padding: str = "symmetric"
    weights: str = "random"
    seed: int | None = 0
    opset: int = 17
    precision: str = "fp32"
    version: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # e.g. quantization settings

    def to_props(self) -> dict[str, str]:
        """Flatten to sorted string key/value pairs."""
        data = asdict(self)
        extra = data.pop("extra")
        props: dict[str, str] = {}
        for key, value in data.items():
            if value is None:
                continue
            if isinstance(value, (tuple, list)):
                props[PREFIX + key] = json.dumps([float(v) for v in value])
            else:
                props[PREFIX + key] = str(value)
        for key, value in extra.items():
            props[PREFIX + key] = str(value)
        return dict(sorted(props.items()))

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMeta":
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for full_key, value in props.items():
            if not full_key.startswith(PREFIX):
                continue
            key = full_key[len(PREFIX):]
            if key not in known:
                extra[key] = value
                continue
            try:
                kwargs[key] = _parse(key, value)
            except (ValueError, TypeError):
                continue  # ignore a malformed value: the default applies
        return cls(**kwargs, extra=extra)

    def with_extra(self, **items: Any) -> "ModelMeta":
        merged = dict(self.extra)
        merged.update({k: str(v) for k, v in items.items()})
        return replace(self, extra=merged)


def _finite(key: str, value: str, numbers: tuple[float, ...]) -> None:
    if not all(math.isfinite(v) for v in numbers) or (key == "std" and min(numbers) <= 0):
        raise BadInput(f"metadata {PREFIX}{key} = {value} is not usable"
                       f" ({'a std must be a finite number > 0' if key == 'std' else 'not a finite number'})")


def _parse(key: str, value: str) -> Any:
    if key in ("mean", "std"):
        vals = json.loads(value)
        if len(vals) != 3:
            raise ValueError(key)
        numbers = tuple(float(v) for v in vals)
        _finite(key, value, numbers)
        return numbers
    if key in ("width", "crop_fraction"):
        number = float(value)
        _finite(key, value, (number,))
        return number
    if key in ("resolution", "classes", "label_offset", "opset"):
        return int(value)
    if key == "seed":
        return None if value in ("", "None") else int(value)
    return value


def write_meta(model, meta: ModelMeta) -> None:
    """Replace the mnetctl.* metadata of an onnx.ModelProto (other keys are kept), sorted by key."""
    others = {p.key: p.value for p in model.metadata_props if not p.key.startswith(PREFIX)}
    merged = {**others, **meta.to_props()}
    del model.metadata_props[:]
    for key in sorted(merged):
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = merged[key]


def read_meta(model, where: str = "model") -> ModelMeta:
    """Metadata of an onnx.ModelProto; defaults for anything missing, resolution/layout from the input.
    A number that cannot be used is a BadInput naming `where`."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        meta = ModelMeta.from_props(props)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc.message}", exc.hint) from None
    if PREFIX + "resolution" not in props or PREFIX + "layout" not in props:
        meta = _guess_from_input(model, meta, has_res=PREFIX + "resolution" in props)
    return meta


def _guess_from_input(model, meta: ModelMeta, has_res: bool) -> ModelMeta:
    """For foreign models: take the layout and resolution from the first graph input's shape."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        return meta
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        return meta
    elem = inputs[0].type.tensor_type.elem_type
    if dims[1] == 3:
        layout, res = "NCHW", dims[2]
    elif dims[3] == 3:
        layout, res = "NHWC", dims[1]
    else:
        return meta
    input_format = "uint8-nhwc" if (layout == "NHWC" and elem == 2) else ("float-nchw" if layout == "NCHW" else "float-nhwc")
    changes: dict[str, Any] = {"layout": layout, "input_format": input_format}
    if not has_res and res > 0:
        changes["resolution"] = res
    return replace(meta, **changes)


def read_meta_file(path: Path | str) -> ModelMeta:
    """Read only the metadata of a model file (loads the proto without external data)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return read_meta(model, str(path))
