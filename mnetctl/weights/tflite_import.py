"""Import the weights of a TFLite MobileNet checkpoint into the graphs `mnetctl.graph` emits.

Why the `tflite` package: a checkpoint is a FlatBuffer following TensorFlow Lite's `schema.fbs`. The
`tflite` package is that schema compiled to pure-Python FlatBuffers accessors (plus the `flatbuffers`
runtime): a few hundred kilobytes, no native code, no TensorFlow. It reads every tensor's raw bytes,
shape, type and quantization parameters and every operator's options (padding, strides, fused
activation) directly from the file. An interpreter (LiteRT) would have to allocate and prepare the
whole model to expose its tensors, hides the options we check, and is a large native wheel that is not
available on every platform; mnetctl uses it only in tests, as the reference that our imported models
are compared against.

What the import does, for one file or a feature extractor + classifier head applied in order:
  * walk the operators of the main subgraph in order and collect the weight layers (CONV_2D,
    DEPTHWISE_CONV_2D, FULLY_CONNECTED); quantize/reshape/softmax/pool ops and the element-wise ops of
    residual adds, squeeze-excite gates and hard-swish carry no weights and are passed over;
  * dequantize to float32: uint8 per-tensor (scale, zero point), int8 per-channel (along the tensor's
    quantized dimension), int32 biases with their own scale (input scale x weight scale when absent),
    float16 weights behind a DEQUANTIZE op; float32 tensors pass through;
  * convert layouts: CONV_2D [O, H, W, I] -> OIHW; DEPTHWISE_CONV_2D [1, H, W, C*m] -> [C*m, 1, H, W];
    a 1x1 classifier conv [N, 1, 1, C] or FULLY_CONNECTED [N, C] -> [N, C];
  * map the layers by order onto `ArchConfig.param_layers()`, checking at every step the weight shape,
    the stride, the padding (TF "SAME", which the graph reproduces) and the kind of activation that
    follows; the first difference is an error naming the layer on both sides. Layer counts must agree.

For `build --precision int8` the same reading also keeps what the checkpoint stores as integers
(`TFLiteLayer.quantized`: weights in ONNX layout with their per-tensor or per-channel scales and zero
points, the int32 bias) and its dataflow (`TFLiteGraph`: operators, tensor quantization), so that
`ImportedCheckpoint.activation_quantization` can find, for each tensor of our emitted graph, the
checkpoint tensor holding the same value and hand its scale/zero point to `graph.insert_qdq`.

The metadata of the result says how the checkpoint wants its input: 1001 classes with background at
index 0 (label offset 1), RGB, and mean/std from the input tensor's quantization (a uint8 pixel p is the
real value scale * (p - zero_point), i.e. mean = zero_point, std = 1 / scale); float inputs get the
usual MobileNet [-1, 1] scaling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInput, EnvironmentMissing, MnetctlError
from ..graph import ActivationQuant, QuantizedWeight
from ..meta import DEFAULT_CROP, TF_MEAN, TF_STD, ModelMeta
from ..specs import FAMILIES, ArchConfig, ParamLayer, decode, format_width
from . import registry

Weights = dict[str, tuple[np.ndarray, np.ndarray]]

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Operators that may appear between the weight layers of a MobileNet checkpoint and carry no weights.
PASS_OPS = frozenset({
    "QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "SOFTMAX", "AVERAGE_POOL_2D", "MEAN", "ADD", "MUL",
    "SUB", "DIV", "HARD_SWISH", "RELU", "RELU6", "LOGISTIC", "PAD", "PADV2",
})
BACKGROUND_CLASSES = 1001  # the TF-slim checkpoints: class 0 is "background"
SHA_CHARS = 16

# TFLite schema enums (tflite.TensorType, tflite.Padding, tflite.ActivationFunctionType).
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8, 10: np.float64}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 10: "float64", 17: "int4"}
_PAD_SAME = 0
_FUSED_RELU = {1: "relu", 3: "relu"}  # RELU, RELU6 (same family for the structure check)


@dataclass(frozen=True)
class TFLiteLayer:
    """One weight layer of a checkpoint, already in ONNX layout and float32."""

    file: str
    index: int  # position among the weight layers of its file
    op_index: int
    op: str  # CONV_2D | DEPTHWISE_CONV_2D | FULLY_CONNECTED
    name: str  # the weight tensor's name (first alias)
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    padding: str  # "same", "valid" (harmless only for 1x1 stride-1 convs) or "explicit [t, l, b, r]"
    # "none", "relu" (ReLU/ReLU6), "hswish", "relu-range" (output range starts at 0: a ReLU, or a
    # layer whose values happened to be >= 0 when the ranges were calibrated); None: cannot tell
    activation: str | None
    dtype: str  # storage type of the weights (uint8, int8, float16, float32)
    # the stored integers (ONNX layout) with their scales and the int32 bias; None for float weights
    quantized: QuantizedWeight | None = None

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1]) if self.weight.ndim == 4 else 1

    def describe(self) -> str:
        return f"{self.file} layer {self.index} ({self.op} op {self.op_index} '{self.name}')"


@dataclass(frozen=True)
class TFLiteCheckpoint:
    """What mnetctl reads from one .tflite file."""

    path: Path
    layers: tuple[TFLiteLayer, ...]
    input_shape: tuple[int, ...]
    input_dtype: str
    input_scale: float | None
    input_zero_point: int | None
    sha256: str
    description: str = ""
    ops: tuple[str, ...] = field(default_factory=tuple)
    graph: TFLiteGraph | None = None


@dataclass(frozen=True)
class TFLiteOp:
    name: str
    inputs: tuple[int, ...]  # tensor indices, -1 for an absent optional input
    outputs: tuple[int, ...]
    fused: int = 0  # fused activation (tflite.ActivationFunctionType) of weight ops


@dataclass(frozen=True)
class TFLiteGraph:
    """The dataflow of a checkpoint's main subgraph: what its integer activations are, and where."""

    ops: tuple[TFLiteOp, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    constants: frozenset[int]  # tensors with data in the file
    quant: dict[int, ActivationQuant]  # integer tensors quantized per tensor
    shapes: dict[int, tuple[int, ...]]
    names: dict[int, str]

    def consumers(self, t: int) -> list[int]:
        return [k for k, op in enumerate(self.ops) if t in op.inputs]

    def variable_inputs(self, k: int) -> list[int]:
        return [t for t in self.ops[k].inputs if t >= 0 and t not in self.constants]


# --------------------------------------------------------------------------------------------
# Reading a .tflite file
# --------------------------------------------------------------------------------------------


def read_tflite(path: Path | str) -> TFLiteCheckpoint:
    """Parse a .tflite file into its weight layers (ONNX layout, float32) and input description."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint {path} does not exist or is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    import tflite

    if len(data) < 8 or not tflite.Model.ModelBufferHasIdentifier(data, 0):
        raise BadInput(f"{path} is not a TFLite model (no 'TFL3' FlatBuffer identifier)")
    try:
        return _Reader(path, data, tflite).read()
    except MnetctlError:
        raise
    except Exception as exc:  # a truncated or corrupt FlatBuffer surfaces as an arbitrary exception
        raise BadInput(f"{path} is not a readable TFLite model ({type(exc).__name__}: {exc})") from None


class _Reader:
    def __init__(self, path: Path, data: bytes, tflite_mod):
        from tflite.utils import BUILTIN_OPCODE2NAME

        self.path = path
        self.file = path.name
        self.data = data
        self.tfl = tflite_mod
        self.model = tflite_mod.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() < 1:
            raise BadInput(f"{path} has no subgraph")
        self.graph = self.model.Subgraphs(0)
        self.opnames = BUILTIN_OPCODE2NAME
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            for t in op.OutputsAsNumpy().tolist():
                self.producer[t] = k
            for t in self._inputs(op):
                if t >= 0:
                    self.consumers.setdefault(t, []).append(k)

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _inputs(op) -> list[int]:
        return op.InputsAsNumpy().tolist() if op.InputsLength() else []

    def op_name(self, k: int) -> str:
        code = self.model.OperatorCodes(self.graph.Operators(k).OpcodeIndex())
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if number == 32:  # CUSTOM
            custom = code.CustomCode()
            return f"CUSTOM:{custom.decode(errors='replace') if custom else '?'}"
        return self.opnames.get(number, f"OP{number}")

    def tensor(self, i: int):
        return self.graph.Tensors(i)

    def tensor_name(self, i: int) -> str:
        raw = self.tensor(i).Name()
        name = raw.decode(errors="replace") if raw else f"tensor{i}"
        return name.split(";")[0]

    def shape(self, i: int) -> tuple[int, ...]:
        t = self.tensor(i)
        return tuple(int(d) for d in t.ShapeAsNumpy().tolist()) if t.ShapeLength() else ()

    def quant(self, i: int) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        q = self.tensor(i).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None, None, 0
        scale = q.ScaleAsNumpy().astype(np.float64)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros_like(scale, np.int64)
        return scale, zp, int(q.QuantizedDimension())

    def raw(self, i: int) -> bytes | None:
        t = self.tensor(i)
        buf = self.model.Buffers(t.Buffer())
        if buf is None:
            return None
        offset, size = buf.Offset(), buf.Size()
        if offset > 1:  # large models keep buffers after the FlatBuffer
            return self.data[offset: offset + size]
        if buf.DataLength() == 0:
            return None
        return buf.DataAsNumpy().tobytes()

    def constant(self, i: int, what: str, k: int) -> tuple[np.ndarray, str]:
        """The float32 value of a constant tensor (following a DEQUANTIZE producer) and its storage type."""
        raw = self.raw(i)
        if raw is None and i in self.producer and self.op_name(self.producer[i]) == "DEQUANTIZE":
            i = self._inputs(self.graph.Operators(self.producer[i]))[0]
            raw = self.raw(i)
        if raw is None:
            raise BadInput(f"{self.file}: the {what} of op {k} ({self.op_name(k)}) is not a constant tensor")
        t = self.tensor(i)
        if t.Sparsity() is not None:
            raise BadInput(f"{self.file}: the {what} of op {k} is stored sparse, which mnetctl cannot import")
        ttype = t.Type()
        if ttype not in _NUMPY_TYPES:
            raise BadInput(
                f"{self.file}: the {what} of op {k} has storage type {_TYPE_NAMES.get(ttype, ttype)}, "
                "which mnetctl cannot import (supported: float32, float16, uint8, int8, int16, int32, int64)"
            )
        shape = self.shape(i)
        arr = np.frombuffer(raw, dtype=_NUMPY_TYPES[ttype])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise BadInput(f"{self.file}: the {what} of op {k} has {arr.size} values for shape {list(shape)}")
        arr = arr.reshape(shape)
        if arr.dtype.kind == "f":
            return arr.astype(np.float32), _TYPE_NAMES[ttype]
        scale, zp, axis = self.quant(i)
        if scale is None:
            raise BadInput(f"{self.file}: the integer {what} of op {k} has no quantization parameters")
        return _dequantize(arr, scale, zp, axis), _TYPE_NAMES[ttype]

    def options(self, k: int, name: str):
        table = self.graph.Operators(k).BuiltinOptions()
        if table is None:
            return None
        cls = {
            "CONV_2D": self.tfl.Conv2DOptions,
            "DEPTHWISE_CONV_2D": self.tfl.DepthwiseConv2DOptions,
            "FULLY_CONNECTED": self.tfl.FullyConnectedOptions,
        }[name]
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    # -- weight layers -----------------------------------------------------------------------------
    def read(self) -> TFLiteCheckpoint:
        layers: list[TFLiteLayer] = []
        ops: list[str] = []
        for k in range(self.graph.OperatorsLength()):
            name = self.op_name(k)
            ops.append(name)
            if name in WEIGHT_OPS:
                layers.append(self.layer(k, name, len(layers)))
            elif name not in PASS_OPS:
                raise BadInput(
                    f"{self.file}: op {k} is {name}, which is not part of a MobileNet; "
                    "mnetctl imports MobileNet V1/V2/V3 checkpoints only"
                )
        inputs = self.graph.InputsAsNumpy().tolist() if self.graph.InputsLength() else []
        if not inputs:
            raise BadInput(f"{self.file} declares no input tensor")
        first = inputs[0]
        scale, zp, _ = self.quant(first)
        ttype = self.tensor(first).Type()
        desc = self.model.Description()
        return TFLiteCheckpoint(
            path=self.path,
            layers=tuple(layers),
            input_shape=self.shape(first),
            input_dtype=_TYPE_NAMES.get(ttype, str(ttype)),
            input_scale=None if scale is None else float(scale[0]),
            input_zero_point=None if zp is None else int(zp[0]),
            sha256=hashlib.sha256(self.data).hexdigest(),
            description=desc.decode(errors="replace") if desc else "",
            ops=tuple(ops),
            graph=self.dataflow(inputs),
        )

    def dataflow(self, inputs: list[int]) -> TFLiteGraph:
        ops = []
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            name = self.op_name(k)
            fused = 0
            if name in WEIGHT_OPS:
                opts = self.options(k, name)
                fused = opts.FusedActivationFunction() if opts is not None else 0
            ops.append(TFLiteOp(name, tuple(self._inputs(op)), tuple(op.OutputsAsNumpy().tolist()), fused))
        constants, quant, shapes, names = set(), {}, {}, {}
        for i in range(self.graph.TensorsLength()):
            if self.raw(i) is not None:
                constants.add(i)
                continue
            shapes[i] = self.shape(i)
            names[i] = self.tensor_name(i)
            scale, zp, _ = self.quant(i)
            dtype = _TYPE_NAMES.get(self.tensor(i).Type())
            if scale is not None and len(scale) == 1 and dtype in ("uint8", "int8"):
                quant[i] = ActivationQuant(float(np.float32(scale[0])), int(zp[0]), dtype)
        outputs = self.graph.OutputsAsNumpy().tolist() if self.graph.OutputsLength() else []
        return TFLiteGraph(tuple(ops), tuple(inputs), tuple(outputs), frozenset(constants), quant, shapes, names)

    def integer_constant(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
        """(values, scales, zero points, quantized dim) of a uint8/int8 constant stored as it is used."""
        raw = self.raw(i)
        t = self.tensor(i)
        if raw is None or t.Type() not in (3, 9):
            return None
        scale, zp, axis = self.quant(i)
        if scale is None:
            return None
        arr = np.frombuffer(raw, dtype=_NUMPY_TYPES[t.Type()]).reshape(self.shape(i))
        return arr, scale, zp, axis

    def quantized_weight(self, k: int, name: str, x_in: int, w_in: int, b_in: int, cout: int) -> QuantizedWeight | None:
        """The layer's integers in ONNX layout when weights and input are integer-quantized."""
        got = self.integer_constant(w_in)
        in_scale, _, _ = self.quant(x_in)
        if got is None or in_scale is None or len(in_scale) != 1:
            return None
        w, scale, zp, qdim = got
        if name == "CONV_2D":
            values, axis = w.transpose(0, 3, 1, 2), {0: 0}.get(qdim)
        elif name == "DEPTHWISE_CONV_2D":
            values, axis = w[0].transpose(2, 0, 1)[:, None, :, :], {3: 0}.get(qdim)
        else:
            values, axis = w, {0: 0}.get(qdim)
        if scale.size > 1 and (axis is None or scale.size != cout):
            return None
        zp = zp if zp.size == scale.size else np.zeros(scale.size, np.int64)
        w_scale = scale.astype(np.float32)
        bias_scale = (np.float64(np.float32(in_scale[0])) * w_scale.astype(np.float64)).astype(np.float32)
        if b_in < 0:
            bias = np.zeros(cout, np.int32)
        else:
            raw = self.raw(b_in)
            t = self.tensor(b_in)
            if raw is None or t.Type() != 2:  # integer kernels need the int32 bias of the checkpoint
                return None
            bias = np.frombuffer(raw, np.int32).reshape(-1)
            own, _, _ = self.quant(b_in)
            if own is not None:
                bias_scale = own.astype(np.float32)
        if bias.size != cout:
            return None
        return QuantizedWeight(
            values=np.ascontiguousarray(values), scale=w_scale, zero_point=zp.astype(w.dtype), axis=axis or 0,
            bias=bias.astype(np.int32), bias_scale=bias_scale,
        )

    def layer(self, k: int, name: str, index: int) -> TFLiteLayer:
        op = self.graph.Operators(k)
        ins = self._inputs(op)
        if len(ins) < 2:
            raise BadInput(f"{self.file}: op {k} ({name}) has no weight input")
        x_in, w_in = ins[0], ins[1]
        b_in = ins[2] if len(ins) > 2 else -1
        w, dtype = self.constant(w_in, "weight", k)
        opts = self.options(k, name)
        if name == "FULLY_CONNECTED":
            if w.ndim != 2:
                raise BadInput(f"{self.file}: FULLY_CONNECTED op {k} has a weight of rank {w.ndim}, expected 2")
            weight, stride, padding = w, 1, "same"
        else:
            if w.ndim != 4:
                raise BadInput(f"{self.file}: {name} op {k} has a weight of rank {w.ndim}, expected 4")
            if opts is not None and (opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1):
                raise BadInput(f"{self.file}: {name} op {k} is dilated, which MobileNets are not")
            sh, sw = (opts.StrideH(), opts.StrideW()) if opts is not None else (1, 1)
            if sh != sw:
                raise BadInput(f"{self.file}: {name} op {k} has unequal strides {sh}x{sw}")
            stride = int(sh)
            if name == "CONV_2D":  # [O, H, W, I] -> [O, I, H, W]
                weight = w.transpose(0, 3, 1, 2)
            else:  # [1, H, W, C*m] -> [C*m, 1, H, W]
                if w.shape[0] != 1:
                    raise BadInput(f"{self.file}: DEPTHWISE_CONV_2D op {k} has weight shape {list(w.shape)}")
                weight = w[0].transpose(2, 0, 1)[:, None, :, :]
            padding = self.padding(k, opts, x_in, int(w.shape[1]), int(w.shape[2]), stride)
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        cout = int(weight.shape[0])
        bias = self.bias(k, b_in, x_in, w_in, cout)
        return TFLiteLayer(
            file=self.file, index=index, op_index=k, op=name, name=self.tensor_name(w_in), weight=weight,
            bias=bias, stride=stride, padding=padding, activation=self.activation(k, opts), dtype=dtype,
            quantized=self.quantized_weight(k, name, x_in, w_in, b_in, cout),
        )

    def bias(self, k: int, b_in: int, x_in: int, w_in: int, cout: int) -> np.ndarray:
        if b_in < 0:
            return np.zeros(cout, np.float32)
        raw = self.raw(b_in)
        t = self.tensor(b_in)
        if raw is not None and t.Type() in (2, 4):  # int32 / int64 bias
            scale, zp, axis = self.quant(b_in)
            q = np.frombuffer(raw, dtype=_NUMPY_TYPES[t.Type()]).reshape(self.shape(b_in))
            if scale is None:  # the schema says bias scale = input scale x weight scale
                in_scale, _, _ = self.quant(x_in)
                w_scale, _, _ = self.quant(w_in)
                if in_scale is None or w_scale is None:
                    raise BadInput(f"{self.file}: the integer bias of op {k} has no scale")
                scale, zp, axis = in_scale[0] * w_scale, np.zeros(len(w_scale), np.int64), 0
            b = _dequantize(q, scale, zp, axis)
        else:
            b, _ = self.constant(b_in, "bias", k)
        b = b.reshape(-1).astype(np.float32)
        if b.size != cout:
            raise BadInput(f"{self.file}: op {k} has {b.size} biases for {cout} output channels")
        return b

    def padding(self, k: int, opts, x_in: int, kh: int, kw: int, stride: int) -> str:
        mode = opts.Padding() if opts is not None else _PAD_SAME
        if mode == _PAD_SAME:
            return "same"
        # VALID after an explicit PAD: equivalent to SAME when the amounts are SAME's for that input.
        if x_in in self.producer and self.op_name(self.producer[x_in]).startswith("PAD"):
            pad_op = self.graph.Operators(self.producer[x_in])
            pad_ins = self._inputs(pad_op)
            raw = self.raw(pad_ins[1]) if len(pad_ins) > 1 else None
            shape = self.shape(pad_ins[0])
            if raw is not None and len(shape) == 4:
                ptype = _NUMPY_TYPES.get(self.tensor(pad_ins[1]).Type(), np.int32)
                pads = np.frombuffer(raw, dtype=ptype).reshape(-1, 2).tolist()
                (t, b), (l, r) = pads[1], pads[2]
                if [t, b] == _same_pads(shape[1], kh, stride) and [l, r] == _same_pads(shape[2], kw, stride):
                    return "same"
                return f"explicit [{t}, {l}, {b}, {r}]"
        return "valid"

    def activation(self, k: int, opts) -> str | None:
        """The kind of nonlinearity applied to the op's output: fused, a following op, or the clamp
        that the output quantization range implies (converters drop a fused ReLU it makes redundant)."""
        fused = opts.FusedActivationFunction() if opts is not None else 0
        if fused in _FUSED_RELU:
            return _FUSED_RELU[fused]
        if fused != 0:
            return None
        out = self.graph.Operators(k).OutputsAsNumpy().tolist()[0]
        users = [self.op_name(c) for c in self.consumers.get(out, [])]
        if users == ["HARD_SWISH"]:
            return "hswish"
        if users and set(users) <= {"RELU", "RELU6"}:
            return "relu"
        scale, zp, _ = self.quant(out)
        if scale is not None and len(scale) == 1:
            ttype = self.tensor(out).Type()
            qmin = {3: 0, 9: -128, 7: -32768}.get(ttype)
            if qmin is not None and int(zp[0]) == qmin:
                return "relu-range"
        for c in self.consumers.get(out, []):
            user = self.op_name(c)
            if user == "LOGISTIC" or (user in ("ADD", "SUB", "MUL", "DIV") and self._has_constant_input(c)):
                return None  # maybe a gate or an activation spelled out element-wise: cannot tell
        return "none"

    def _has_constant_input(self, k: int) -> bool:
        return any(i >= 0 and self.raw(i) is not None for i in self._inputs(self.graph.Operators(k)))


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """real = scale * (q - zero_point), per tensor or per channel along `axis`."""
    scale = np.asarray(scale, np.float64).reshape(-1)
    zero_point = np.asarray(zero_point, np.int64).reshape(-1)
    if scale.size > 1:
        if not 0 <= axis < q.ndim or q.shape[axis] != scale.size:
            raise BadInput(f"per-channel quantization with {scale.size} scales does not fit shape {list(q.shape)}")
        bshape = [1] * q.ndim
        bshape[axis] = scale.size
        scale = scale.reshape(bshape)
        zero_point = (zero_point if zero_point.size == scale.size else np.zeros(scale.size, np.int64)).reshape(bshape)
    else:
        zero_point = zero_point[:1] if zero_point.size else np.zeros(1, np.int64)
    return ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)


