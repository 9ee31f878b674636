"""`build --precision int8`: the checkpoint's own quantization, placed on the graph we emit.

Two functions of an `ImportedCheckpoint`, for `graph.insert_qdq`:
  * `quantized_weights`: per layer, the integers the checkpoint stores (in the layer's ONNX shape) with
    their per-tensor or per-channel scales and zero points, and the int32 bias;
  * `activation_quantization`: for each tensor of our emitted graph, the scale/zero point of the
    checkpoint tensor holding the same value, found by following both dataflows together (`_Tracer`).
Whatever cannot be followed is an error naming our node, never a guess.
"""

from __future__ import annotations

import onnx
import tflite

from ..errors import BadInput
from ..graph import ActivationQuant, QuantizedWeight
from .tflite_import import ImportedCheckpoint
from .tflite_reader import TFLiteOp

_INT8_HINT = "build it in fp32 and quantize that with `mnetctl quantize` (calibrated on images)"
_UNARY = {  # our activation op -> TFLite ops that compute it as a separate operator
    "Relu": ("RELU", "RELU6", "RELU_N1_TO_1"),
    "Clip": ("RELU6", "RELU", "RELU_N1_TO_1"),
    "HardSwish": ("HARD_SWISH",),
}
_GATE_OPS = frozenset({"ADD", "SUB", "MUL", "DIV", "RELU", "RELU6", "MINIMUM", "MAXIMUM", "HARD_SIGMOID"})
_COPY_OPS = frozenset({"QUANTIZE", "RESHAPE", "SQUEEZE"})  # the same values, possibly requantized
_POOL_OPS = frozenset({"AVERAGE_POOL_2D", "MEAN"})
_SHAPE_OPS = frozenset({"Shape", "Slice"})  # size computations (e.g. of a Resize): integers, never quantized
_UNQUANTIZED = frozenset({"ArgMax"})  # integer outputs (the class map)
_QMIN = {"uint8": 0, "int8": -128}

Ref = tuple[int, int]  # (file index, tensor index)


def quantized_weights(ck: ImportedCheckpoint) -> dict[str, QuantizedWeight]:
    """Layer name -> the checkpoint's own integers, scales and int32 bias, in the layer's ONNX shape."""
    out: dict[str, QuantizedWeight] = {}
    for target, (_, layer) in zip(ck.cfg.param_layers(), ck.layers):
        q = layer.quantized
        if q is None:
            raise BadInput(
                f"precision int8 keeps a checkpoint's own integers, but {layer.describe()} stores "
                f"{layer.dtype} weights without integer activations and bias",
                _INT8_HINT,
            )
        values = q.values
        if values.shape != target.weight_shape:  # classifier: 1x1 conv <-> fully connected
            values = values.reshape(target.weight_shape)
        out[target.name] = q._replace(values=values)
    return out


def activation_quantization(ck: ImportedCheckpoint, model: onnx.ModelProto) -> dict[str, ActivationQuant]:
    """Tensor name of `model` (emitted from `ck.cfg`) -> the checkpoint's quantization of the same value:
    the input, every conv/activation output, pools, squeeze-excite gates and products, residual adds
    and the logits."""
    return _Tracer(ck, model).run()


