"""specs -> weights -> graph -> model.onnx: the `build` job as a library function."""

from __future__ import annotations

import json
import math

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import onnx

from . import __version__
from .errors import BadInput
from .fsutil import atomic_path
from .graph import DEFAULT_OPSET, emit, insert_qdq, validate_opset
from .meta import ModelMeta, write_meta
from .specs import decode


def resolve_padding(padding: str, weights: str) -> str:
    """'auto' = TF 'same' for TF checkpoints (they were trained with it), symmetric for random init."""
    if padding == "auto":
        return "symmetric" if weights == "random" else "same"
    if padding not in ("same", "symmetric"):
        raise BadInput(f"padding must be auto, same or symmetric, got {padding!r}")
    return padding


def build_model(
    arch: str,
    width: float | None = None,
    resolution: int | None = None,
    classes: int | None = None,
    weights: str = "random",
    seed: int = 0,
    padding: str = "auto",
    opset: int = DEFAULT_OPSET,
    input_format: str = "float-nchw",
    precision: str = "fp32",
    int8_layout: str | None = None,
    labels: "Sequence[str] | Path | str | None" = None,
    crop_fraction: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output_stride: int | None = None,
    postprocess: str = "graph",
) -> onnx.ModelProto:
    """Build a MobileNet (or DeepLabV3 on one, `heads.deeplab`) as an onnx.ModelProto.

    resolution: None = the architecture's default (224; DeepLabV3: 513, or a checkpoint's own input size).
    output_stride, postprocess: DeepLabV3 only (`build_deeplab`).

    weights: "random" (seeded He init), "pretrained" (the shipped checkpoint for arch/width), or a
    path to a TFLite checkpoint of the same architecture.
    classes: default 1000 for random weights; TF checkpoints fix it (1001, label offset 1).
    precision: "fp32" (float weights, dequantized from a checkpoint) or "int8": a QDQ model carrying the
    checkpoint's own quantization (its integer weights, scales and zero points, and its activation
    quantization); needs an integer checkpoint.
    int8_layout: "cpu" (default): laid out for ONNX Runtime's CPU kernels, as `mnetctl quantize` does: int8
    weights with zero point 0 and per-channel scales (multiples of the checkpoint's, its values where they
    fit), and the layers `quantize` keeps float by default computed in float on the checkpoint's
    values (stored as int8); "checkpoint": the checkpoint's integers, scales and zero points on every
    layer, as the file has them (for runtimes that mirror TFLite's integer arithmetic).
    labels: class names (a list, or the path of a label file, `mnetctl.labels.read_label_file`) stored as
    `mnetctl.labels`; `classes` names (one per output) or `classes - 1` (output 0 is background).
    crop_fraction, mean, std: preprocessing the checkpoint was trained with, where the file cannot say it
    (None: centre crop 0.875; mean/std from an integer input's quantization, else [-1, 1]). mean/std: one value
    for all channels or three (RGB), in pixel units 0..255.
    """
    from .heads import deeplab
    from .heads.ssd import resolve_ssd

    if resolve_ssd(arch) is not None:  # a detector: SSD on a MobileNet backbone
        for name, value in (("crop_fraction", crop_fraction), ("mean", mean), ("std", std),
                            ("output_stride", output_stride)):
            if value is not None:
                raise BadInput(f"{name}: not an option of detectors ({arch} takes the whole image, resized)")
        return build_ssd_model(arch, width, resolution, classes, weights, seed, padding, opset, input_format, precision,
                               labels=labels, postprocess=postprocess,
                               **({} if int8_layout is None else {"int8_layout": int8_layout}))
    if deeplab.resolve(arch):
        if crop_fraction is not None:
            raise BadInput("crop_fraction: DeepLabV3 resizes the whole image to its input size; it takes no crop")
        return build_deeplab(1.0 if width is None else width, resolution, classes, weights, seed, padding, opset,
                             input_format, precision, int8_layout or "cpu", labels, mean, std, output_stride, postprocess)
    if output_stride is not None:
        raise BadInput(f"output_stride applies to segmentation backbones ({deeplab.ARCH}), not to {arch}")
    if postprocess != "graph":
        raise BadInput(f"postprocess applies to detectors and segmenters, not to {arch}")
    width = 1.0 if width is None else width
    int8_layout = int8_layout or "cpu"
    if resolution is None:
        from .specs import FAMILIES, resolve_arch

        resolution = FAMILIES[resolve_arch(arch)].default_resolution
    _check_common(opset, input_format, precision, int8_layout, weights)
    checkpoint = None
    if weights == "random":
        cfg = decode(arch, width, resolution, 1000 if classes is None else classes)
        check_fits_in_onnx(cfg)
        from .weights.random_init import random_weights

        params = random_weights(cfg, seed)
        meta = ModelMeta(weights="random", seed=seed)
    else:
        from .weights.tflite_import import load_checkpoint

        cfg = decode(arch, width, resolution, 1001 if classes is None else classes)
        check_fits_in_onnx(cfg)
        checkpoint = load_checkpoint(cfg, weights)
        params, meta = checkpoint.params, checkpoint.meta
        if classes is not None and classes != cfg.classes:
            raise BadInput(f"classes {classes} does not match the checkpoint's {cfg.classes} classes")
    pad = resolve_padding(padding, weights)
    meta = _spec_meta(meta, cfg, pad, opset, input_format)
    meta = _with_preprocessing(meta, crop_fraction, mean, std)
    if labels is not None:
        meta = _with_labels(meta, labels)
    if checkpoint is None or precision == "fp32":
        return emit(cfg, params, meta, padding=pad, opset=opset, input_format=input_format)
    _check_checkpoint_padding(pad)
    return _checkpoint_int8(cfg, checkpoint, emit(cfg, params, meta, padding=pad, opset=opset, input_format=input_format),
                            meta, int8_layout)


