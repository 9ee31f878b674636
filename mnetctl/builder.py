"""specs -> weights -> graph -> model.onnx: the `build` job as a library function."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

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
    width: float = 1.0,
    resolution: int = 224,
    classes: int | None = None,
    weights: str = "random",
    seed: int = 0,
    padding: str = "auto",
    opset: int = DEFAULT_OPSET,
    input_format: str = "float-nchw",
    precision: str = "fp32",
) -> onnx.ModelProto:
    """Build a MobileNet as an onnx.ModelProto.

    weights: "random" (seeded He init), "pretrained" (the shipped checkpoint for arch/width), or a
    path to a TFLite checkpoint of the same architecture.
    classes: default 1000 for random weights; TF checkpoints fix it (1001, label offset 1).
    precision: "fp32" (float weights, dequantized from a checkpoint) or "int8": a QDQ model carrying the
    checkpoint's own quantization (its integer weights, scales and zero points, and its activation
    quantization); needs an integer checkpoint.
    """
    validate_opset(opset)
    if input_format not in ("float-nchw", "uint8-nhwc"):
        raise BadInput(f"input_format must be 'float-nchw' or 'uint8-nhwc', got {input_format!r}")
    if precision not in ("fp32", "int8"):
        raise BadInput(f"precision must be fp32 or int8, got {precision!r}")
    if precision == "int8" and weights == "random":
        raise BadInput(
            "--precision int8 imports a quantized checkpoint's own quantization; random weights have none",
            "use --weights pretrained or a .tflite checkpoint, or build fp32 and run `mnetctl quantize`",
        )
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
    meta = replace(
        meta,
        arch=cfg.arch,
        width=cfg.width,
        resolution=cfg.resolution,
        classes=cfg.classes,
        padding=pad,
        opset=opset,
        input_format=input_format,
        layout="NHWC" if input_format == "uint8-nhwc" else "NCHW",
        version=__version__,
    )
    if checkpoint is None or precision == "fp32":
        return emit(cfg, params, meta, padding=pad, opset=opset, input_format=input_format)
    if pad != "same":
        raise BadInput("precision int8 needs the checkpoint's own padding: use --padding auto or same")
    from .weights.tflite_qdq import activation_quantization, quantized_weights

    qweights = quantized_weights(checkpoint)
    dtypes = sorted({str(q.values.dtype) for q in qweights.values()})
    per_channel = any(q.scale.size > 1 for q in qweights.values())
    float_model = emit(cfg, params, meta, padding=pad, opset=opset, input_format=input_format)
    activations = activation_quantization(checkpoint, float_model)
    meta = replace(meta, precision="int8").with_extra(**{
        "quant.source": "checkpoint",
        "quant.method": "checkpoint",
        "quant.format": "qdq",
        "quant.weights": ",".join(dtypes),
        "quant.activations": ",".join(sorted({q.dtype for q in activations.values()})),
        "quant.per_channel": str(per_channel).lower(),
    })
    write_meta(float_model, meta)
    return insert_qdq(float_model, activations, qweights)


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