class _Tracer:
    """Follows our emitted graph node by node and finds the checkpoint tensor holding the same value.

    Weight layers are anchored by the layer mapping (node name -> TFLite op); element-wise nodes are
    found as the TFLite op of the same kind reading the tensors already matched; an activation the
    converter fused into its conv (or dropped because the output range already clamps at 0) shares
    the conv's output tensor. Anything that cannot be followed is an error, never a guess.
    """

    def __init__(self, ck: ImportedCheckpoint, model: onnx.ModelProto):
        self.ck = ck
        self.graphs = [f.graph for f in ck.files]
        if any(g is None for g in self.graphs):
            raise BadInput(f"precision int8: {ck.source} was read without its dataflow")
        self.anchor: dict[str, tuple[int, int]] = {
            target.name: (fi, layer.op_index) for target, (fi, layer) in zip(ck.cfg.param_layers(), ck.layers)
        }
        self.nodes = list(model.graph.node)
        self.match: dict[str, Ref] = {}
        self.clamped: set[Ref] = set()  # conv outputs whose ReLU is fused or implied by the range

    # -- the checkpoint's graph ----------------------------------------------------------------------
    def _op(self, fi: int, k: int) -> TFLiteOp:
        return self.graphs[fi].ops[k]

    def _consumers(self, ref: Ref, names) -> list[int]:
        fi, t = ref
        return [k for k in self.graphs[fi].consumers(t) if self._op(fi, k).name in names]

    def _copies(self, ref: Ref) -> list[Ref]:
        """Tensors holding the same values: requantized, reshaped, a 1x1 pool, the next file's input."""
        fi, t = ref
        g = self.graphs[fi]
        out = []
        for k in g.consumers(t):
            op = g.ops[k]
            shape = g.shapes.get(t, ())
            one_pixel = len(shape) == 4 and shape[1] == shape[2] == 1
            if op.name in _COPY_OPS or (op.name in _POOL_OPS and one_pixel):
                out.append((fi, op.outputs[0]))
        if t in g.outputs and fi + 1 < len(self.graphs) and self.graphs[fi + 1].inputs:
            out.append((fi + 1, self.graphs[fi + 1].inputs[0]))
        return out

    def _closure(self, ref: Ref) -> list[Ref]:
        seen, todo = [ref], [ref]
        while todo:
            for nxt in self._copies(todo.pop()):
                if nxt not in seen:
                    seen.append(nxt)
                    todo.append(nxt)
        return seen

    def _fail(self, node, why: str):
        raise BadInput(
            f"precision int8: cannot follow {self.ck.source} at our node {node.name} ({node.op_type}): {why}",
            _INT8_HINT,
        )

    def _label(self, ref: Ref) -> str:
        fi, t = ref
        return f"'{self.graphs[fi].names.get(t, t)}'"

    # -- our graph -------------------------------------------------------------------------------------
    def _input(self, node, i: int = 0) -> Ref:
        name = node.input[i]
        if name not in self.match:
            self._fail(node, f"its input {name} has no counterpart in the checkpoint")
        return self.match[name]

    def run(self) -> dict[str, ActivationQuant]:
        stem = next((n for n in self.nodes if n.name == "stem.conv"), None)
        if stem is None or not self.graphs[0].inputs:
            raise BadInput("precision int8: the model has no stem.conv node or the checkpoint no input")
        self.match[stem.input[0]] = (0, self.graphs[0].inputs[0])
        producer = {o: n for n in self.nodes for o in n.output}
        gates = {  # x * HardSigmoid(x): HardSwish spelled out below opset 14
            n.input[1]: n.name for n in self.nodes
            if n.op_type == "Mul" and n.input[1] in producer and producer[n.input[1]].op_type == "HardSigmoid"
            and producer[n.input[1]].input[0] == n.input[0]
        }
        shape_tensors: set[str] = set()
        for node in self.nodes:
            if node.name.startswith(("preprocess.", "postprocess.")):
                continue  # float by design: input normalisation, a detector's box decoding and NMS
            if node.op_type == "HardSigmoid" and node.output[0] in gates:
                continue  # part of a hard-swish: quantized after the Mul
            if node.op_type in _SHAPE_OPS or (node.op_type == "Concat" and all(
                    x in shape_tensors or x not in self.match and x not in producer for x in node.input)):
                shape_tensors.add(node.output[0])
                continue
            if node.op_type in _UNQUANTIZED:
                continue
            self.match[node.output[0]] = self._follow(node, gates)
        out: dict[str, ActivationQuant] = {}
        for name, (fi, t) in self.match.items():
            q = self.graphs[fi].quant.get(t)
            if q is None:
                raise BadInput(
                    f"precision int8: {self.ck.source} has no 8-bit per-tensor quantization for its tensor "
                    f"{self._label((fi, t))} (our {name})",
                    _INT8_HINT,
                )
            out[name] = q
        return out

    def _follow(self, node, gates: dict[str, str]) -> Ref:
        op = node.op_type
        if op in ("Conv", "Gemm"):
            return self._weight_layer(node)
        if op == "Mul" and node.input[1] in gates:
            op = "HardSwish"
        if op in _UNARY:
            x = self._input(node)
            found = self._consumers(x, _UNARY[op])
            if len(found) == 1:
                return (x[0], self._op(x[0], found[0]).outputs[0])
            if x in self.clamped and op in ("Relu", "Clip"):
                return x
            self._fail(node, f"no {'/'.join(_UNARY[op])} op reads {self._label(x)} and its range is not clamped at 0")
        if op == "HardSigmoid":
            return self._gate(node)
        if op == "GlobalAveragePool":
            x = self._input(node)
            found = self._consumers(x, _POOL_OPS)
            if len(found) != 1:
                self._fail(node, f"{len(found)} pooling ops read {self._label(x)}")
            return (x[0], self._op(x[0], found[0]).outputs[0])
        if op in ("Add", "Mul"):
            return self._binary(node, op.upper())
        if op == "Transpose":  # NCHW -> NHWC before a detector's reshape: the same values
            return self._input(node)
        if op == "Sigmoid":
            x = self._input(node)
            found = self._consumers(x, ("LOGISTIC",))
            if len(found) != 1:
                self._fail(node, f"{len(found)} LOGISTIC ops read {self._label(x)}")
            return (x[0], self._op(x[0], found[0]).outputs[0])
        if op == "Resize":
            return self._resize(node)
        if op == "Concat":
            return self._concat(node)
        if op in ("Flatten", "Reshape", "Squeeze"):
            x = self._input(node)
            found = self._consumers(x, ("RESHAPE", "SQUEEZE"))
            return (x[0], self._op(x[0], found[0]).outputs[0]) if len(found) == 1 else x
        self._fail(node, "mnetctl does not know how the checkpoint computes this op")
        raise AssertionError  # unreachable

    def _weight_layer(self, node) -> Ref:
        if node.name not in self.anchor:
            self._fail(node, "no checkpoint layer is mapped to it")
        fi, k = self.anchor[node.name]
        tfl = self._op(fi, k)
        want = (fi, tfl.inputs[0])
        have = self._input(node)
        if want not in self._closure(have):
            self._fail(node, f"the checkpoint layer reads {self._label(want)}, not {self._label(have)}")
        self.match[node.input[0]] = want  # the quantization that layer's kernel actually reads
        out = (fi, tfl.outputs[0])
        q = self.graphs[fi].quant.get(tfl.outputs[0])
        if tfl.fused != tflite.ActivationFunctionType.NONE or (q is not None and q.zero_point == _QMIN[q.dtype]):
            self.clamped.add(out)
        return out

    def _resize(self, node) -> Ref:
        """The checkpoint's chain of RESIZE_BILINEAR ops reading our input (a 33 -> 33 step before 33 -> 513
        included): its last output holds our one Resize's values."""
        cur = self._input(node)
        steps = 0
        while True:
            found = [(r[0], k) for r in self._closure(cur) for k in self._consumers(r, ("RESIZE_BILINEAR",))]
            if len(found) != 1:
                break
            fi, k = found[0]
            cur, steps = (fi, self._op(fi, k).outputs[0]), steps + 1
        if steps == 0:
            self._fail(node, f"no RESIZE_BILINEAR op reads {self._label(self._input(node))}")
        return cur

    def _gate(self, node) -> Ref:
        """The element-wise chain (e.g. ADD 3, ReLU6 range, MUL 1/6) the checkpoint spells a hard sigmoid with."""
        cur = self._input(node)
        steps = 0
        while True:
            fi, t = cur
            found = self.graphs[fi].consumers(t)
            if len(found) != 1:
                break
            k = found[0]
            tfl = self._op(fi, k)
            if tfl.name not in _GATE_OPS or len(self.graphs[fi].variable_inputs(k)) != 1:
                break
            cur, steps = (fi, tfl.outputs[0]), steps + 1
        if steps == 0:
            self._fail(node, f"no element-wise ops with constants follow {self._label(self._input(node))}")
        return cur

    def _concat(self, node) -> Ref:
        """The CONCATENATION op whose inputs hold, in order, the values of ours."""
        ours = [self._closure(self._input(node, i)) for i in range(len(node.input))]
        fi = ours[0][0][0]
        g = self.graphs[fi]
        for k, tfl in enumerate(g.ops):
            ins = [(fi, t) for t in g.variable_inputs(k)]
            if tfl.name == "CONCATENATION" and len(ins) == len(ours) and all(a in c for a, c in zip(ins, ours)):
                return (fi, tfl.outputs[0])
        self._fail(node, f"no CONCATENATION op reads {', '.join(self._label(c[0]) for c in ours)} in this order")
        raise AssertionError  # unreachable

    def _binary(self, node, kind: str) -> Ref:
        a, b = self._input(node, 0), self._input(node, 1)
        fi = a[0]
        ca, cb = self._closure(a), self._closure(b)
        g = self.graphs[fi]
        for k, tfl in enumerate(g.ops):
            if tfl.name != kind:
                continue
            ins = [(fi, t) for t in g.variable_inputs(k)]
            if len(ins) == 2 and ((ins[0] in ca and ins[1] in cb) or (ins[0] in cb and ins[1] in ca)):
                return (fi, tfl.outputs[0])
        self._fail(node, f"no {kind} op reads both {self._label(a)} and {self._label(b)}")
        raise AssertionError  # unreachable