def _check_common(opset: int, input_format: str, precision: str, int8_layout: str, weights: str) -> None:
    validate_opset(opset)
    if input_format not in ("float-nchw", "uint8-nhwc"):
        raise BadInput(f"input_format must be 'float-nchw' or 'uint8-nhwc', got {input_format!r}")
    if precision not in ("fp32", "int8"):
        raise BadInput(f"precision must be fp32 or int8, got {precision!r}")
    if int8_layout not in INT8_LAYOUTS:
        raise BadInput(f"int8_layout must be {' or '.join(INT8_LAYOUTS)}, got {int8_layout!r}")
    if precision == "int8" and weights == "random":
        raise BadInput(
            "--precision int8 imports a quantized checkpoint's own quantization; random weights have none",
            "use --weights pretrained or a .tflite checkpoint, or build fp32 and run `mnetctl quantize`",
        )


def _spec_meta(meta: ModelMeta, cfg, pad: str, opset: int, input_format: str) -> ModelMeta:
    """`meta` with what the built graph is: the config's arch/width/resolution/classes, padding, opset, input."""
    return replace(meta, arch=cfg.arch, width=cfg.width, resolution=cfg.resolution, classes=cfg.classes, padding=pad,
                   opset=opset, input_format=input_format, layout="NHWC" if input_format == "uint8-nhwc" else "NCHW",
                   version=__version__)


def _check_checkpoint_padding(pad: str) -> None:
    if pad != "same":
        raise BadInput("precision int8 needs the checkpoint's own padding: use --padding auto or same")


def _checkpoint_int8(cfg, checkpoint, float_model: onnx.ModelProto, meta: ModelMeta, int8_layout: str) -> onnx.ModelProto:
    """The float model of `cfg` carrying the checkpoint's own quantization as QDQ (`build --precision int8`)."""
    from .quant.nodes import float_node_names, int8_edges
    from .quant.settings import ALWAYS_FLOAT, default_settings
    from .quant.storage import drop_zero_points, store_float_weights_int8
    from .weights.tflite_qdq import (activation_quantization, drop_fused_activation_inputs, quantized_weights,
                                     symmetric_int8)

    qweights = quantized_weights(checkpoint)
    activations = activation_quantization(checkpoint, float_model)
    floating: list[str] = []
    if int8_layout == "cpu":
        # the layers `quantize` keeps float by default run float here too (the checkpoint's values, stored int8)
        qs = default_settings(cfg.arch, cfg.width)
        floating = float_node_names(float_model, (*ALWAYS_FLOAT, *qs.keep_float), qs.float_max_channels)
        qweights = {k: symmetric_int8(q) for k, q in qweights.items() if k not in floating}
        needed = int8_edges(float_model, activations, floating)
        activations = drop_fused_activation_inputs(float_model, {t: q for t, q in activations.items() if t in needed})
    dtypes = sorted({str(q.values.dtype) for q in qweights.values()})
    per_channel = any(q.scale.size > 1 for q in qweights.values())
    meta = replace(meta, precision="int8").with_extra(**{
        "quant.source": "checkpoint",
        "quant.method": "checkpoint",
        "quant.format": "qdq",
        "quant.weights": ",".join(dtypes),
        "quant.activations": ",".join(sorted({q.dtype for q in activations.values()})),
        "quant.per_channel": str(per_channel).lower(),
        "quant.layout": int8_layout,
        "quant.nodes_kept_float": json.dumps(floating),
    })
    write_meta(float_model, meta)
    model = insert_qdq(float_model, activations, qweights)
    if int8_layout == "cpu":
        store_float_weights_int8(model, floating)
        drop_zero_points(model)
    return model


