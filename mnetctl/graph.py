"""ONNX graph emission: the one module that builds MobileNet graphs (nodes, initializers, graph, model) with `onnx.helper`.

Deploy form: every conv carries a bias (batch norm folded), activations as in the papers
(ReLU6 as Clip for V1/V2; ReLU, HardSwish, HardSigmoid for V3), global average pool, classifier.
Node names are readable (`stem.conv`, `blocks.3.dw`, `blocks.3.se.reduce`, `head.fc`).

Padding policy:
  symmetric  k//2 on every side (the usual ONNX / PyTorch form)
  same       TensorFlow "SAME": total = max((ceil(in/s) - 1) * s + k - in, 0), the extra pixel at the
             end (bottom/right). The TF checkpoints need it on stride-2 layers.
Both give the same output shapes; they differ in where the zero border lies.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import BadInput
from .meta import ModelMeta, write_meta
from .specs import Act, ArchConfig, Block

Padding = Literal["symmetric", "same"]
InputFormat = Literal["float-nchw", "uint8-nhwc"]

MIN_OPSET = 13
DEFAULT_OPSET = 17
HARDSWISH_OPSET = 14  # HardSwish exists from opset 14; below, it is x * HardSigmoid(x)
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
HSIGMOID_ALPHA = 1.0 / 6.0  # relu6(x + 3) / 6, as in the papers (ONNX's default alpha is 0.2)
HSIGMOID_BETA = 0.5

Weights = dict[str, tuple[np.ndarray, np.ndarray]]


def max_opset() -> int:
    return onnx.defs.onnx_opset_version()


def validate_opset(opset: int) -> int:
    top = max_opset()
    if not MIN_OPSET <= int(opset) <= top:
        raise BadInput(f"opset must be between {MIN_OPSET} and {top}, got {opset}")
    return int(opset)


def ir_version_for(opset: int) -> int:
    """The lowest IR version that carries `opset`: older runtimes reject newer IR."""
    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)])


def pads_for(size: int, kernel: int, stride: int, padding: Padding, dilation: int = 1) -> tuple[list[int], int]:
    """ONNX pads [top, left, bottom, right] and the output size for a square input of side `size`
    (a dilated kernel spans (kernel - 1) * dilation + 1 pixels)."""
    span = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    if padding == "same":
        total = max((out - 1) * stride + span - size, 0)
        begin = total // 2
        end = total - begin
    else:
        begin = end = span // 2
        out = (size + begin + end - span) // stride + 1
    return [begin, begin, end, end], out


class _Emitter:
    """Accumulates nodes and initializers; one method per building block."""

    def __init__(self, weights: Weights, padding: Padding, opset: int):
        self.weights = weights
        self.padding = padding
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}

    # -- primitives ---------------------------------------------------------------------------
    def const(self, name: str, value: np.ndarray) -> str:
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        out = name
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def param(self, layer: str) -> tuple[str, str]:
        if layer not in self.weights:
            raise KeyError(f"no weights for layer {layer}")
        w, b = self.weights[layer]
        return (
            self.const(f"{layer}.weight", np.ascontiguousarray(w, dtype=np.float32)),
            self.const(f"{layer}.bias", np.ascontiguousarray(b, dtype=np.float32)),
        )

    def act(self, x: str, kind: Act | None, name: str) -> str:
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", [x], name)
        if kind == "relu6":
            lo = self.const("const.zero", np.array(0.0, np.float32))
            hi = self.const("const.six", np.array(6.0, np.float32))
            return self.node("Clip", [x, lo, hi], name)
        if kind == "hswish":
            if self.opset >= HARDSWISH_OPSET:
                return self.node("HardSwish", [x], name)
            gate = self.hsigmoid(x, name + ".gate")
            return self.node("Mul", [x, gate], name)
        raise ValueError(f"unknown activation {kind}")

    def hsigmoid(self, x: str, name: str) -> str:
        return self.node("HardSigmoid", [x], name, alpha=HSIGMOID_ALPHA, beta=HSIGMOID_BETA)

    def conv(self, x: str, layer: str, size: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             dilation: int = 1) -> tuple[str, int]:
        w, b = self.param(layer)
        pads, out = pads_for(size, kernel, stride, self.padding, dilation)
        attrs = {"dilations": [dilation, dilation]} if dilation != 1 else {}
        y = self.node(
            "Conv", [x, w, b], layer,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads, group=groups, **attrs,
        )
        return y, out

    # -- blocks -------------------------------------------------------------------------------
    def block(self, x: str, blk: Block, size: int, dilation: int = 1) -> tuple[str, int]:
        p = f"blocks.{blk.index}"
        inp = x
        if blk.has_expand:
            x, _ = self.conv(x, f"{p}.expand", size)
            x = self.act(x, blk.act, f"{p}.expand.act")
        x, size = self.conv(x, f"{p}.dw", size, blk.kernel, blk.stride, groups=blk.exp_ch, dilation=dilation)
        if blk.dw_act:
            x = self.act(x, blk.act, f"{p}.dw.act")
        if blk.se_ch:
            x = self.squeeze_excite(x, p)
        x, _ = self.conv(x, f"{p}.project", size)
        if blk.project_act:
            x = self.act(x, blk.act, f"{p}.project.act")
        if blk.residual:
            x = self.node("Add", [x, inp], f"{p}.add")
        return x, size

    def squeeze_excite(self, x: str, prefix: str) -> str:
        s = self.node("GlobalAveragePool", [x], f"{prefix}.se.pool")
        s, _ = self.conv(s, f"{prefix}.se.reduce", 1)
        s = self.node("Relu", [s], f"{prefix}.se.reduce.act")
        s, _ = self.conv(s, f"{prefix}.se.expand", 1)
        s = self.hsigmoid(s, f"{prefix}.se.gate")
        return self.node("Mul", [x, s], f"{prefix}.se.scale")

    def preprocess_uint8(self, x: str, meta: ModelMeta) -> str:
        """uint8 NHWC camera frame -> normalised float NCHW, inside the graph."""
        x = self.node("Cast", [x], "preprocess.cast", to=TensorProto.FLOAT)
        x = self.node("Transpose", [x], "preprocess.nchw", perm=[0, 3, 1, 2])
        mean = self.const("preprocess.mean", np.array(meta.mean, np.float32).reshape(1, 3, 1, 1))
        inv_std = self.const("preprocess.inv_std", (1.0 / np.array(meta.std, np.float32)).reshape(1, 3, 1, 1))
        x = self.node("Sub", [x, mean], "preprocess.sub_mean")
        return self.node("Mul", [x, inv_std], "preprocess.div_std")


def _image_input(e: "_Emitter", res: int, meta: ModelMeta, input_format: InputFormat):
    """The graph input and the float NCHW tensor the network reads."""
    if input_format == "float-nchw":
        return helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, res, res]), INPUT_NAME
    if input_format == "uint8-nhwc":
        graph_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", res, res, 3])
        return graph_input, e.preprocess_uint8(INPUT_NAME, meta)
    raise BadInput(f"input_format must be 'float-nchw' or 'uint8-nhwc', got {input_format!r}")


def _checked_emitter(weights: Weights, padding: Padding, opset: int) -> "_Emitter":
    opset = validate_opset(opset)
    if padding not in ("symmetric", "same"):
        raise BadInput(f"padding must be 'symmetric' or 'same', got {padding!r}")
    return _Emitter(weights, padding, opset)


def _model(e: "_Emitter", name: str, graph_input, graph_output, meta: ModelMeta, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(e.nodes, name, [graph_input], [graph_output], list(e.inits.values()))
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", e.opset)],
        producer_name="mnetctl",
        producer_version=meta.version,
        ir_version=ir_version_for(e.opset),
    )
    model.doc_string = doc
    write_meta(model, meta)
    return model


def emit(
    cfg: ArchConfig,
    weights: Weights,
    meta: ModelMeta,
    padding: Padding = "symmetric",
    opset: int = DEFAULT_OPSET,
    input_format: InputFormat = "float-nchw",
) -> onnx.ModelProto:
    """Emit the deploy-form ONNX model of `cfg` with the given weights and metadata."""
    e = _checked_emitter(weights, padding, opset)
    res = cfg.resolution
    graph_input, x = _image_input(e, res, meta, input_format)
    x, size = e.conv(x, "stem.conv", res, 3, 2)
    x = e.act(x, cfg.stem_act, "stem.act")
    for blk in cfg.blocks:
        x, size = e.block(x, blk, size)
    if cfg.last_ch:
        x, _ = e.conv(x, "head.conv", size)
        x = e.act(x, cfg.last_act, "head.conv.act")
    x = e.node("GlobalAveragePool", [x], "head.pool")
    if cfg.head_ch:
        x, _ = e.conv(x, "head.hidden", 1)
        x = e.act(x, cfg.head_act, "head.hidden.act")
    x = e.node("Flatten", [x], "head.flatten", axis=1)
    w, b = e.param("head.fc")
    e.nodes.append(helper.make_node("Gemm", [x, w, b], [OUTPUT_NAME], name="head.fc", transB=1))

    graph_output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", cfg.classes])
    doc = f"{cfg.arch} width {cfg.width:g} resolution {cfg.resolution} classes {cfg.classes}, weights {meta.weights}"
    return _model(e, f"mobilenet_{cfg.arch.replace('-', '_')}", graph_input, graph_output, meta, doc)


# --------------------------------------------------------------------------------------------
# DeepLabV3 (mnetctl.heads.deeplab): dilated V2 backbone, ASPP (image pooling + 1x1), logits, upsampling

MASK_NAME = "classes"  # int64 [batch, R, R]: the class index of every pixel (postprocess "graph")


def _resize(e: "_Emitter", x: str, size: int, name: str, out: str | None = None) -> str:
    """Bilinear resize of NCHW `x` to size x size, corners aligned (TF's resize_bilinear(align_corners=True))."""
    shape = e.node("Shape", [x], f"{name}.shape")
    start = e.const("const.i0", np.array([0], np.int64))
    stop = e.const("const.i2", np.array([2], np.int64))
    nc = e.node("Slice", [shape, start, stop], f"{name}.batch_channels")
    hw = e.const(f"{name}.hw", np.array([size, size], np.int64))
    sizes = e.node("Concat", [nc, hw], f"{name}.sizes", axis=0)
    out = out or name
    e.nodes.append(helper.make_node("Resize", [x, "", "", sizes], [out], name=name, mode="linear",
                                    coordinate_transformation_mode="align_corners"))
    return out


def emit_deeplab(
    cfg,
    weights: Weights,
    meta: ModelMeta,
    padding: Padding = "same",
    opset: int = DEFAULT_OPSET,
    input_format: InputFormat = "float-nchw",
) -> onnx.ModelProto:
    """Emit DeepLabV3 (a `heads.deeplab.DeepLabConfig`): backbone, ASPP, projection, logits, upsampling, and
    ArgMax (postprocess "graph": int64 class map `classes`) or the upsampled logits (`logits` [N, K, R, R])."""
    e = _checked_emitter(weights, padding, opset)
    res = cfg.resolution
    graph_input, x = _image_input(e, res, meta, input_format)
    x, size = e.conv(x, "stem.conv", res, 3, 2)
    x = e.act(x, cfg.stem_act, "stem.act")
    for blk, dilation in zip(cfg.blocks, cfg.dilations):
        x, size = e.block(x, blk, size, dilation)
    feat = x
    p = e.node("GlobalAveragePool", [feat], "aspp.pool")
    p, _ = e.conv(p, "aspp.pool.conv", 1)
    p = e.act(p, "relu", "aspp.pool.act")
    p = _resize(e, p, size, "aspp.pool.upsample")
    a, _ = e.conv(feat, "aspp.conv", size)
    a = e.act(a, "relu", "aspp.conv.act")
    x = e.node("Concat", [p, a], "aspp.concat", axis=1)
    x, _ = e.conv(x, "aspp.project", size)
    x = e.act(x, "relu", "aspp.project.act")
    x, _ = e.conv(x, "head.logits", size)
    if cfg.postprocess == "graph":
        x = _resize(e, x, res, "head.upsample")
        e.nodes.append(helper.make_node("ArgMax", [x], [MASK_NAME], name="head.argmax", axis=1, keepdims=0))
        graph_output = helper.make_tensor_value_info(MASK_NAME, TensorProto.INT64, ["batch", res, res])
    else:
        _resize(e, x, res, "head.upsample", out=OUTPUT_NAME)
        graph_output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", cfg.classes, res, res])
    doc = (f"{cfg.arch} width {cfg.width:g} resolution {res} output stride {cfg.output_stride} classes {cfg.classes}, "
           f"weights {meta.weights}")
    return _model(e, cfg.arch.replace("-", "_"), graph_input, graph_output, meta, doc)


# --------------------------------------------------------------------------------------------
# QDQ form: an emitted float model carrying a given integer quantization
# --------------------------------------------------------------------------------------------

QUANT_TYPES = {"uint8": (TensorProto.UINT8, np.uint8), "int8": (TensorProto.INT8, np.int8)}


class ActivationQuant(NamedTuple):
    """Per-tensor quantization of one activation tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    dtype: str  # "uint8" | "int8"


class QuantizedWeight(NamedTuple):
    """A weight layer's integers in ONNX layout (the shape of `<layer>.weight`), with its bias.

    scale/zero_point: one value (per tensor) or one per slice along `axis`; bias: int32 with
    real = bias * bias_scale (one scale, or one per output channel), as integer conv kernels expect
    (bias_scale = input scale x weight scale).
    """

    values: np.ndarray  # uint8 | int8
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int
    bias: np.ndarray  # int32
    bias_scale: np.ndarray


def _dq_params(name: str, scale: np.ndarray, zero_point: np.ndarray | None, zp_dtype) -> list[onnx.TensorProto]:
    scale = np.asarray(scale, np.float32).reshape(-1)
    tensors = []
    shape_scalar = scale.size == 1
    tensors.append(numpy_helper.from_array(scale.reshape(()) if shape_scalar else scale, f"{name}.scale"))
    if zero_point is not None:
        zp = np.asarray(zero_point).astype(zp_dtype).reshape(-1)
        if zp.size != scale.size:
            raise ValueError(f"{name}: {zp.size} zero points for {scale.size} scales")
        tensors.append(numpy_helper.from_array(zp.reshape(()) if shape_scalar else zp, f"{name}.zero_point"))
    return tensors


def insert_qdq(
    model: onnx.ModelProto,
    activations: dict[str, ActivationQuant],
    weights: dict[str, QuantizedWeight],
) -> onnx.ModelProto:
    """Rewrite an emitted float model into QDQ form (a copy; `model` is not changed).

    weights: layer name -> integers that replace the float initializers `<layer>.weight` and
    `<layer>.bias` (each becomes an integer initializer + DequantizeLinear producing the old name).
    activations: tensor name -> per-tensor parameters; a QuantizeLinear/DequantizeLinear pair is put
    on that tensor and every consumer reads the dequantized value. A graph output keeps its name
    (its producer writes `<node name>` instead). ONNX Runtime fuses such groups into integer kernels
    (QLinearConv, QLinearAdd, ...).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    names = set(inits) | {i.name for i in g.input} | {o for n in g.node for o in n.output}
    graph_outputs = {o.name for o in g.output}

    def fresh(name: str) -> str:
        if name in names:
            raise ValueError(f"insert_qdq: tensor name {name} is already taken")
        names.add(name)
        return name

    # weights: integer initializers + DequantizeLinear nodes, placed right before their first consumer
    new_inits: list[onnx.TensorProto] = []
    weight_dq: dict[str, list[onnx.NodeProto]] = {}
    replaced: set[str] = set()
    for layer in sorted(weights):
        qw = weights[layer]
        for part in ("weight", "bias"):
            target = f"{layer}.{part}"
            if target not in inits:
                raise KeyError(f"insert_qdq: the model has no initializer {target}")
            old = numpy_helper.to_array(inits[target])
            if part == "weight":
                values = np.asarray(qw.values)
                if values.dtype not in (np.uint8, np.int8):
                    raise ValueError(f"{target}: integer weights must be uint8 or int8, got {values.dtype}")
                scale, zp, axis = np.asarray(qw.scale), np.asarray(qw.zero_point), int(qw.axis)
                zp_dtype = values.dtype
            else:
                values = np.asarray(qw.bias).astype(np.int32)
                scale, zp, axis, zp_dtype = np.asarray(qw.bias_scale), None, 0, np.int32
            if values.shape != old.shape:
                raise ValueError(f"{target}: integer shape {list(values.shape)} differs from {list(old.shape)}")
            scale = np.asarray(scale, np.float32).reshape(-1)
            if scale.size > 1 and (axis >= values.ndim or values.shape[axis] != scale.size):
                raise ValueError(f"{target}: {scale.size} scales do not fit axis {axis} of {list(values.shape)}")
            qname = fresh(f"{target}.quantized")
            new_inits.append(numpy_helper.from_array(values, qname))
            params = _dq_params(target, scale, zp, zp_dtype)
            for t in params:
                fresh(t.name)
            new_inits.extend(params)
            attrs = {"axis": axis} if scale.size > 1 else {}
            node = helper.make_node(
                "DequantizeLinear", [qname] + [t.name for t in params], [target], name=f"{target}.dequantize", **attrs
            )
            weight_dq.setdefault(target, []).append(node)
            replaced.add(target)

    def qdq_pair(tensor: str, source: str, dest: str, q: ActivationQuant) -> list[onnx.NodeProto]:
        if q.dtype not in QUANT_TYPES:
            raise ValueError(f"{tensor}: activation type must be uint8 or int8, got {q.dtype}")
        info = np.iinfo(QUANT_TYPES[q.dtype][1])
        if not info.min <= int(q.zero_point) <= info.max or not float(q.scale) > 0:
            raise ValueError(f"{tensor}: invalid quantization scale {q.scale} / zero point {q.zero_point}")
        params = _dq_params(tensor, np.array([q.scale]), np.array([q.zero_point]), QUANT_TYPES[q.dtype][1])
        for t in params:
            fresh(t.name)
        new_inits.extend(params)
        quantized = fresh(f"{tensor}.quantized")
        pnames = [t.name for t in params]
        return [
            helper.make_node("QuantizeLinear", [source] + pnames, [quantized], name=f"{tensor}.quantize"),
            helper.make_node("DequantizeLinear", [quantized] + pnames, [dest], name=f"{tensor}.dequantize"),
        ]

    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input}
    missing = sorted(set(activations) - produced)
    if missing:
        raise KeyError(f"insert_qdq: no tensor named {', '.join(missing[:5])} in the model")
    rename: dict[str, str] = {}  # consumers read the dequantized tensor
    nodes: list[onnx.NodeProto] = []
    for graph_input in g.input:
        if graph_input.name in activations:
            dest = fresh(f"{graph_input.name}.dequantized")
            nodes.extend(qdq_pair(graph_input.name, graph_input.name, dest, activations[graph_input.name]))
            rename[graph_input.name] = dest
    for node in g.node:
        for i, x in enumerate(node.input):
            if x in weight_dq:
                nodes.extend(weight_dq.pop(x))
            if x in rename:
                node.input[i] = rename[x]
        tail: list[onnx.NodeProto] = []
        for j, y in enumerate(node.output):
            if y not in activations:
                continue
            if y in graph_outputs:  # keep the output's name: the producer writes under its node name
                source = fresh(node.name if node.name and node.name not in names else f"{y}.float")
                node.output[j] = source
                tail.extend(qdq_pair(y, source, y, activations[y]))
            else:
                dest = fresh(f"{y}.dequantized")
                tail.extend(qdq_pair(y, y, dest, activations[y]))
                rename[y] = dest
        nodes.append(node)
        nodes.extend(tail)
    if weight_dq:
        raise KeyError(f"insert_qdq: no node reads {', '.join(sorted(weight_dq))}")
    kept = [t for t in g.initializer if t.name not in replaced]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(out)
    return out
