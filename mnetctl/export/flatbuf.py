"""A TFLite model in memory (tensors, operators, metadata) and its FlatBuffer bytes.

Serialised with the builder functions of the `tflite` package (TensorFlow Lite's `schema.fbs` compiled for
Python: the modules `tflite.Model`, `tflite.Tensor`, ... with their `ModelStart`, `TensorAddShape`, ...
functions) on a `flatbuffers.Builder`; the field ids and enums are the schema's, not ours. Constant data is stored 16-byte aligned, as TensorFlow's converter does.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite

SCHEMA_VERSION = 3
_TYPES = {"float32": tflite.TensorType.FLOAT32, "int8": tflite.TensorType.INT8, "int32": tflite.TensorType.INT32,
          "uint8": tflite.TensorType.UINT8}
ACTIVATIONS = {None: tflite.ActivationFunctionType.NONE, "relu": tflite.ActivationFunctionType.RELU,
               "relu6": tflite.ActivationFunctionType.RELU6}
# the schema's per-table builder functions (the package re-exports only the classes at top level)
_fb_Buffer, _fb_QuantizationParameters, _fb_Tensor, _fb_Operator, _fb_OperatorCode, _fb_SubGraph, _fb_Metadata, \
    _fb_Model = (importlib.import_module(f"tflite.{n}") for n in (
        "Buffer", "QuantizationParameters", "Tensor", "Operator", "OperatorCode", "SubGraph", "Metadata", "Model"))
PADDING = {"SAME": tflite.Padding.SAME, "VALID": tflite.Padding.VALID}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # float32 | int8 | int32 | uint8
    data: np.ndarray | None = None  # constant contents
    scale: np.ndarray | None = None  # quantization (per tensor: one value)
    zero_point: np.ndarray | None = None
    axis: int = 0  # quantized dimension when there is one scale per slice
    signature: tuple[int, ...] | None = None  # shape with -1 where a size is dynamic (None: static)


@dataclass
class Operator:
    op: str  # a name of tflite.BuiltinOperator, e.g. CONV_2D
    inputs: list[int]
    outputs: list[int]
    options: str | None = None  # a name of tflite.BuiltinOptions, e.g. Conv2DOptions
    fields: dict = field(default_factory=dict)  # option fields by their schema names (CamelCase)
    node: str = ""  # the source node (for messages)


@dataclass
class FlatModel:
    tensors: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    metadata: dict[str, bytes] = field(default_factory=dict)
    description: str = "mnetctl"

    def add(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1


def _int_vector(b: flatbuffers.Builder, values, dtype=np.int32) -> int:
    return b.CreateNumpyVector(np.asarray(list(values), dtype))


def _bytes_vector(b: flatbuffers.Builder, data: bytes) -> int:
    """A [ubyte] vector whose first byte is 16-byte aligned."""
    b.StartVector(1, len(data), 16)
    b.head = b.head - len(data)
    b.Bytes[b.head: b.head + len(data)] = data
    b.vectorNumElems = len(data)
    return b.EndVector()


def _options(b: flatbuffers.Builder, name: str, fields: dict) -> int:
    mod = importlib.import_module(f"tflite.{name}")
    vectors = {k: _int_vector(b, v) for k, v in fields.items() if isinstance(v, (list, tuple))}
    getattr(mod, f"{name}Start")(b)
    for key, value in fields.items():
        getattr(mod, f"{name}Add{key}")(b, vectors.get(key, value))
    return getattr(mod, f"{name}End")(b)


def serialize(model: FlatModel) -> bytes:
    """The model's FlatBuffer bytes (file identifier TFL3)."""
    b = flatbuffers.Builder(1 << 20)
    # buffers: 0 is the empty buffer every non-constant tensor points to
    payloads: list[bytes] = [b""]
    tensor_buffer: list[int] = []
    for t in model.tensors:
        if t.data is None:
            tensor_buffer.append(0)
        else:
            payloads.append(np.ascontiguousarray(t.data).astype(t.data.dtype.newbyteorder("<")).tobytes())
            tensor_buffer.append(len(payloads) - 1)
    meta_buffers = {}
    for name, data in model.metadata.items():
        payloads.append(bytes(data))
        meta_buffers[name] = len(payloads) - 1

    buffer_offsets = []
    for data in payloads:
        vec = _bytes_vector(b, data) if data else None
        _fb_Buffer.BufferStart(b)
        if vec is not None:
            _fb_Buffer.BufferAddData(b, vec)
        buffer_offsets.append(_fb_Buffer.BufferEnd(b))

    tensor_offsets = []
    for t, buf in zip(model.tensors, tensor_buffer):
        name = b.CreateString(t.name)
        shape = _int_vector(b, t.shape)
        signature = _int_vector(b, t.signature) if t.signature is not None else None
        quant = None
        if t.scale is not None:
            scale = b.CreateNumpyVector(np.asarray(t.scale, np.float32).reshape(-1))
            zero = b.CreateNumpyVector(np.asarray(t.zero_point, np.int64).reshape(-1))
            _fb_QuantizationParameters.QuantizationParametersStart(b)
            _fb_QuantizationParameters.QuantizationParametersAddScale(b, scale)
            _fb_QuantizationParameters.QuantizationParametersAddZeroPoint(b, zero)
            _fb_QuantizationParameters.QuantizationParametersAddQuantizedDimension(b, int(t.axis))
            quant = _fb_QuantizationParameters.QuantizationParametersEnd(b)
        _fb_Tensor.TensorStart(b)
        _fb_Tensor.TensorAddShape(b, shape)
        if signature is not None:
            _fb_Tensor.TensorAddShapeSignature(b, signature)
        _fb_Tensor.TensorAddType(b, _TYPES[t.dtype])
        _fb_Tensor.TensorAddBuffer(b, buf)
        _fb_Tensor.TensorAddName(b, name)
        if quant is not None:
            _fb_Tensor.TensorAddQuantization(b, quant)
        tensor_offsets.append(_fb_Tensor.TensorEnd(b))

    codes: list[str] = []
    op_offsets = []
    for op in model.operators:
        if op.op not in codes:
            codes.append(op.op)
        ins, outs = _int_vector(b, op.inputs), _int_vector(b, op.outputs)
        opts = _options(b, op.options, op.fields) if op.options else None
        _fb_Operator.OperatorStart(b)
        _fb_Operator.OperatorAddOpcodeIndex(b, codes.index(op.op))
        _fb_Operator.OperatorAddInputs(b, ins)
        _fb_Operator.OperatorAddOutputs(b, outs)
        if opts is not None:
            _fb_Operator.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, op.options))
            _fb_Operator.OperatorAddBuiltinOptions(b, opts)
        op_offsets.append(_fb_Operator.OperatorEnd(b))

    code_offsets = []
    for name in codes:
        number = getattr(tflite.BuiltinOperator, name)
        _fb_OperatorCode.OperatorCodeStart(b)
        _fb_OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(number, 127))  # readers before 2.4 look here
        _fb_OperatorCode.OperatorCodeAddBuiltinCode(b, number)
        _fb_OperatorCode.OperatorCodeAddVersion(b, 1)
        code_offsets.append(_fb_OperatorCode.OperatorCodeEnd(b))

    def table_vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    sg_name = b.CreateString("main")
    tensors_vec = table_vector(tensor_offsets)
    ops_vec = table_vector(op_offsets)
    ins_vec, outs_vec = _int_vector(b, model.inputs), _int_vector(b, model.outputs)
    _fb_SubGraph.SubGraphStart(b)
    _fb_SubGraph.SubGraphAddTensors(b, tensors_vec)
    _fb_SubGraph.SubGraphAddInputs(b, ins_vec)
    _fb_SubGraph.SubGraphAddOutputs(b, outs_vec)
    _fb_SubGraph.SubGraphAddOperators(b, ops_vec)
    _fb_SubGraph.SubGraphAddName(b, sg_name)
    subgraph = _fb_SubGraph.SubGraphEnd(b)

    meta_offsets = []
    for name, buf in meta_buffers.items():
        s = b.CreateString(name)
        _fb_Metadata.MetadataStart(b)
        _fb_Metadata.MetadataAddName(b, s)
        _fb_Metadata.MetadataAddBuffer(b, buf)
        meta_offsets.append(_fb_Metadata.MetadataEnd(b))

    desc = b.CreateString(model.description)
    codes_vec = table_vector(code_offsets)
    subgraphs_vec = table_vector([subgraph])
    buffers_vec = table_vector(buffer_offsets)
    meta_vec = table_vector(meta_offsets) if meta_offsets else None
    _fb_Model.ModelStart(b)
    _fb_Model.ModelAddVersion(b, SCHEMA_VERSION)
    _fb_Model.ModelAddOperatorCodes(b, codes_vec)
    _fb_Model.ModelAddSubgraphs(b, subgraphs_vec)
    _fb_Model.ModelAddDescription(b, desc)
    _fb_Model.ModelAddBuffers(b, buffers_vec)
    if meta_vec is not None:
        _fb_Model.ModelAddMetadata(b, meta_vec)
    root = _fb_Model.ModelEnd(b)
    b.Finish(root, file_identifier=b"TFL3")
    return bytes(b.Output())


def read_metadata(data: bytes) -> dict[str, bytes]:
    """The named metadata buffers of a TFLite FlatBuffer (ValueError when it is not one)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("no TFL3 file identifier")
    m = tflite.Model.GetRootAs(data, 0)
    found = {}
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        buf = m.Buffers(entry.Buffer())
        found[entry.Name().decode()] = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
    return found
