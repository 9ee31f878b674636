"""mnetctl's ONNX classifiers as TFLite FlatBuffers: full-integer int8, mixed (as the QDQ model) or float32.

precision
  int8   full integer, what the Edge TPU needs: int8 input and output, every op int8. Weights are the QDQ
         model's integers (int8, zero point 0, per output channel), biases int32 on input scale x weight
         scale, activations the QDQ model's scales and zero points (a uint8 zero point z is z - 128, same
         scale: the same real values). The layers `quantize` kept float (stem, narrow layers, V3's blocks)
         are quantized here: their weights from the int8 storage `quantize` gave them (per-channel int8, so
         exact), their activations from min/max over calibration images run through the QDQ model
         (`ranges.py`; averaged over batches of 10 where the model's own `quant.settings` say
         moving_average, as `quantize` does for V3), the image input from its preprocessing range.
  mixed  int8 exactly where the QDQ model is int8 and float32 where it kept layers float, with QUANTIZE /
         DEQUANTIZE at the borders: the same computation as ONNX Runtime runs on the QDQ file. The float
         layers' weights stay int8 in the file (the int8 storage `quantize` gave them) behind a DEQUANTIZE
         of the constant, which LiteRT evaluates once: the file keeps int8 size.
  fp32   float32 throughout (from a float model; a QDQ model's weights are taken dequantized).
  auto   mixed for a QDQ model (what its int8 file computes), fp32 for a float model; int8 (full integer) when
         the export is for the Edge TPU (`target="edgetpu"`, `export --check edgetpu`).

Layout: NHWC; the input is [1, R, R, 3] (the normalised image, quantized for int8), conv weights
[O, kh, kw, I], depthwise [1, kh, kw, C], FULLY_CONNECTED [O, I]. Ops: CONV_2D, DEPTHWISE_CONV_2D (ReLU/ReLU6
fused), PAD (where ONNX pads differ from TFLite SAME), ADD, MUL, HARD_SWISH, MEAN (global pool),
RESHAPE, FULLY_CONNECTED, SOFTMAX, QUANTIZE/DEQUANTIZE (mixed only), MINIMUM (float SE gate). A hard
sigmoid after a conv (the squeeze-excite gate) is folded into it: conv(w / 6, (b + 3) / 6) clamped to
[0, 1] (ReLU fused; int8 saturates at 1 with the output range [0, 1], float adds MINIMUM(., 1)).

Metadata: the ONNX file's `mnetctl.*` keys, as JSON, in the TFLite metadata entry `mnetctl` (with layout NHWC,
input format float-nhwc and the exported precision); `read_tflite_meta` reads it back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..progress import ProgressFn, report
from .flatbuf import ACTIVATIONS, PADDING, FlatModel, Operator, Tensor, read_metadata, serialize
from .graph_ops import Const, Graph, Op, QParams, read_graph, readers
from .ranges import input_params, measure

PRECISIONS = ("auto", "int8", "mixed", "fp32")
METADATA_NAME = "mnetctl"
GATE_RANGE = QParams(1.0 / 255.0, -128)  # a hard sigmoid's output [0, 1]
_INT32 = np.iinfo(np.int32)


def _same_pads(size: int, kernel: int, stride: int) -> list[int]:
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2]


def _weight_int8(c: Const, axis: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 values (ONNX layout) and one scale per output channel along `axis`: the stored integers where they
    are int8 with zero point 0 on that axis (or per tensor), else symmetric max/127 from the float values."""
    if c.ints is not None and c.ints.dtype == np.int8 and c.zero_point is not None and not np.any(c.zero_point) \
            and c.scale is not None and (c.scale.size == 1 or c.axis == axis):
        return c.ints, np.broadcast_to(np.asarray(c.scale, np.float32).reshape(-1), (channels,)).copy()
    w = np.moveaxis(np.asarray(c.value, np.float64), axis, 0).reshape(channels, -1)
    scale = np.abs(w).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    q = np.moveaxis(q.reshape(np.moveaxis(c.value, axis, 0).shape), 0, axis)
    return q, scale.astype(np.float32)