def symmetric_int8(q: QuantizedWeight) -> QuantizedWeight:
    """The checkpoint's integers as int8 with zero point 0 and one scale per output channel (axis 0).

    TFLite's uint8 weights carry a zero point (w = (q - zero_point) * scale); ONNX Runtime's CPU
    convolutions are fast only for zero-point-0 int8 weights. Each channel gets the smallest multiple m
    of the checkpoint's scale that fits its levels into +-127: the values stay exact where m = 1 (nearly
    every channel), and round onto m times the step elsewhere. The int32 bias follows its new scale.
    """
    import numpy as np

    values = np.asarray(q.values)
    channels = values.shape[0]
    zp = np.asarray(q.zero_point, np.int64).reshape(-1)
    scale = np.asarray(q.scale, np.float64).reshape(-1)
    if zp.size > 1 or scale.size > 1:
        if int(q.axis) != 0:
            raise BadInput(f"precision int8: per-channel weights on axis {q.axis} are not supported")
        zp = np.broadcast_to(zp, (channels,))
        scale = np.broadcast_to(scale, (channels,))
    else:
        zp = np.full(channels, zp[0])
        scale = np.full(channels, scale[0])
    k = values.astype(np.int64).reshape(channels, -1) - zp[:, None]
    mult = np.maximum(1, -(-np.abs(k).max(axis=1) // 127))  # ceil
    new = np.clip(np.round(k / mult[:, None]), -127, 127).astype(np.int8).reshape(values.shape)
    bias_scale = np.broadcast_to(np.asarray(q.bias_scale, np.float64).reshape(-1), (channels,))
    bias = np.round(np.asarray(q.bias, np.float64) / mult).astype(np.int32)
    return q._replace(values=new, scale=(scale * mult).astype(np.float32), zero_point=np.zeros(channels, np.int8),
                      axis=0, bias=bias, bias_scale=(bias_scale * mult).astype(np.float32))


def drop_fused_activation_inputs(model: onnx.ModelProto, activations: dict[str, ActivationQuant]) -> dict[str, ActivationQuant]:
    """Without the quantization of a conv output that only a Relu/Clip reads with the same parameters.

    The converter fused that activation into the conv, so both tensors are one checkpoint tensor; a pair
    on the conv output as well as on the activation's adds nodes (and bytes) that ONNX Runtime removes again.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for x in node.input:
            readers[x] = readers.get(x, 0) + 1
    out = dict(activations)
    for node in model.graph.node:
        if node.op_type not in ("Relu", "Clip") or not node.input or not node.output:
            continue
        x, y = node.input[0], node.output[0]
        src = producer.get(x)
        if src is not None and src.op_type == "Conv" and readers.get(x) == 1 and x in out and out.get(y) == out[x]:
            del out[x]
    return out
