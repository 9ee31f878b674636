"""ONNX graph emission: the one module that builds MobileNet graphs (nodes, initializers, graph, model) with `onnx.helper`.

Deploy form: every conv carries a bias (batch norm folded), activations as in the papers
(ReLU6 as Clip for V1/V2; ReLU, HardSwish, HardSigmoid for V3; ReLU for V4 and EdgeTPU), global average pool,
classifier. Node names are readable (`stem.conv`, `blocks.3.dw`, `blocks.3.se.reduce`, `head.fc`).

Mobile MQA (V4 hybrid) is emitted with plain ONNX ops every runtime has (Conv, Reshape, Transpose, MatMul,
Softmax, Mul, Add), not a fused attention op: the input batch norm is a 1x1 depthwise Conv (scale + shift);
queries are a 1x1 Conv to heads x key_dim, reshaped to [B, heads, HW, key_dim]; the one key head and the one
value head come from a strided 3x3 depthwise Conv (when kv_stride > 1, the paper's spatial reduction) and a
1x1 Conv, reshaped to [B, 1, key_dim, hw] / [B, 1, hw, value_dim] so that MatMul broadcasts them over the
heads; logits = (q / sqrt(key_dim)) @ k, Softmax over the last axis, @ v, back to [B, heads x value_dim, H, W]
and a 1x1 output Conv (layer scale folded in), plus the residual.

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
from .heads.ssd import BOX_ENCODINGS, CLASS_SCORES, DETECTION_OUTPUTS
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
        if blk.kind == "conv":
            x, size = self.conv(x, f"{p}.conv", size, blk.kernel, blk.stride)
            return self.act(x, blk.act, f"{p}.conv.act"), size
        if blk.kind == "mqa":
            x = self.attention(x, blk, size)
            return self.node("Add", [x, inp], f"{p}.add"), size
        if blk.kind == "fused":
            if blk.has_expand:
                x, size = self.conv(x, f"{p}.expand", size, blk.kernel, blk.stride)
                x = self.act(x, blk.act, f"{p}.expand.act")
            x, _ = self.conv(x, f"{p}.project", size)
            if blk.residual:
                x = self.node("Add", [x, inp], f"{p}.add")
            return x, size
        if blk.start_kernel:  # UIB's first depthwise conv: no activation
            x, size = self.conv(x, f"{p}.start_dw", size, blk.start_kernel, blk.start_stride, groups=blk.in_ch)
        if blk.has_expand:
            x, _ = self.conv(x, f"{p}.expand", size)
            x = self.act(x, blk.act, f"{p}.expand.act")
        if blk.kernel:
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

    def attention(self, x: str, blk: Block, size: int) -> str:
        """Mobile MQA (see the module docstring); returns the output projection, before the residual."""
        p = f"blocks.{blk.index}"
        h, dk, dv = blk.heads, blk.key_dim, blk.value_dim
        n = size * size
        x, _ = self.conv(x, f"{p}.norm", size, groups=blk.in_ch)
        q, _ = self.conv(x, f"{p}.query", size)
        q = self.node("Reshape", [q, self.const(f"{p}.query.shape", np.array([0, h, dk, n], np.int64))], f"{p}.query.heads")
        q = self.node("Transpose", [q], f"{p}.query.t", perm=[0, 1, 3, 2])  # [B, h, N, dk]
        q = self.node("Mul", [q, self.const(f"{p}.query.scale", np.array(1.0 / math.sqrt(dk), np.float32))], f"{p}.query.scaled")
        kv = {}
        for name, dim in (("key", dk), ("value", dv)):
            t, side = x, size
            if blk.kv_stride > 1:
                t, side = self.conv(t, f"{p}.{name}.dw", size, blk.kernel, blk.kv_stride, groups=blk.in_ch)
            t, _ = self.conv(t, f"{p}.{name}", side)
            shape = self.const(f"{p}.{name}.shape", np.array([0, 1, dim, side * side], np.int64))
            kv[name] = self.node("Reshape", [t, shape], f"{p}.{name}.flat")  # [B, 1, dim, M]
        v = self.node("Transpose", [kv["value"]], f"{p}.value.t", perm=[0, 1, 3, 2])  # [B, 1, M, dv]
        logits = self.node("MatMul", [q, kv["key"]], f"{p}.logits")  # [B, h, N, M]
        attn = self.node("Softmax", [logits], f"{p}.softmax", axis=-1)
        o = self.node("MatMul", [attn, v], f"{p}.context")  # [B, h, N, dv]
        o = self.node("Transpose", [o], f"{p}.context.t", perm=[0, 1, 3, 2])  # [B, h, dv, N]
        shape = self.const(f"{p}.context.shape", np.array([0, h * dv, size, size], np.int64))
        o = self.node("Reshape", [o, shape], f"{p}.context.map")
        o, _ = self.conv(o, f"{p}.output", size)
        return o

    def squeeze_excite(self, x: str, prefix: str) -> str:
        s = self.node("GlobalAveragePool", [x], f"{prefix}.se.pool")
        s, _ = self.conv(s, f"{prefix}.se.reduce", 1)
        s = self.node("Relu", [s], f"{prefix}.se.reduce.act")
        s, _ = self.conv(s, f"{prefix}.se.expand", 1)
        s = self.hsigmoid(s, f"{prefix}.se.gate")
        return self.node("Mul", [x, s], f"{prefix}.se.scale")

    def image_input(self, res: int, input_format: InputFormat, meta: ModelMeta, batch: int | str):
        """The graph's image input and the tensor the first conv reads (uint8 frames normalised in the graph)."""
        if input_format == "float-nchw":
            return helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, 3, res, res]), INPUT_NAME
        if input_format == "uint8-nhwc":
            graph_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [batch, res, res, 3])
            return graph_input, self.preprocess_uint8(INPUT_NAME, meta)
        raise BadInput(f"input_format must be 'float-nchw' or 'uint8-nhwc', got {input_format!r}")

    def preprocess_uint8(self, x: str, meta: ModelMeta) -> str:
        """uint8 NHWC camera frame -> normalised float NCHW, inside the graph."""
        x = self.node("Cast", [x], "preprocess.cast", to=TensorProto.FLOAT)
        x = self.node("Transpose", [x], "preprocess.nchw", perm=[0, 3, 1, 2])
        mean = self.const("preprocess.mean", np.array(meta.mean, np.float32).reshape(1, 3, 1, 1))
        inv_std = self.const("preprocess.inv_std", (1.0 / np.array(meta.std, np.float32)).reshape(1, 3, 1, 1))
        x = self.node("Sub", [x, mean], "preprocess.sub_mean")
        return self.node("Mul", [x, inv_std], "preprocess.div_std")

    def detection_postprocess(self, cfg, anchors: np.ndarray) -> None:
        """Box decoding (as TFLite_Detection_PostProcess: t / scale, centre + t * anchor size, exp for sizes), each
        anchor's best class, class-agnostic NonMaxSuppression, the kept detections padded to max_detections."""
        p = "postprocess"
        c = self.const
        i64 = np.int64
        scales = c(f"{p}.scales", np.array(cfg.coder.scales, np.float32))
        t = self.node("Div", [BOX_ENCODINGS, scales], f"{p}.scaled")

        def cut(x: str, start: int, end: int, axis: int, name: str) -> str:
            return self.node("Slice", [x, c(f"{p}.s{start}", np.array([start], i64)), c(f"{p}.e{end}", np.array([end], i64)),
                                       c(f"{p}.axis{axis}", np.array([axis], i64))], name)

        t_yx, t_hw = cut(t, 0, 2, 2, f"{p}.t_yx"), cut(t, 2, 4, 2, f"{p}.t_hw")
        a_yx = c(f"{p}.anchors_yx", anchors[None, :, :2].copy())
        a_hw = c(f"{p}.anchors_hw", anchors[None, :, 2:].copy())
        centre = self.node("Add", [self.node("Mul", [t_yx, a_hw], f"{p}.offset"), a_yx], f"{p}.centre")
        half = self.node("Mul", [c(f"{p}.half", np.array(0.5, np.float32)), self.node("Exp", [t_hw], f"{p}.exp")], f"{p}.half_exp")
        half = self.node("Mul", [half, a_hw], f"{p}.half_size")
        lo = self.node("Sub", [centre, half], f"{p}.min")
        hi = self.node("Add", [centre, half], f"{p}.max")
        boxes = self.node("Concat", [lo, hi], f"{p}.decoded", axis=2)  # [1, N, 4] ymin, xmin, ymax, xmax
        real = cut(CLASS_SCORES, 1, cfg.classes, 2, f"{p}.class_scores")  # background left out
        if self.opset >= 18:
            best = self.node("ReduceMax", [real, c(f"{p}.axes2", np.array([2], i64))], f"{p}.best_score", keepdims=0)
        else:
            best = self.node("ReduceMax", [real], f"{p}.best_score", axes=[2], keepdims=0)
        label = self.node("ArgMax", [real], f"{p}.best_class", axis=2, keepdims=0, select_last_index=0)
        scores3 = self.node("Unsqueeze", [best, c(f"{p}.axes1", np.array([1], i64))], f"{p}.nms_scores")
        selected = self.node("NonMaxSuppression", [
            boxes, scores3, c(f"{p}.max_out", np.array([cfg.nms.max_detections], i64)),
            c(f"{p}.iou", np.array([cfg.nms.iou], np.float32)), c(f"{p}.score_threshold", np.array([cfg.nms.score_threshold], np.float32)),
        ], f"{p}.nms", center_point_box=0)
        idx = self.node("Gather", [selected, c(f"{p}.col2", np.array(2, i64))], f"{p}.kept", axis=1)  # [K]
        axes0 = c(f"{p}.axes0", np.array([0], i64))
        kept = self.node("Shape", [idx], f"{p}.count_i64")
        missing = self.node("Sub", [c(f"{p}.max_det", np.array([cfg.nms.max_detections], i64)), kept], f"{p}.missing")
        zero = c(f"{p}.zero1", np.array([0], i64))
        pads2 = self.node("Concat", [zero, zero, missing, zero], f"{p}.pads2", axis=0)
        pads1 = self.node("Concat", [zero, missing], f"{p}.pads1", axis=0)
        cast_label = self.node("Cast", [label], f"{p}.best_class_f", to=TensorProto.FLOAT)
        for src, name, pads, out in ((boxes, "boxes", pads2, DETECTION_OUTPUTS[0]), (cast_label, "classes", pads1, DETECTION_OUTPUTS[1]),
                                     (best, "scores", pads1, DETECTION_OUTPUTS[2])):
            flat = self.node("Squeeze", [src, axes0], f"{p}.{name}_all")
            picked = self.node("Gather", [flat, idx], f"{p}.{name}_kept", axis=0)
            padded = self.node("Pad", [picked, pads], f"{p}.{name}_padded")
            self.nodes.append(helper.make_node("Unsqueeze", [padded, axes0], [out], name=f"{p}.{name}"))
        self.nodes.append(helper.make_node("Cast", [kept], [DETECTION_OUTPUTS[3]], name=f"{p}.count", to=TensorProto.FLOAT))


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
    graph_input, x = e.image_input(res, input_format, meta, "batch")

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
    graph_input, x = e.image_input(res, input_format, meta, "batch")
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
# SSD detectors: backbone taps, extra feature layers, box predictors, box decoding and NMS
# --------------------------------------------------------------------------------------------

