"""Per-layer MACs and parameters of any ONNX classifier (not only mnetctl's graphs).

MACs: multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul (and their quantized forms
QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger), for batch size 1.
Params: elements of the weight and bias initializers of those layers (seen through
DequantizeLinear / Cast / Transpose / Identity, so QDQ and QOperator models count the same as float).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import onnx
from onnx import shape_inference

from .errors import BadInput

# op type -> (index of the data input, index of the weight input, index of the bias input or None)
WEIGHT_OPS: dict[str, tuple[int, int, int | None]] = {
    "Conv": (0, 1, 2),
    "ConvTranspose": (0, 1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1, None),
    "ConvInteger": (0, 1, None),
    "MatMulInteger": (0, 1, None),
    "QLinearConv": (0, 3, 8),
    "QLinearMatMul": (0, 3, None),
}
# ops that only re-express a weight (quantization, layout): look through them to the initializer
PASS_THROUGH = {"DequantizeLinear", "Cast", "Identity", "Transpose", "Reshape", "QuantizeLinear"}


@dataclass
class LayerStat:
    name: str
    op: str
    output_shape: list[int | str]
    macs: int
    params: int


@dataclass
class Analysis:
    layers: list[LayerStat] = field(default_factory=list)
    macs: int = 0
    params: int = 0
    nodes: int = 0
    op_counts: dict[str, int] = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "macs": self.macs,
            "params": self.params,
            "nodes": self.nodes,
            "op_counts": dict(sorted(self.op_counts.items())),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "layers": [asdict(layer) for layer in self.layers],
        }


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append("?")
    return dims


def _per_image(dims: list[int | str]) -> int:
    """Elements of one batch item: symbolic or unknown leading dims count as 1."""
    if not dims:
        return 1
    rest = dims[1:]
    if any(not isinstance(d, int) for d in rest):
        raise ValueError("unknown non-batch dimension")
    return math.prod(rest)  # type: ignore[arg-type]


def _value_desc(vi: onnx.ValueInfoProto, where: str) -> dict:
    elem = vi.type.tensor_type.elem_type
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else "unknown"
    except (KeyError, ValueError):  # a type number ONNX does not know: a corrupt file
        raise BadInput(f"{where}: {vi.name!r} has an unknown element type {elem}") from None
    return {"name": vi.name, "dtype": dtype, "shape": _dims(vi)}


def analyze(model: onnx.ModelProto, all_nodes: bool = False, where: str = "model") -> Analysis:
    """Shape-infer `model` and count MACs/params per weight layer (all nodes listed if `all_nodes`).

    `where` names the model in errors: a BadInput for fields no count can be made from (an unknown element
    type, a weight whose shape is symbolic)."""
    try:
        inferred = shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # foreign models with custom ops: keep going with what the file declares
        inferred = model
    graph = inferred.graph
    inits = {t.name: t for t in graph.initializer}
    shapes: dict[str, list[int | str]] = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        shapes[vi.name] = _dims(vi)
    for name, t in inits.items():
        shapes[name] = list(t.dims)
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:  # Constant nodes carry weights in some exporters
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            inits[node.output[0]] = node.attribute[0].t
            shapes[node.output[0]] = list(node.attribute[0].t.dims)

    def source_init(name: str, depth: int = 0) -> onnx.TensorProto | None:
        if name in inits:
            return inits[name]
        node = producers.get(name)
        if node is None or depth > 4 or node.op_type not in PASS_THROUGH or not node.input:
            return None
        return source_init(node.input[0], depth + 1)

    def param_count(name: str) -> int:
        t = source_init(name)
        return int(math.prod(t.dims)) if t is not None else 0

    result = Analysis(nodes=len(graph.node))
    result.inputs = [_value_desc(vi, where) for vi in graph.input if vi.name not in inits]
    result.outputs = [_value_desc(vi, where) for vi in graph.output]
    for node in graph.node:
        result.op_counts[node.op_type] = result.op_counts.get(node.op_type, 0) + 1
        out_shape = shapes.get(node.output[0], []) if node.output else []
        spec = WEIGHT_OPS.get(node.op_type)
        if spec is None:
            if all_nodes:
                result.layers.append(LayerStat(node.name or node.output[0], node.op_type, out_shape, 0, 0))
            continue
        _, w_idx, b_idx = spec
        if len(node.input) <= w_idx:
            continue
        w_name = node.input[w_idx]
        w_shape = shapes.get(w_name)
        if w_shape is None and (t := source_init(w_name)) is not None:
            w_shape = list(t.dims)
        activation_product = node.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger") and source_init(w_name) is None
        if w_shape and any(not isinstance(d, int) for d in w_shape) and not activation_product:
            raise BadInput(f"{where}: weight {w_name!r} of {node.op_type} node {node.name or node.output[0]!r} has "
                           f"the symbolic shape {w_shape}; its MACs cannot be counted")
        macs = _layer_macs(node, out_shape, w_shape or [], shapes)
        params = param_count(w_name)
        if b_idx is not None and len(node.input) > b_idx and node.input[b_idx]:
            params += param_count(node.input[b_idx])
        result.layers.append(LayerStat(node.name or node.output[0], node.op_type, out_shape, macs, params))
        result.macs += macs
        result.params += params
    return result


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _layer_macs(node: onnx.NodeProto, out_shape: list, w_shape: list, shapes: dict) -> int:
    """The one MAC formula: output elements (batch 1) x reduction length of each output element."""
    try:
        out_elems = _per_image(out_shape)
    except ValueError:
        return 0
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        if len(w_shape) < 3:
            return 0
        return out_elems * math.prod(w_shape[1:])  # (C_in / groups) * kernel
    if op == "ConvTranspose":
        if len(w_shape) < 3:
            return 0
        in_shape = shapes.get(node.input[0], [])
        try:
            in_elems = _per_image(in_shape)
        except ValueError:
            return 0
        return in_elems * math.prod(w_shape[1:])
    if op == "Gemm":
        if len(w_shape) != 2:
            return 0
        k = w_shape[1] if _attr(node, "transB", 0) else w_shape[0]
        return out_elems * int(k)
    # MatMul family: reduction over the last dim of A
    a_shape = shapes.get(node.input[0], [])
    if not a_shape or not isinstance(a_shape[-1], int):
        return 0
    return out_elems * int(a_shape[-1])