POSTPROCESS = ("graph", "host")


def build_ssd_model(
    arch: str,
    width: float | None = None,
    resolution: int | None = None,
    classes: int | None = None,
    weights: str = "random",
    seed: int = 0,
    padding: str = "auto",
    opset: int = DEFAULT_OPSET,
    input_format: str = "float-nchw",
    precision: str = "fp32",
    int8_layout: str = "checkpoint",
    labels: "Sequence[str] | Path | str | None" = None,
    postprocess: str = "graph",
) -> onnx.ModelProto:
    """Build an SSD detector (`mnetctl.heads.ssd`) as an onnx.ModelProto.

    width/resolution None: the family's defaults (ssd-v1: 0.75 and 300, as the COCO checkpoint). weights, padding,
    precision and int8_layout as `build_model`, but int8_layout defaults to "checkpoint": the checkpoint's own integers
    on every layer give LiteRT's detections (the "cpu" layout's re-gridded weights move class scores by up to ~0.02 and
    flip near-tied classes); a pretrained checkpoint brings its own COCO label names.
    postprocess: "graph" (box decoding + NonMaxSuppression in the graph, TFLite's four outputs) or "host" (the graph
    ends at box encodings and class scores; `mnetctl.tasks.detection` decodes them with the same anchors).
    """
    from .graph import emit_ssd
    from .heads.ssd import decode_ssd, detection_extra

    _check_common(opset, input_format, precision, int8_layout, weights)
    if postprocess not in POSTPROCESS:
        raise BadInput(f"postprocess must be graph or host, got {postprocess!r}")
    cfg = decode_ssd(arch, width, resolution, classes)
    checkpoint = None
    if weights == "random":
        from .weights.random_init import random_weights

        params = random_weights(cfg, seed)
        anchors = cfg.anchors()
        meta = ModelMeta(task="detection", weights="random", seed=seed, label_offset=1, resize="full", crop_fraction=1.0)
    else:
        from .weights.ssd_import import load_ssd_checkpoint

        checkpoint = load_ssd_checkpoint(cfg, weights)
        params, meta, anchors = checkpoint.params, checkpoint.meta, checkpoint.anchors
        if labels is None:
            labels = checkpoint.labels
    pad = resolve_padding(padding, weights)
    meta = _spec_meta(meta, cfg, pad, opset, input_format)
    meta = meta.with_extra(**detection_extra(cfg, anchors, postprocess))
    if labels is not None:
        meta = _with_labels(meta, labels)
    float_model = emit_ssd(cfg, params, meta, anchors, padding=pad, opset=opset, input_format=input_format,
                           postprocess=postprocess)
    if checkpoint is None or precision == "fp32":
        return float_model
    _check_checkpoint_padding(pad)
    return _checkpoint_int8(cfg, checkpoint, float_model, meta, int8_layout)


