"""An ONNX classifier (float or QDQ) read as a list of plain ops: what a writer for another format lowers.

Constants are resolved (a DequantizeLinear on an initializer, or the int8 storage of a float layer, Cast +
Mul, see `quant.storage`, becomes one float weight that remembers its integers); QuantizeLinear ->
DequantizeLinear pairs on activations become a quantization note on the tensor (every reader of the
dequantized copy reads the tensor itself). What remains are the compute ops, in graph order, under their
ONNX node names. An op outside the set below is a BadInput naming its node.

Activation zero points are given for int8 (a uint8 zero point z is z - 128 with the same scale: the same
real values, so int8 kernels compute the same integers shifted by 128).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInput

# ONNX op type -> the plain kind
_KINDS = {
    "Conv": "conv", "Relu": "relu", "Clip": "clip", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish",
    "Mul": "mul", "Add": "add", "GlobalAveragePool": "mean", "Flatten": "flatten", "Gemm": "fc", "Softmax": "softmax",
}


@dataclass(frozen=True)
class QParams:
    """Per-tensor int8 quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass
class Const:
    """A constant in ONNX layout, as float32, with its stored integers when the file has them."""

    value: np.ndarray
    ints: np.ndarray | None = None  # int8/uint8/int32 as stored
    scale: np.ndarray | None = None  # per tensor (size 1) or per slice along `axis`
    zero_point: np.ndarray | None = None
    axis: int = 0
    quantized: bool = False  # True: a DequantizeLinear the QDQ model runs in integers; False: float (or storage)


@dataclass
class Op:
    kind: str
    name: str  # the ONNX node name
    inputs: list[str]  # activation tensors
    output: str
    consts: list[Const] = field(default_factory=list)  # weight, bias (conv, fc) or a constant operand
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    input: str
    input_shape: tuple[int, int, int, int]  # NCHW, batch 1
    output: str
    ops: list[Op]
    quant: dict[str, QParams]  # activation tensor -> its QDQ parameters


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _int8_zero(zp: np.ndarray) -> int:
    zp = np.asarray(zp).reshape(-1)
    value = int(zp[0])
    return value - 128 if zp.dtype == np.uint8 else value