class _Lowering:
    def __init__(self, graph: Graph, precision: str, output_name: str):
        self.g = graph
        self.precision = precision
        self.output_name = output_name
        self.fm = FlatModel()
        self.versions: dict[tuple[str, str], int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.readers = readers(graph)
        self.done: set[int] = set()

    # -- tensors ------------------------------------------------------------------------------
    def can_int(self, name: str) -> bool:
        return self.precision == "int8" or (self.precision == "mixed" and name in self.g.quant)

    def define(self, name: str, dtype: str, shape, quant: QParams | None = None) -> int:
        label = self.output_name if name == self.g.output else name
        t = Tensor(label if dtype != "int8" or self.precision == "int8" else f"{label}.int8", tuple(shape), dtype)
        if dtype == "int8":
            q = quant or self.g.quant[name]
            t.scale, t.zero_point = np.array([q.scale], np.float32), np.array([q.zero_point])
        idx = self.fm.add(t)
        self.versions[(name, dtype)] = idx
        self.shapes[name] = tuple(shape)
        return idx

    def const(self, name: str, data: np.ndarray, dtype: str, scale=None, zero=None, axis: int = 0) -> int:
        t = Tensor(name, tuple(data.shape), dtype, data=np.ascontiguousarray(data))
        if scale is not None:
            t.scale, t.zero_point, t.axis = np.asarray(scale, np.float32), np.asarray(zero), axis
        return self.fm.add(t)

    def float_weight(self, op: Op, weight: Const, w: np.ndarray, layout, qdim: int, out_ch: int, gate: bool) -> int:
        """A float conv weight: stored int8 + DEQUANTIZE where the model stores it as int8 (mixed), else float32."""
        if self.precision == "mixed" and weight.ints is not None and weight.ints.dtype == np.int8:
            q, ws = _weight_int8(Const(w, weight.ints, None if weight.scale is None else weight.scale / (6.0 if gate else 1.0),
                                       weight.zero_point, weight.axis), 0, out_ch)
            src = self.const(f"{op.name}.weight.int8", np.transpose(q, layout), "int8", ws, np.zeros(out_ch, np.int64), qdim)
            dst = self.fm.add(Tensor(f"{op.name}.weight", tuple(np.transpose(q, layout).shape), "float32"))
            self.emit("DEQUANTIZE", [src], [dst], node=op.name)
            return dst
        return self.const(f"{op.name}.weight", np.transpose(w.astype(np.float32), layout), "float32")

    def get(self, name: str, dtype: str, node: str) -> int:
        """The tensor in the wanted type, through QUANTIZE / DEQUANTIZE if it exists only in the other."""
        if (name, dtype) in self.versions:
            return self.versions[(name, dtype)]
        other = "float32" if dtype == "int8" else "int8"
        if (name, other) not in self.versions:
            raise BadInput(f"tensor {name!r} read by node {node!r} is produced by no exported op")
        src = self.versions[(name, other)]
        if dtype == "int8":
            dst = self.define(name, "int8", self.shapes[name])
            self.emit("QUANTIZE", [src], [dst], node=node)
        else:
            label = self.output_name if name == self.g.output else name
            dst = self.fm.add(Tensor(f"{label}.float" if (name, "int8") in self.versions and self.precision != "fp32"
                                     else label, self.shapes[name], "float32"))
            self.versions[(name, "float32")] = dst
            self.emit("DEQUANTIZE", [src], [dst], node=node)
        return dst

    def emit(self, op: str, inputs: list[int], outputs: list[int], options: str | None = None, node: str = "",
             **fields) -> None:
        self.fm.operators.append(Operator(op, inputs, outputs, options, fields, node))

    # -- ops ----------------------------------------------------------------------------------
    def run(self) -> FlatModel:
        n, c, h, w = self.g.input_shape
        shape = (1, h, w, c)
        if self.precision == "int8":
            inp = self.define(self.g.input, "int8", shape)
        else:
            inp = self.define(self.g.input, "float32", shape)
        self.fm.inputs = [inp]
        for i, op in enumerate(self.g.ops):
            if i in self.done:
                continue
            getattr(self, f"_{op.kind}")(op, i)
        out = self.g.output
        want = "int8" if (out, "int8") in self.versions and self.precision != "fp32" else "float32"
        self.fm.outputs = [self.versions[(out, want)]]
        return self.fm

    def _next(self, op: Op, index: int, kinds: tuple[str, ...]) -> tuple[int, Op] | None:
        """The single reader of op's output when it is of one of `kinds` (a fusion candidate)."""
        if op.output == self.g.output:
            return None
        found = self.readers.get(op.output, [])
        if len(found) != 1 or found[0].kind not in kinds:
            return None
        nxt = found[0]
        return self.g.ops.index(nxt), nxt

    def _io_type(self, op_inputs: list[str], output: str, consts: list[Const | None] = ()) -> str:
        ok = all(self.can_int(x) for x in [*op_inputs, output])
        if self.precision == "mixed":
            ok = ok and all(c is None or c.quantized for c in consts)
        return "int8" if ok else "float32"

    def _conv(self, op: Op, index: int) -> None:
        weight, bias = op.consts
        x = op.inputs[0]
        in_shape = self.shapes[x]
        size, in_ch = in_shape[1], in_shape[3]
        w = np.asarray(weight.value)
        out_ch, _, kh, kw = w.shape
        groups = int(op.attrs.get("group", 1))
        stride = list(op.attrs.get("strides", [1, 1]))
        dil = list(op.attrs.get("dilations", [1, 1]))
        if kh != kw or stride[0] != stride[1] or dil != [1, 1] or op.attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise BadInput(f"node {op.name!r} (Conv): only square kernels, equal strides and no dilation are exported")
        depthwise = groups > 1
        if depthwise and (groups != in_ch or out_ch % in_ch):
            raise BadInput(f"node {op.name!r} (Conv): grouped convolution ({groups} groups of {in_ch} channels) "
                           "has no TFLite form")
        b = np.zeros(out_ch, np.float32) if bias is None else np.asarray(bias.value, np.float32).reshape(-1)
        act, out_name, gate = None, op.output, False
        fused = self._next(op, index, ("relu", "relu6", "hardsigmoid"))
        if fused is not None:
            j, nxt = fused
            self.done.add(j)
            out_name = nxt.output
            if nxt.kind == "hardsigmoid":  # the SE gate: relu6(y + 3) / 6 = clip(y / 6 + 1 / 2, 0, 1)
                gate, act = True, "relu"
                w, b = w / 6.0, (b + 3.0) / 6.0
            else:
                act = nxt.kind
        pads = list(op.attrs.get("pads", [0, 0, 0, 0]))
        if pads == _same_pads(size, kh, stride[0]):
            padding = "SAME"
        elif not any(pads):
            padding = "VALID"
        else:
            padding = "VALID"
        out_size = (size + pads[0] + pads[2] - kh) // stride[0] + 1
        dtype = self._io_type([x], out_name, [weight, bias])
        quant = None
        if dtype == "int8" and gate:
            quant = self.g.quant.get(out_name, GATE_RANGE)
        xin = self.get(x, dtype, op.name)
        if padding == "VALID" and any(pads):
            padded = (1, size + pads[0] + pads[2], size + pads[1] + pads[3], in_ch)
            src = self.fm.tensors[xin]
            pt = self.fm.add(Tensor(f"{op.name}.pad", padded, dtype, scale=src.scale, zero_point=src.zero_point))
            spec = self.const(f"{op.name}.paddings", np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]],
                                                              np.int32), "int32")
            self.emit("PAD", [xin, spec], [pt], "PadOptions", node=op.name)
            xin = pt
        if depthwise:
            layout = (1, 2, 3, 0)  # [C*m, 1, kh, kw] -> [1, kh, kw, C*m]
            qdim, opname, options = 3, "DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions"
            extra = {"DepthMultiplier": out_ch // in_ch}
        else:
            layout = (0, 2, 3, 1)  # [O, I, kh, kw] -> [O, kh, kw, I]
            qdim, opname, options = 0, "CONV_2D", "Conv2DOptions"
            extra = {}
        out_shape = (1, out_size, out_size, out_ch)
        if dtype == "int8":
            wc = Const(w, weight.ints, None if weight.scale is None else weight.scale / 6.0,
                       weight.zero_point, weight.axis, weight.quantized) if gate else weight
            q, ws = _weight_int8(wc, 0, out_ch)
            s_in = float(self.fm.tensors[xin].scale[0])
            bq = np.clip(np.round(b.astype(np.float64) / (s_in * ws.astype(np.float64))), _INT32.min, _INT32.max)
            wt = self.const(f"{op.name}.weight", np.transpose(q, layout), "int8", ws, np.zeros(out_ch, np.int64), qdim)
            bt = self.const(f"{op.name}.bias", bq.astype(np.int32), "int32", (s_in * ws).astype(np.float32),
                            np.zeros(out_ch, np.int64), 0)
            yt = self.define(out_name, "int8", out_shape, quant)
        else:
            wt = self.float_weight(op, weight, w, layout, qdim, out_ch, gate)
            bt = self.const(f"{op.name}.bias", b.astype(np.float32), "float32")
            yt = self.fm.add(Tensor(f"{op.name}.relu", out_shape, "float32")) if gate else \
                self.define(out_name, "float32", out_shape)
        self.emit(opname, [xin, wt, bt], [yt], options, node=op.name, Padding=PADDING[padding],
                  StrideW=stride[1], StrideH=stride[0], FusedActivationFunction=ACTIVATIONS[act], **extra)
        if gate and dtype == "float32":  # float: clamp at 1 (int8 saturates there)
            one = self.const(f"{op.name}.one", np.array([1.0], np.float32), "float32")
            gt = self.define(out_name, "float32", out_shape)
            self.emit("MINIMUM", [yt, one], [gt], "MaximumMinimumOptions", node=op.name)

    def _binary(self, op: Op, opname: str, options: str) -> None:
        a, b = op.inputs
        sa, sb = self.shapes[a], self.shapes[b]
        shape = tuple(np.broadcast_shapes(sa, sb))
        dtype = self._io_type([a, b], op.output)
        ta, tb = self.get(a, dtype, op.name), self.get(b, dtype, op.name)
        y = self.define(op.output, dtype, shape)
        self.emit(opname, [ta, tb], [y], options, node=op.name, FusedActivationFunction=ACTIVATIONS[None])

    def _add(self, op: Op, index: int) -> None:
        self._binary(op, "ADD", "AddOptions")

    def _mul(self, op: Op, index: int) -> None:
        self._binary(op, "MUL", "MulOptions")

    def _unary(self, op: Op, opname: str, x: str, output: str, options: str | None = None,
               shape=None, quant: QParams | None = None, inputs: list[int] = (), **fields) -> None:
        dtype = self._io_type([x], output)
        tx = self.get(x, dtype, op.name)
        if dtype == "int8" and quant is None and opname == "RESHAPE":
            src = self.fm.tensors[tx]
            quant = QParams(float(src.scale[0]), int(src.zero_point[0]))
        y = self.define(output, dtype, shape or self.shapes[x], quant)
        self.emit(opname, [tx, *inputs], [y], options, node=op.name, **fields)

    def _relu(self, op: Op, index: int) -> None:
        self._unary(op, "RELU", op.inputs[0], op.output)

    def _relu6(self, op: Op, index: int) -> None:
        self._unary(op, "RELU6", op.inputs[0], op.output)

    def _hardswish(self, op: Op, index: int) -> None:
        self._unary(op, "HARD_SWISH", op.inputs[0], op.output)

    def _hardsigmoid(self, op: Op, index: int) -> None:
        x = op.inputs[0]
        muls = [r for r in self.readers.get(op.output, []) if r.kind == "mul" and set(r.inputs) == {x, op.output}]
        if len(self.readers.get(op.output, [])) != 1 or len(muls) != 1:
            raise BadInput(f"node {op.name!r} (HardSigmoid) is neither a conv's gate nor part of a hard-swish "
                           "x * hardsigmoid(x); TFLite has no hard sigmoid op")
        self.done.add(self.g.ops.index(muls[0]))
        self._unary(op, "HARD_SWISH", x, muls[0].output)

    def _mean(self, op: Op, index: int) -> None:
        x = op.inputs[0]
        n, h, w, c = self.shapes[x]
        axes = self.const(f"{op.name}.axes", np.array([1, 2], np.int32), "int32")
        self._unary(op, "MEAN", x, op.output, "ReducerOptions", shape=(1, 1, 1, c), inputs=[axes], KeepDims=True)

    def _flatten(self, op: Op, index: int) -> None:
        x = op.inputs[0]
        shape = self.shapes[x]
        if len(shape) == 4 and (shape[1] != 1 or shape[2] != 1):
            raise BadInput(f"node {op.name!r} (Flatten) flattens a {shape[1]}x{shape[2]} map; NCHW and NHWC orders "
                           "differ there, so only a flatten after global pooling is exported")
        new = (1, int(np.prod(shape[1:])))
        spec = self.const(f"{op.name}.shape", np.array(new, np.int32), "int32")
        self._unary(op, "RESHAPE", x, op.output, "ReshapeOptions", shape=new, inputs=[spec], NewShape=list(new))

    def _softmax(self, op: Op, index: int) -> None:
        quant = QParams(1.0 / 256.0, -128)  # TFLite's int8 softmax output
        self._unary(op, "SOFTMAX", op.inputs[0], op.output, "SoftmaxOptions", quant=quant, Beta=1.0)

    def _fc(self, op: Op, index: int) -> None:
        weight, bias = op.consts
        x = op.inputs[0]
        w = np.asarray(weight.value)
        axis = 0
        if not op.attrs.get("transB", 0):
            w = w.T
            axis = 1
        out_ch, in_ch = w.shape
        if self.shapes[x][-1] != in_ch or len(self.shapes[x]) != 2:
            raise BadInput(f"node {op.name!r} (Gemm) reads {list(self.shapes[x])}, not [1, {in_ch}]")
        b = np.zeros(out_ch, np.float32) if bias is None else np.asarray(bias.value, np.float32).reshape(-1)
        dtype = self._io_type([x], op.output, [weight, bias])
        tx = self.get(x, dtype, op.name)
        if dtype == "int8":
            q, ws = _weight_int8(weight, axis, out_ch)
            if axis == 1:
                q = q.T
            s_in = float(self.fm.tensors[tx].scale[0])
            bq = np.clip(np.round(b.astype(np.float64) / (s_in * ws.astype(np.float64))), _INT32.min, _INT32.max)
            wt = self.const(f"{op.name}.weight", q, "int8", ws, np.zeros(out_ch, np.int64), 0)
            bt = self.const(f"{op.name}.bias", bq.astype(np.int32), "int32", (s_in * ws).astype(np.float32),
                            np.zeros(out_ch, np.int64), 0)
        else:
            wt = self.float_weight(op, weight, w, (0, 1), 0, out_ch, False) if axis == 0 else \
                self.const(f"{op.name}.weight", w.astype(np.float32), "float32")
            bt = self.const(f"{op.name}.bias", b, "float32")
        y = self.define(op.output, dtype, (1, out_ch))
        self.emit("FULLY_CONNECTED", [tx, wt, bt], [y], "FullyConnectedOptions", node=op.name,
                  FusedActivationFunction=ACTIVATIONS[None])


def _check_precision(precision: str, quantized: bool, where: str, target: str | None = None) -> str:
    if precision not in PRECISIONS:
        raise BadInput(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return ("int8" if target == "edgetpu" else "mixed") if quantized else "fp32"
    if precision in ("int8", "mixed") and not quantized:
        raise BadInput(f"precision {precision} needs a quantized (QDQ) model, and {where} is float",
                       "quantize it first: mnetctl quantize MODEL, then export the .int8.onnx file")
    return precision


def _moving_average(model) -> bool:
    """Whether the model's own quantization averaged MinMax ranges over batches (its `quant.settings`)."""
    try:
        return bool(json.loads(model.meta.extra.get("quant.settings", "{}")).get("moving_average", False))
    except (ValueError, AttributeError):
        return False


def build_flat(model, precision: str = "auto", calib: Path | str | None = None,
               on_progress: ProgressFn | None = None, dynamic_batch: bool = False,
               target: str | None = None) -> tuple[FlatModel, str]:
    """The TFLite model (in memory) of a Model handle, and the precision it was exported at."""
    precision = _check_precision(precision, model.quantized, model.name, target)
    graph = read_graph(model.proto, model.name)
    if precision == "int8":
        if graph.input not in graph.quant:
            graph.quant[graph.input] = input_params(model.meta.mean, model.meta.std)
        missing = [op.output for op in graph.ops if op.output not in graph.quant]
        graph.quant.update(measure(model, missing, calib, on_progress=on_progress, average=_moving_average(model)))
    output = model.proto.graph.output[0].name
    flat = _Lowering(graph, precision, output).run()
    if dynamic_batch:  # batch -1 in every activation's shape signature (what the Edge TPU refuses)
        for t in flat.tensors:
            if t.data is None and t.shape and t.shape[0] == 1:
                t.signature = (-1, *t.shape[1:])
            elif t.data is not None and t.name.endswith(".shape"):
                t.data = np.array([-1, *t.data[1:]], np.int32)
        for op in flat.operators:
            if op.op == "RESHAPE":
                op.fields["NewShape"] = [-1, *op.fields["NewShape"][1:]]
    props = {p.key: p.value for p in model.proto.metadata_props}
    props.update({"mnetctl.layout": "NHWC", "mnetctl.input_format": "float-nhwc", "mnetctl.precision": precision,
                  "mnetctl.export.source": Path(model.name).name})
    flat.metadata[METADATA_NAME] = json.dumps(dict(sorted(props.items())), indent=0).encode()
    flat.description = f"mnetctl {props.get('mnetctl.arch', 'model')} {precision}"
    return flat, precision


def export_tflite(model, out, precision: str = "auto", on_progress: ProgressFn | None = None,
                  calib: Path | str | None = None, dynamic_batch: bool = False, target: str | None = None) -> Path:
    """Write `model` (a Model handle or an ONNX path) as a TFLite file at `out` (atomically); returns the path.

    precision: auto | int8 (full integer) | mixed | fp32 (module doc); target "edgetpu": auto means int8. calib: images for the ranges a full-integer
    export measures (default: those `quantize` calibrates on). dynamic_batch: batch -1 in the shape signatures
    (static batch 1 otherwise). An op the writer cannot express is a BadInput
    naming the node.
    """
    from ..fsutil import check_writable, write_bytes
    from ..model import as_model

    m = as_model(model)
    out = check_writable(Path(out), [m.path])
    report(on_progress, 0, 3, "export")
    flat, _ = build_flat(m, precision, calib, on_progress, dynamic_batch, target)
    report(on_progress, 2, 3, "export")
    data = serialize(flat)
    write_bytes(out, data)
    report(on_progress, 3, 3, "export")
    return out


def read_tflite_meta(path: Path | str) -> dict[str, str]:
    """The `mnetctl.*` metadata an exported TFLite file carries ({} for a TFLite file without it).
    BadInput when the file is not a TFLite model."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        entries = read_metadata(data)
    except Exception:
        raise BadInput(f"{path} is not a TFLite model (no TFL3 FlatBuffer)") from None
    raw = entries.get(METADATA_NAME)
    if not raw:
        return {}
    try:
        props = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise BadInput(f"{path}: its mnetctl metadata is not JSON") from None
    return {str(k): str(v) for k, v in props.items()} if isinstance(props, dict) else {}
