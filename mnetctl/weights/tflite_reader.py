"""Read a TFLite checkpoint: its weight layers (float32, ONNX layout), its integers and its dataflow.

Why the `tflite` package: a checkpoint is a FlatBuffer following TensorFlow Lite's `schema.fbs`, and
`tflite` is that schema compiled to pure-Python FlatBuffers accessors (no native code, no TensorFlow),
enums included (`tflite.TensorType`, ...). It reads every tensor's bytes, shape, type and quantization
and every operator's options (padding, strides, fused activation) straight from the file. An interpreter
(LiteRT) would have to prepare the whole model to expose its tensors, hides the options we check, and is
a large native wheel not available everywhere; mnetctl uses it only in tests, as the reference.

Of the main subgraph `read_tflite` keeps the weight layers (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED)
in order, dequantized to float32 (uint8 per tensor, int8 per channel along the quantized dimension, int32
biases with their own scale or input scale x weight scale, float16 behind DEQUANTIZE) and in ONNX layout
(CONV_2D [O, H, W, I] -> OIHW, DEPTHWISE_CONV_2D [1, H, W, C*m] -> [C*m, 1, H, W]), with stride, padding
and the activation that follows; plus the stored integers (`TFLiteLayer.quantized`) and the dataflow
(`TFLiteGraph`) that `build --precision int8` needs. Ops that carry no weights (PASS_OPS) are passed
over; any other op is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from ..errors import BadInput, MnetctlError
from ..graph import ActivationQuant, QuantizedWeight, pads_for

_TT = tflite.TensorType
_ACT = tflite.ActivationFunctionType

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Operators that may appear between the weight layers of a MobileNet checkpoint and carry no weights.
PASS_OPS = frozenset({
    "QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "SOFTMAX", "AVERAGE_POOL_2D", "MEAN", "ADD", "MUL",
    "SUB", "DIV", "HARD_SWISH", "RELU", "RELU6", "LOGISTIC", "PAD", "PADV2", "CONCATENATION",
    "RESIZE_BILINEAR", "ARG_MAX",  # DeepLab's head: upsampling, class map
})
DETECTION_POSTPROCESS = "CUSTOM:TFLite_Detection_PostProcess"  # an SSD's box decoding + NMS (its options are read)

_NUMPY_TYPES = {  # the storage types mnetctl reads
    _TT.FLOAT32: np.float32, _TT.FLOAT16: np.float16, _TT.FLOAT64: np.float64, _TT.UINT8: np.uint8,
    _TT.INT8: np.int8, _TT.INT16: np.int16, _TT.INT32: np.int32, _TT.INT64: np.int64,
}
_TYPE_NAMES = {number: name.lower() for name, number in vars(_TT).items() if name.isupper()}  # 3 -> "uint8"
_FUSED_RELU = {_ACT.RELU: "relu", _ACT.RELU6: "relu"}  # same family for the structure check
_QMIN = {_TT.UINT8: 0, _TT.INT8: -128, _TT.INT16: -32768}  # zero point of a range that starts at 0


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
    dilation: int = 1
    in_shape: tuple[int, ...] = ()  # NHWC shapes of the data input and the output
    out_shape: tuple[int, ...] = ()

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
    # an SSD's TFLite_Detection_PostProcess: its options (y_scale, nms_iou_threshold, ...) and "anchors" [N, 4]
    detection: dict | None = None

    def macs_params(self) -> tuple[int, int]:
        """MACs (batch 1) and parameters (weights + biases) of the weight layers, from the file's own shapes."""
        macs = params = 0
        for layer in self.layers:
            out = self.graph.shapes.get(self.graph.ops[layer.op_index].outputs[0], layer.out_shape) \
                if self.graph is not None else layer.out_shape
            macs += int(np.prod(out[1:], dtype=np.int64)) * int(np.prod(layer.weight.shape[1:], dtype=np.int64))
            params += int(layer.weight.size) + int(layer.bias.size)
        return macs, params


@dataclass(frozen=True)
class TFLiteOp:
    name: str
    inputs: tuple[int, ...]  # tensor indices, -1 for an absent optional input
    outputs: tuple[int, ...]
    fused: int = _ACT.NONE  # fused activation (tflite.ActivationFunctionType) of weight ops


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