def read_graph(proto, where: str = "model") -> Graph:
    """The plain ops of an mnetctl-style classifier graph (one image input, one output)."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise BadInput(f"{where}: a classifier graph with one input and one output is needed")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or not dims[2] or not dims[3]:
        raise BadInput(f"{where}: input {inputs[0].name!r} {dims} is not a float NCHW image batch [N, 3, H, W]",
                       "build the model with --input-format float-nchw")

    consts: dict[str, Const] = {name: Const(np.asarray(v, np.float32) if v.dtype.kind == "f" else v) for name, v in inits.items()}
    alias: dict[str, str] = {}
    quant: dict[str, QParams] = {}
    q_out: dict[str, tuple[str, QParams]] = {}  # QuantizeLinear output -> (its float input, params)
    ops: list[Op] = []

    def real(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    def const_of(node, i: int) -> Const:
        name = node.input[i] if i < len(node.input) else ""
        if name not in consts:
            raise BadInput(f"{where}: node {node.name!r} ({node.op_type}) needs a constant input {i}, got {name!r}")
        return consts[name]

    for node in g.node:
        op_type = node.op_type
        ins = list(node.input)
        if op_type == "DequantizeLinear" and ins[0] in inits:
            ints = inits[ins[0]]
            scale = inits[ins[1]].astype(np.float32)
            zp = inits[ins[2]] if len(ins) > 2 and ins[2] else np.zeros(scale.shape, ints.dtype)
            axis = int(_attrs(node).get("axis", 1))
            shape = [1] * ints.ndim
            if scale.size > 1:
                shape[axis] = -1
            value = ((ints.astype(np.float64) - zp.astype(np.float64).reshape(shape)) * scale.reshape(shape)).astype(np.float32)
            consts[node.output[0]] = Const(value, ints, scale.reshape(-1), zp.reshape(-1), axis if scale.size > 1 else 0,
                                           quantized=True)
            continue
        if op_type == "Cast" and ins[0] in inits and inits[ins[0]].dtype == np.int8:
            consts[node.output[0]] = Const(inits[ins[0]].astype(np.float32), inits[ins[0]])
            continue
        if op_type == "Mul" and all(x in consts for x in ins) and consts[ins[0]].ints is not None \
                and consts[ins[0]].ints.dtype == np.int8 and not consts[ins[0]].quantized:
            store, scale = consts[ins[0]], consts[ins[1]].value
            axis = int(np.argmax(scale.shape)) if scale.size > 1 else 0
            consts[node.output[0]] = Const(store.value * scale, store.ints, scale.reshape(-1),
                                           np.zeros(scale.size, np.int8), axis)
            continue
        if op_type == "QuantizeLinear":
            scale = float(inits[ins[1]].reshape(-1)[0])
            zp = inits[ins[2]] if len(ins) > 2 and ins[2] else np.zeros(1, np.uint8)
            if zp.dtype not in (np.uint8, np.int8):
                raise BadInput(f"{where}: node {node.name!r} quantizes to {zp.dtype}; only 8-bit activations are exported")
            q_out[node.output[0]] = (real(ins[0]), QParams(scale, _int8_zero(zp)))
            continue
        if op_type == "DequantizeLinear" and ins[0] in q_out:
            source, params = q_out[ins[0]]
            quant.setdefault(source, params)
            alias[node.output[0]] = source
            continue
        kind = _KINDS.get(op_type)
        if kind is None:
            raise BadInput(f"{where}: node {node.name!r} ({op_type}) has no TFLite form in mnetctl's writer",
                           "export graphs built by mnetctl (build, quantize, train)")
        attrs = _attrs(node)
        acts = [real(x) for x in ins if x and x not in consts]
        op = Op(kind, node.name or node.output[0], acts, node.output[0], attrs=attrs)
        if kind == "conv":
            op.consts = [const_of(node, 1), const_of(node, 2) if len(ins) > 2 else None]
        elif kind == "fc":
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise BadInput(f"{where}: node {node.name!r} (Gemm) uses transA/alpha/beta, which FULLY_CONNECTED lacks")
            op.consts = [const_of(node, 1), const_of(node, 2) if len(ins) > 2 else None]
        elif kind == "clip":
            lo = float(const_of(node, 1).value) if len(ins) > 1 and ins[1] else float(attrs.get("min", -np.inf))
            hi = float(const_of(node, 2).value) if len(ins) > 2 and ins[2] else float(attrs.get("max", np.inf))
            if lo == 0.0 and hi == 6.0:
                op.kind = "relu6"
            elif lo == 0.0 and hi == np.inf:
                op.kind = "relu"
            else:
                raise BadInput(f"{where}: node {node.name!r} (Clip {lo:g}..{hi:g}) has no TFLite form in mnetctl's writer")
        elif kind == "hardsigmoid":
            if abs(attrs.get("alpha", 0.2) - 1 / 6) > 1e-6 or abs(attrs.get("beta", 0.5) - 0.5) > 1e-6:
                raise BadInput(f"{where}: node {node.name!r} (HardSigmoid) has alpha/beta other than 1/6, 1/2")
        elif kind in ("mul", "add"):
            extra = [x for x in ins if x in consts]
            if extra or len(acts) != 2:
                raise BadInput(f"{where}: node {node.name!r} ({op_type}) with a constant operand has no TFLite form "
                               "in mnetctl's writer")
        elif kind == "flatten" and attrs.get("axis", 1) != 1:
            raise BadInput(f"{where}: node {node.name!r} (Flatten axis {attrs.get('axis')}) is not a classifier flatten")
        elif kind == "softmax" and attrs.get("axis", -1) not in (-1, 1):
            raise BadInput(f"{where}: node {node.name!r} (Softmax axis {attrs.get('axis')}) is not over the classes")
        if len(acts) != (2 if kind in ("mul", "add") else 1):
            raise BadInput(f"{where}: node {node.name!r} ({op_type}) reads {len(acts)} activation tensors")
        ops.append(op)

    out = real(g.output[0].name)
    return Graph(inputs[0].name, (1, 3, int(dims[2]), int(dims[3])), out, ops, quant)


def readers(graph: Graph) -> dict[str, list[Op]]:
    found: dict[str, list[Op]] = {}
    for op in graph.ops:
        for x in op.inputs:
            found.setdefault(x, []).append(op)
    return found