Postprocess = Literal["graph", "host"]


def emit_ssd(
    cfg,  # heads.ssd.SSDConfig
    weights: Weights,
    meta: ModelMeta,
    anchors: np.ndarray,
    padding: Padding = "symmetric",
    opset: int = DEFAULT_OPSET,
    input_format: InputFormat = "float-nchw",
    postprocess: Postprocess = "graph",
) -> onnx.ModelProto:
    """Emit an SSD (batch 1, as TFLite's): backbone, extra layers, predictors; then, with postprocess "graph",
    box decoding with `anchors` [N, 4] (y, x, h, w) and NonMaxSuppression, ending at TFLite's four outputs
    (boxes [1, max, 4] ymin/xmin/ymax/xmax normalised, classes [1, max] without background, scores [1, max],
    count [1]); with "host", the graph ends at `box_encodings` and `class_scores` (mnetctl decodes on the host)."""
    if postprocess not in ("graph", "host"):
        raise BadInput(f"postprocess must be 'graph' or 'host', got {postprocess!r}")
    anchors = np.asarray(anchors, np.float32)
    if anchors.shape != (cfg.num_anchors, 4):
        raise ValueError(f"anchors {list(anchors.shape)} do not fit {cfg.num_anchors} anchors")
    e = _checked_emitter(weights, padding, opset)
    opset = e.opset
    res = cfg.resolution
    graph_input, x = e.image_input(res, input_format, meta, 1)
    x, size = e.conv(x, "stem.conv", res, 3, 2)
    x = e.act(x, cfg.backbone.stem_act, "stem.act")
    features: dict[str, tuple[str, int]] = {}
    for blk in cfg.backbone.blocks:
        if blk.has_expand:  # the expansion layer's output (an SSDLite tap), named by its activation node
            features[f"blocks.{blk.index}.expand"] = (f"blocks.{blk.index}.expand.act", size)
        x, size = e.block(x, blk, size)
        features[f"blocks.{blk.index}"] = (x, size)
    if cfg.uses_head_conv:
        x, _ = e.conv(x, "head.conv", size)
        x = e.act(x, cfg.backbone.last_act, "head.conv.act")
        features["head.conv"] = (x, size)
    for layers in cfg.extras:
        for layer in layers:
            x, size = e.conv(x, layer.name, size, layer.kernel, layer.stride, groups=layer.groups)
            x = e.act(x, "relu6", f"{layer.name}.act")
        features[layers[-1].name] = (x, size)
    boxes, logits = [], []
    for i, fmap in enumerate(cfg.maps):
        src, fsize = features[fmap.source]
        if fsize != fmap.size:
            raise ValueError(f"{fmap.source} is {fsize} pixels, the config says {fmap.size}")
        for part, depth, into in (("box", 4, boxes), ("cls", cfg.classes, logits)):
            name = f"heads.{i}.{part}"
            y = src
            if cfg.lite:  # SSDLite: 3x3 depthwise + ReLU6 before the 1x1 predictor
                y, _ = e.conv(src, f"{name}.dw", fsize, 3, 1, groups=fmap.channels)
                y = e.act(y, "relu6", f"{name}.dw.act")
            y, _ = e.conv(y, name, fsize)
            y = e.node("Transpose", [y], f"{name}.nhwc", perm=[0, 2, 3, 1])  # (row, column, anchor) order
            shape = e.const(f"{name}.shape", np.array([1, fsize * fsize * fmap.anchors, depth], np.int64))
            into.append(e.node("Reshape", [y, shape], f"{name}.flat"))
    e.nodes.append(helper.make_node("Concat", boxes, [BOX_ENCODINGS], name="heads.box.concat", axis=1))
    e.node("Concat", logits, "heads.cls.concat", axis=1)
    e.nodes.append(helper.make_node("Sigmoid", ["heads.cls.concat"], [CLASS_SCORES], name="heads.cls.sigmoid"))
    n = cfg.num_anchors
    if postprocess == "host":
        outputs = [helper.make_tensor_value_info(BOX_ENCODINGS, TensorProto.FLOAT, [1, n, 4]),
                   helper.make_tensor_value_info(CLASS_SCORES, TensorProto.FLOAT, [1, n, cfg.classes])]
    else:
        e.detection_postprocess(cfg, anchors)
        m = cfg.nms.max_detections
        outputs = [helper.make_tensor_value_info(DETECTION_OUTPUTS[0], TensorProto.FLOAT, [1, m, 4]),
                   helper.make_tensor_value_info(DETECTION_OUTPUTS[1], TensorProto.FLOAT, [1, m]),
                   helper.make_tensor_value_info(DETECTION_OUTPUTS[2], TensorProto.FLOAT, [1, m]),
                   helper.make_tensor_value_info(DETECTION_OUTPUTS[3], TensorProto.FLOAT, [1])]
    graph = helper.make_graph(e.nodes, cfg.arch.replace("-", "_"), [graph_input], outputs, list(e.inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="mnetctl",
                              producer_version=meta.version, ir_version=ir_version_for(opset))
    model.doc_string = (f"{cfg.arch} width {cfg.width:g} resolution {cfg.resolution} classes {cfg.classes}, "
                        f"{n} anchors, postprocess {postprocess}, weights {meta.weights}")
    write_meta(model, meta)
    return model


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