def read_tflite(path: Path | str) -> TFLiteCheckpoint:
    """Parse a .tflite file into its weight layers (ONNX layout, float32) and input description."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint {path} does not exist or is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if len(data) < 8 or not tflite.Model.ModelBufferHasIdentifier(data, 0):
        raise BadInput(f"{path} is not a TFLite model (no 'TFL3' FlatBuffer identifier)")
    try:
        return _Reader(path, data).read()
    except MnetctlError:
        raise
    except Exception as exc:  # a truncated or corrupt FlatBuffer surfaces as an arbitrary exception
        raise BadInput(f"{path} is not a readable TFLite model ({type(exc).__name__}: {exc})") from None


class _Reader:
    def __init__(self, path: Path, data: bytes):
        self.path = path
        self.file = path.name
        self.data = data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() < 1:
            raise BadInput(f"{path} has no subgraph")
        self.graph = self.model.Subgraphs(0)
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
        if number == tflite.BuiltinOperator.CUSTOM:
            custom = code.CustomCode()
            return f"CUSTOM:{custom.decode(errors='replace') if custom else '?'}"
        return BUILTIN_OPCODE2NAME.get(number, f"OP{number}")

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
            "CONV_2D": tflite.Conv2DOptions,
            "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
            "FULLY_CONNECTED": tflite.FullyConnectedOptions,
        }[name]
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    # -- weight layers -----------------------------------------------------------------------------
    def read(self) -> TFLiteCheckpoint:
        layers: list[TFLiteLayer] = []
        ops: list[str] = []
        detection = None
        for k in range(self.graph.OperatorsLength()):
            name = self.op_name(k)
            ops.append(name)
            if name in WEIGHT_OPS:
                layers.append(self.layer(k, name, len(layers)))
            elif name == DETECTION_POSTPROCESS:
                detection = self.detection_postprocess(k)
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
            detection=detection,
        )

    def detection_postprocess(self, k: int) -> dict:
        """The options (a FlexBuffer map) and the constant anchors of a TFLite_Detection_PostProcess op."""
        from flatbuffers import flexbuffers

        op = self.graph.Operators(k)
        try:
            options = dict(flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy()))) if op.CustomOptionsLength() else {}
        except Exception as exc:  # a corrupt FlexBuffer
            raise BadInput(f"{self.file}: cannot read the options of op {k} (TFLite_Detection_PostProcess): {exc}") from None
        ins = self._inputs(op)
        if len(ins) != 3:
            raise BadInput(f"{self.file}: TFLite_Detection_PostProcess op {k} has {len(ins)} inputs, expected 3")
        anchors, _ = self.constant(ins[2], "anchors", k)
        options["anchors"] = anchors.reshape(-1, 4) if anchors.size % 4 == 0 else anchors
        scale, _, _ = self.quant(ins[2])
        options["anchors_step"] = float(scale.max()) if scale is not None else 0.0  # 0: float anchors
        return options

    def dataflow(self, inputs: list[int]) -> TFLiteGraph:
        ops = []
        for k in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(k)
            name = self.op_name(k)
            fused = _ACT.NONE
            if name in WEIGHT_OPS:
                opts = self.options(k, name)
                fused = opts.FusedActivationFunction() if opts is not None else _ACT.NONE
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

    def quantized_weight(self, k: int, name: str, x_in: int, w_in: int, b_in: int, cout: int) -> QuantizedWeight | None:
        """The layer's integers in ONNX layout when weights and input are integer-quantized."""
        raw, wtype = self.raw(w_in), self.tensor(w_in).Type()
        scale, zp, qdim = self.quant(w_in)
        in_scale, _, _ = self.quant(x_in)
        if raw is None or wtype not in (_TT.UINT8, _TT.INT8) or scale is None or in_scale is None or len(in_scale) != 1:
            return None  # float weights or input: nothing stored as integers for this layer
        w = np.frombuffer(raw, dtype=_NUMPY_TYPES[wtype]).reshape(self.shape(w_in))
        values = _onnx_layout(name, w)
        axis = 0 if qdim == _OUT_DIM[name] else None  # ONNX layouts have the output channels first
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
            if raw is None or t.Type() != _TT.INT32:  # integer kernels need the int32 bias of the checkpoint
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
            weight, stride, padding, dilation = w, 1, "same", (1, 1)
        else:
            if w.ndim != 4:
                raise BadInput(f"{self.file}: {name} op {k} has a weight of rank {w.ndim}, expected 4")
            dilation = (opts.DilationHFactor(), opts.DilationWFactor()) if opts is not None else (1, 1)
            if dilation[0] != dilation[1]:
                raise BadInput(f"{self.file}: {name} op {k} has unequal dilations {dilation[0]}x{dilation[1]}")
            sh, sw = (opts.StrideH(), opts.StrideW()) if opts is not None else (1, 1)
            if sh != sw:
                raise BadInput(f"{self.file}: {name} op {k} has unequal strides {sh}x{sw}")
            stride = int(sh)
            if name == "DEPTHWISE_CONV_2D" and w.shape[0] != 1:
                raise BadInput(f"{self.file}: DEPTHWISE_CONV_2D op {k} has weight shape {list(w.shape)}")
            weight = _onnx_layout(name, w)
            padding = self.padding(k, opts, x_in, int(w.shape[1]), int(w.shape[2]), stride, int(dilation[0]))
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        cout = int(weight.shape[0])
        bias = self.bias(k, b_in, x_in, w_in, cout)
        return TFLiteLayer(
            file=self.file, index=index, op_index=k, op=name, name=self.tensor_name(w_in), weight=weight,
            bias=bias, stride=stride, padding=padding, activation=self.activation(k, opts), dtype=dtype,
            quantized=self.quantized_weight(k, name, x_in, w_in, b_in, cout), dilation=int(dilation[0]),
            in_shape=self.shape(x_in), out_shape=self.shape(int(op.OutputsAsNumpy()[0])),
        )

    def bias(self, k: int, b_in: int, x_in: int, w_in: int, cout: int) -> np.ndarray:
        if b_in < 0:
            return np.zeros(cout, np.float32)
        raw = self.raw(b_in)
        t = self.tensor(b_in)
        if raw is not None and t.Type() in (_TT.INT32, _TT.INT64):
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

    def padding(self, k: int, opts, x_in: int, kh: int, kw: int, stride: int, dilation: int = 1) -> str:
        mode = opts.Padding() if opts is not None else tflite.Padding.SAME
        if mode == tflite.Padding.SAME:
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
                if [t, b] == _same_pads(shape[1], kh, stride, dilation) and [l, r] == _same_pads(shape[2], kw, stride, dilation):
                    return "same"
                return f"explicit [{t}, {l}, {b}, {r}]"
        return "valid"

    def activation(self, k: int, opts) -> str | None:
        """The kind of nonlinearity applied to the op's output: fused, a following op, or the clamp
        that the output quantization range implies (converters drop a fused ReLU it makes redundant)."""
        fused = opts.FusedActivationFunction() if opts is not None else _ACT.NONE
        if fused in _FUSED_RELU:
            return _FUSED_RELU[fused]
        if fused != _ACT.NONE:
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
            qmin = _QMIN.get(ttype)
            if qmin is not None and int(zp[0]) == qmin:
                return "relu-range"
        for c in self.consumers.get(out, []):
            user = self.op_name(c)
            if user == "LOGISTIC" or (user in ("ADD", "SUB", "MUL", "DIV") and self._has_constant_input(c)):
                return None  # maybe a gate or an activation spelled out element-wise: cannot tell
        return "none"

    def _has_constant_input(self, k: int) -> bool:
        return any(i >= 0 and self.raw(i) is not None for i in self._inputs(self.graph.Operators(k)))


_OUT_DIM = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}  # TFLite dim of the output channels


def _onnx_layout(op: str, w: np.ndarray) -> np.ndarray:
    """CONV_2D [O, H, W, I] -> [O, I, H, W]; DEPTHWISE_CONV_2D [1, H, W, C*m] -> [C*m, 1, H, W]; FC as is."""
    if op == "CONV_2D":
        return w.transpose(0, 3, 1, 2)
    if op == "DEPTHWISE_CONV_2D":
        return w[0].transpose(2, 0, 1)[:, None, :, :]
    return w


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


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> list[int]:
    """[begin, end] that TF "SAME" pads along one axis."""
    pads, _ = pads_for(size, kernel, stride, "same", dilation)
    return [pads[0], pads[2]]