def build_deeplab(
    width: float = 1.0,
    resolution: int | None = None,
    classes: int | None = None,
    weights: str = "random",
    seed: int = 0,
    padding: str = "auto",
    opset: int = DEFAULT_OPSET,
    input_format: str = "float-nchw",
    precision: str = "fp32",
    int8_layout: str = "cpu",
    labels: "Sequence[str] | Path | str | None" = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    output_stride: int | None = None,
    postprocess: str = "graph",
) -> onnx.ModelProto:
    """DeepLabV3 + MobileNetV2 (`heads.deeplab`) as an onnx.ModelProto, `mnetctl.task` = segmentation.

    weights "random": seeded He init at `resolution` (default 513), `output_stride` (default 16), `classes`
    (default 21); a checkpoint fixes the output stride and classes, and its input size is the default resolution.
    postprocess "graph": bilinear upsampling + ArgMax in the graph (int64 class map [N, R, R]); "host": the
    upsampled logits [N, K, R, R] (the task takes the argmax).
    """
    from .graph import emit_deeplab
    from .heads.deeplab import DEFAULT_OUTPUT_STRIDE, DEFAULT_RESOLUTION, PASCAL_CLASSES, decode_deeplab

    _check_common(opset, input_format, precision, int8_layout, weights)
    checkpoint = None
    if weights == "random":
        cfg = decode_deeplab(width, resolution or DEFAULT_RESOLUTION, output_stride or DEFAULT_OUTPUT_STRIDE,
                             PASCAL_CLASSES if classes is None else classes, postprocess)
        from .weights.random_init import random_weights

        params = random_weights(cfg, seed)
        meta = ModelMeta(task="segmentation", weights="random", seed=seed, resize="full", crop_fraction=1.0,
                         label_offset=0)
    else:
        from .weights.deeplab_import import load_deeplab

        checkpoint = load_deeplab(weights, width, resolution, output_stride, classes, postprocess)
        cfg, params, meta = checkpoint.cfg, checkpoint.params, checkpoint.meta
        if labels is None and checkpoint.labels is not None:
            labels = checkpoint.labels
    pad = resolve_padding(padding, weights)
    meta = _spec_meta(meta, cfg, pad, opset, input_format).with_extra(output_stride=cfg.output_stride, postprocess=cfg.postprocess)
    meta = _with_preprocessing(meta, None, mean, std)
    if labels is not None:
        meta = _with_labels(meta, labels)
    if checkpoint is None or precision == "fp32":
        return emit_deeplab(cfg, params, meta, padding=pad, opset=opset, input_format=input_format)
    _check_checkpoint_padding(pad)
    return _checkpoint_int8(cfg, checkpoint, emit_deeplab(cfg, params, meta, padding=pad, opset=opset,
                                                         input_format=input_format), meta, int8_layout)


MIN_CROP_FRACTION = 0.05  # as data.Preprocessor accepts


def _with_preprocessing(meta: ModelMeta, crop_fraction, mean, std) -> ModelMeta:
    changes = {}
    if crop_fraction is not None:
        if not MIN_CROP_FRACTION <= float(crop_fraction) <= 1.0:  # also refuses NaN
            raise BadInput(f"crop_fraction must be in {MIN_CROP_FRACTION}..1, got {crop_fraction}")
        changes["crop_fraction"] = float(crop_fraction)
    for name, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        numbers = tuple(float(v) for v in values)
        if len(numbers) == 1:
            numbers *= 3
        if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers) or (name == "std" and min(numbers) <= 0):
            raise BadInput(f"{name} must be one or three finite numbers{' > 0' if name == 'std' else ''} (pixel units), "
                           f"got {', '.join(str(v) for v in values)}")
        changes[name] = numbers
    return replace(meta, **changes) if changes else meta


def _with_labels(meta: ModelMeta, labels: "Sequence[str] | Path | str") -> ModelMeta:
    from .labels import align_labels, labels_extra, read_label_file

    if isinstance(labels, (str, Path)):
        names = read_label_file(labels, meta.classes)
    else:
        names = [str(n) for n in labels]
        if len(names) not in (meta.classes, meta.classes - 1):
            raise BadInput(f"labels: {len(names)} names but the model has {meta.classes} classes")
    names, offset = align_labels(names, meta.classes, meta.label_offset)
    return replace(meta, label_offset=offset).with_extra(**labels_extra(names))


INT8_LAYOUTS = ("cpu", "checkpoint")
PROTO_LIMIT = 2**31 - 1  # protobuf cannot serialise a message (an ONNX file without external data) larger
PROTO_MARGIN = 64 * 2**20  # room for the graph, names and metadata next to the weights


def check_fits_in_onnx(cfg) -> None:
    """Refuse, before any weight is made, a model whose float32 weights exceed what one ONNX file can hold."""
    _, params = cfg.count_macs_params()
    if 4 * params > PROTO_LIMIT - PROTO_MARGIN:
        raise BadInput(
            f"width {cfg.width:g} with {cfg.classes} classes gives {cfg.arch} {params / 1e6:,.0f} M parameters "
            f"({4 * params / 2**30:.1f} GiB of float32 weights); one ONNX file holds at most 2 GiB",
            "lower the width or the number of classes",
        )


def save_model(model: onnx.ModelProto, path: Path | str) -> Path:
    """Serialise atomically (temp file + rename). Same model proto -> same bytes."""
    path = Path(path)
    data = model.SerializeToString(deterministic=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
