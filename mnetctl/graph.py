"""ONNX graph emission: the only module that calls `onnx.helper`.

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
from typing import Literal

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
        raise BadInput(f"--opset must be between {MIN_OPSET} and {top}, got {opset}")
    return int(opset)


def ir_version_for(opset: int) -> int:
    """The lowest IR version that carries `opset`: older runtimes reject newer IR."""
    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)])


def pads_for(size: int, kernel: int, stride: int, padding: Padding) -> tuple[list[int], int]:
    """ONNX pads [top, left, bottom, right] and the output size for a square input of side `size`."""
    out = math.ceil(size / stride)
    if padding == "same":
        total = max((out - 1) * stride + kernel - size, 0)
        begin = total // 2
        end = total - begin
    else:
        begin = end = kernel // 2
        out = (size + begin + end - kernel) // stride + 1
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

    def conv(self, x: str, layer: str, size: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> tuple[str, int]:
        w, b = self.param(layer)
        pads, out = pads_for(size, kernel, stride, self.padding)
        y = self.node(
            "Conv", [x, w, b], layer,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=pads, group=groups,
        )
        return y, out

    # -- blocks -------------------------------------------------------------------------------
    def block(self, x: str, blk: Block, size: int) -> tuple[str, int]:
        p = f"blocks.{blk.index}"
        inp = x
        if blk.has_expand:
            x, _ = self.conv(x, f"{p}.expand", size)
            x = self.act(x, blk.act, f"{p}.expand.act")
        x, size = self.conv(x, f"{p}.dw", size, blk.kernel, blk.stride, groups=blk.exp_ch)
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


def emit(
    cfg: ArchConfig,
    weights: Weights,
    meta: ModelMeta,
    padding: Padding = "symmetric",
    opset: int = DEFAULT_OPSET,
    input_format: InputFormat = "float-nchw",
) -> onnx.ModelProto:
    """Emit the deploy-form ONNX model of `cfg` with the given weights and metadata."""
    opset = validate_opset(opset)
    if padding not in ("symmetric", "same"):
        raise BadInput(f"--padding must be 'symmetric' or 'same', got {padding!r}")
    e = _Emitter(weights, padding, opset)
    res = cfg.resolution
    if input_format == "float-nchw":
        graph_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, res, res])
        x = INPUT_NAME
    elif input_format == "uint8-nhwc":
        graph_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", res, res, 3])
        x = e.preprocess_uint8(INPUT_NAME, meta)
    else:
        raise BadInput(f"--input-format must be 'float-nchw' or 'uint8-nhwc', got {input_format!r}")

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
    graph = helper.make_graph(
        e.nodes, f"mobilenet_{cfg.arch.replace('-', '_')}", [graph_input], [graph_output], list(e.inits.values())
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="mnetctl",
        producer_version=meta.version,
        ir_version=ir_version_for(opset),
    )
    model.doc_string = (
        f"{cfg.arch} width {cfg.width:g} resolution {cfg.resolution} classes {cfg.classes}, weights {meta.weights}"
    )
    write_meta(model, meta)
    return model