def _same_pads(size: int, kernel: int, stride: int) -> list[int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total - total // 2]


# --------------------------------------------------------------------------------------------
# Mapping onto an ArchConfig
# --------------------------------------------------------------------------------------------


def expected_activations(cfg: ArchConfig) -> dict[str, str | None]:
    """Kind of nonlinearity after each weight layer of our graph (None: not checked, e.g. the SE gate)."""
    family = {"relu": "relu", "relu6": "relu", "hswish": "hswish", None: "none"}
    acts: dict[str, str | None] = {"stem.conv": family[cfg.stem_act]}
    for b in cfg.blocks:
        p = f"blocks.{b.index}"
        acts[f"{p}.expand"] = family[b.act]
        acts[f"{p}.dw"] = family[b.act] if b.dw_act else "none"
        acts[f"{p}.se.reduce"] = "relu"
        acts[f"{p}.se.expand"] = None
        acts[f"{p}.project"] = family[b.act] if b.project_act else "none"
    acts["head.conv"] = family[cfg.last_act]
    acts["head.hidden"] = family[cfg.head_act]
    acts["head.fc"] = "none"
    return acts


def activation_fits(found: str | None, want: str | None) -> bool:
    """Whether the activation seen in a checkpoint can be the one our graph has (None: unchecked)."""
    if found is None or want is None:
        return True
    if found == "relu-range":  # a range clamped at 0 cannot tell a ReLU from a non-negative layer
        return want in ("relu", "none")
    return found == want


def _as_target(layer: TFLiteLayer, target: ParamLayer) -> np.ndarray:
    """The checkpoint weight reshaped to the target's rank where that is a pure reshape (1x1 conv <-> fc)."""
    w = layer.weight
    if target.kind == "fc" and w.ndim == 4 and w.shape[2:] == (1, 1):
        return w.reshape(w.shape[0], w.shape[1])
    if target.kind != "fc" and w.ndim == 2 and target.kernel == 1:
        return w.reshape(w.shape[0], w.shape[1], 1, 1)
    return w


def _shapes_fit(layers: list[TFLiteLayer], targets: list[ParamLayer]) -> bool:
    if len(layers) != len(targets):
        return False
    return all(_as_target(a, b).shape == b.weight_shape and a.stride == b.stride for a, b in zip(layers, targets))


def guess_architecture(layers: list[TFLiteLayer]) -> tuple[str, float] | None:
    """The (arch, width) whose weight layers this checkpoint fills exactly, if any."""
    if not layers:
        return None
    classes = int(layers[-1].weight.shape[0])
    for fam in FAMILIES.values():
        widths = sorted(set(fam.widths) | set(registry.widths_with_weights(fam.name)))
        for width in widths:
            cfg = decode(fam.name, width, fam.default_resolution, classes)
            if _shapes_fit(layers, cfg.param_layers()):
                return fam.name, width
    return None


def _arch_label(arch: str, width: float) -> str:
    return f"{arch} width {format_width(width)}"


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def map_layers(cfg: ArchConfig, layers: list[TFLiteLayer], source: str) -> Weights:
    """Assign checkpoint layers to `cfg.param_layers()` by order, checking every step."""
    targets = cfg.param_layers()
    label = _arch_label(cfg.arch, cfg.width)
    acts = expected_activations(cfg)

    def hint() -> str | None:
        guess = guess_architecture(layers)
        if guess is None:
            return "its layers match no architecture/width mnetctl knows"
        if guess == (cfg.arch, cfg.width):
            return None
        return f"is this checkpoint {_arch_label(*guess)}? (mnetctl build {guess[0]} --width {format_width(guess[1])} ...)"

    out: Weights = {}
    for i, target in enumerate(targets):
        if i >= len(layers):
            missing = ", ".join(t.name for t in targets[i:i + 4]) + (", ..." if len(targets) - i > 4 else "")
            headless = targets[i].name == "head.fc" and i == len(targets) - 1
            raise BadInput(
                f"checkpoint {source} has {len(layers)} weight layers but {label} expects {len(targets)}: "
                f"nothing for {missing}",
                "it has no classifier: a feature extractor needs its classifier head file as well"
                if headless else hint(),
            )
        layer = layers[i]
        w = _as_target(layer, target)
        if tuple(w.shape) != target.weight_shape:
            message = (
                f"checkpoint {layer.describe()} has shape {_fmt(w.shape)} but {label} expects "
                f"{target.name} {_fmt(target.weight_shape)}"
            )
            if target.name == "head.fc" and w.ndim == 2 and w.shape[1] == target.cin and w.shape[0] != target.cout:
                raise BadInput(message, f"the checkpoint has {w.shape[0]} classes: build with --classes {w.shape[0]}")
            raise BadInput(message, hint())
        if layer.stride != target.stride:
            raise BadInput(
                f"checkpoint {layer.describe()} has stride {layer.stride} but {label} expects "
                f"{target.name} with stride {target.stride}",
                hint(),
            )
        if layer.padding != "same" and not (layer.padding == "valid" and target.kernel == 1 and target.stride == 1):
            raise BadInput(
                f"checkpoint {layer.describe()} uses {layer.padding} padding; mnetctl reproduces TF 'SAME' "
                f"padding for checkpoints ({target.name})"
            )
        want = acts.get(target.name)
        if not activation_fits(layer.activation, want):
            raise BadInput(
                f"checkpoint {layer.describe()} is followed by {layer.activation!r} but {label} has "
                f"{want!r} after {target.name}",
                hint(),
            )
        out[target.name] = (np.ascontiguousarray(w, dtype=np.float32), layer.bias.astype(np.float32))
    if len(layers) > len(targets):
        extra = layers[len(targets)]
        raise BadInput(
            f"checkpoint {source} has {len(layers)} weight layers but {label} expects {len(targets)}: "
            f"{extra.describe()} and after are left over",
            hint(),
        )
    return out


# --------------------------------------------------------------------------------------------
# Entry point used by the builder
# --------------------------------------------------------------------------------------------


def _preprocessing(ckpt: TFLiteCheckpoint) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Mean/std in pixel units that turn a uint8 RGB pixel into the checkpoint's real-valued input."""
    if ckpt.input_dtype in ("uint8", "int8") and ckpt.input_scale:
        zp = float(ckpt.input_zero_point or 0)
        if ckpt.input_dtype == "int8":  # the int8 input is the uint8 pixel shifted by -128
            zp += 128.0
        std = float(f"{1.0 / ckpt.input_scale:.6g}")  # 1 / float32 scale, without the float32 noise
        return (zp, zp, zp), (std, std, std)
    return TF_MEAN, TF_STD


def _resolve(cfg: ArchConfig, weights: str) -> tuple[list[Path], str]:
    if weights == "pretrained":
        ckpt = registry.find(cfg.arch, cfg.width)
        if ckpt is None:
            have = "; ".join(
                f"{arch} width {', '.join(format_width(w) for w in registry.widths_with_weights(arch))}"
                for arch in dict.fromkeys(c.arch for c in registry.PRETRAINED)
            )
            raise BadInput(
                f"no pretrained checkpoint ships for {_arch_label(cfg.arch, cfg.width)}",
                f"pretrained weights exist for: {have}; use --weights random or --weights PATH.tflite",
            )
        root = registry.pretrained_dir()
        paths = [root / f for f in ckpt.files]
        for p in paths:
            if not p.is_file():
                raise EnvironmentMissing(
                    f"the shipped checkpoint {p} is missing",
                    "restore models/pretrained/ from the repository or set MNETCTL_PRETRAINED_DIR",
                )
        return paths, "pretrained:" + "+".join(ckpt.files)
    path = Path(weights).expanduser()
    if not path.exists():
        raise BadInput(
            f"--weights {weights}: no such file",
            "give 'random', 'pretrained' or the path of a .tflite checkpoint",
        )
    if path.is_dir():
        raise BadInput(f"--weights {weights} is a folder; give a .tflite file")
    return [path], f"tflite:{path.name}"


@dataclass(frozen=True)
class ImportedCheckpoint:
    """A checkpoint mapped onto an ArchConfig: float weights, metadata, and what it stores as integers."""

    cfg: ArchConfig
    files: tuple[TFLiteCheckpoint, ...]
    params: Weights
    meta: ModelMeta
    source: str  # file name(s), for messages

    @property
    def layers(self) -> list[tuple[int, TFLiteLayer]]:
        """(file index, layer) in the order of `cfg.param_layers()`."""
        return [(i, layer) for i, f in enumerate(self.files) for layer in f.layers]

    def quantized_weights(self) -> dict[str, QuantizedWeight]:
        """Layer name -> the checkpoint's own integers, scales and int32 bias, in the layer's ONNX shape."""
        out: dict[str, QuantizedWeight] = {}
        for target, (_, layer) in zip(self.cfg.param_layers(), self.layers):
            q = layer.quantized
            if q is None:
                raise BadInput(
                    f"--precision int8 keeps a checkpoint's own integers, but {layer.describe()} stores "
                    f"{layer.dtype} weights without integer activations and bias",
                    _INT8_HINT,
                )
            values = q.values
            if values.shape != target.weight_shape:  # classifier: 1x1 conv <-> fully connected
                values = values.reshape(target.weight_shape)
            out[target.name] = q._replace(values=values)
        return out

    def activation_quantization(self, model) -> dict[str, ActivationQuant]:
        """Tensor name of `model` (emitted from this checkpoint's cfg) -> the checkpoint's quantization of
        the same value: the input, every conv/activation output, pools, squeeze-excite gates and
        products, residual adds and the logits."""
        return _Tracer(self, model).run()


_INT8_HINT = "build with --precision fp32 and quantize it with `mnetctl quantize` (calibrated on images)"
_UNARY = {  # our activation op -> TFLite ops that compute it as a separate operator
    "Relu": ("RELU", "RELU6", "RELU_N1_TO_1"),
    "Clip": ("RELU6", "RELU", "RELU_N1_TO_1"),
    "HardSwish": ("HARD_SWISH",),
}
_GATE_OPS = frozenset({"ADD", "SUB", "MUL", "DIV", "RELU", "RELU6", "MINIMUM", "MAXIMUM", "HARD_SIGMOID"})
_COPY_OPS = frozenset({"QUANTIZE", "RESHAPE", "SQUEEZE"})  # the same values, possibly requantized
_POOL_OPS = frozenset({"AVERAGE_POOL_2D", "MEAN"})
_QMIN = {"uint8": 0, "int8": -128}

Ref = tuple[int, int]  # (file index, tensor index)


class _Tracer:
    """Follows our emitted graph node by node and finds the checkpoint tensor holding the same value.

    Weight layers are anchored by the layer mapping (node name -> TFLite op); element-wise nodes are
    found as the TFLite op of the same kind reading the tensors already matched; an activation the
    converter fused into its conv (or dropped because the output range already clamps at 0) shares
    the conv's output tensor. Anything that cannot be followed is an error, never a guess.
    """

    def __init__(self, ck: ImportedCheckpoint, model):
        self.ck = ck
        self.graphs = [f.graph for f in ck.files]
        if any(g is None for g in self.graphs):
            raise BadInput(f"--precision int8: {ck.source} was read without its dataflow")
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
            f"--precision int8: cannot follow {self.ck.source} at our node {node.name} ({node.op_type}): {why}",
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
            raise BadInput("--precision int8: the model has no stem.conv node or the checkpoint no input")
        self.match[stem.input[0]] = (0, self.graphs[0].inputs[0])
        producer = {o: n for n in self.nodes for o in n.output}
        gates = {  # x * HardSigmoid(x): HardSwish spelled out below opset 14
            n.input[1]: n.name for n in self.nodes
            if n.op_type == "Mul" and n.input[1] in producer and producer[n.input[1]].op_type == "HardSigmoid"
            and producer[n.input[1]].input[0] == n.input[0]
        }
        for node in self.nodes:
            if node.name.startswith("preprocess."):
                continue
            if node.op_type == "HardSigmoid" and node.output[0] in gates:
                continue  # part of a hard-swish: quantized after the Mul
            self.match[node.output[0]] = self._follow(node, gates)
        out: dict[str, ActivationQuant] = {}
        for name, (fi, t) in self.match.items():
            q = self.graphs[fi].quant.get(t)
            if q is None:
                raise BadInput(
                    f"--precision int8: {self.ck.source} has no 8-bit per-tensor quantization for its tensor "
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
        if tfl.fused != 0 or (q is not None and q.zero_point == _QMIN[q.dtype]):
            self.clamped.add(out)
        return out

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


def load_checkpoint(cfg: ArchConfig, weights: str) -> ImportedCheckpoint:
    """Read and map a TFLite checkpoint ("pretrained" or a path) onto `cfg`, with the metadata it implies."""
    paths, source = _resolve(cfg, weights)
    files = [read_tflite(p) for p in paths]
    layers = [layer for f in files for layer in f.layers]
    label = " + ".join(p.name for p in paths)
    params = map_layers(cfg, layers, label)
    first = files[0]
    mean, std = _preprocessing(first)
    res = first.input_shape[1] if len(first.input_shape) == 4 else 0
    meta = ModelMeta(
        classes=cfg.classes,
        label_offset=1 if cfg.classes == BACKGROUND_CLASSES else 0,
        mean=mean,
        std=std,
        color_order="RGB",
        resize="short-side",
        crop_fraction=DEFAULT_CROP,
        interpolation="bilinear",
        weights=source,
        seed=None,
    ).with_extra(
        checkpoint_sha256=",".join(f.sha256[:SHA_CHARS] for f in files),
        checkpoint_resolution=res,
        checkpoint_dtype=",".join(sorted({layer.dtype for layer in layers})),
    )
    return ImportedCheckpoint(cfg=cfg, files=tuple(files), params=params, meta=meta, source=label)


def load_checkpoint_weights(cfg: ArchConfig, weights: str) -> tuple[Weights, ModelMeta]:
    """Weights for `cfg` from a TFLite checkpoint ("pretrained" or a path), plus the metadata it implies."""
    ck = load_checkpoint(cfg, weights)
    return ck.params, ck.meta
