"""Will a TFLite file run on a Coral Edge TPU, and what does this host have for it? (checks, no compiler)

The rules are those Coral documents for the Edge TPU compiler ("TensorFlow models on the Edge TPU",
coral.ai/docs/edgetpu/models-intro, model requirements and the supported-operations table):

  model  every tensor 8-bit quantized (int8/uint8; int32 only for biases), so the input is int8/uint8;
         tensor sizes constant at compile time (no dynamic shape); parameters constant;
  ops    only the operations in the table, with their limitations (MEAN and PAD along x/y only, pools with
         no fused activation, FULLY_CONNECTED in the default weights format, SOFTMAX on a 1-D input of at
         most 16,000 elements); an activation tensor of more than 3 dimensions may be larger than 1 only in its 3
         innermost ones;
  split  the compiler partitions the graph once: from the first op it cannot map, that op and every
         op after it run on the CPU, even ones it supports.

A model that breaks a model rule is rejected (the compiler would refuse it); otherwise the report lists
the ops that would fall back to the CPU. mnetctl checks these rules itself: it cannot run Google's
`edgetpu_compiler` (x86-64 Debian package) unless it is installed, and benching needs the device and
libedgetpu, which `tools()` detects.
"""

from __future__ import annotations

import ctypes.util
import glob
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadInput

RULES_SOURCE = "coral.ai/docs/edgetpu/models-intro (model requirements, supported operations)"
# The supported-operations table (TFLite builtin names) -> its known limitation, checked below where noted.
SUPPORTED_OPS = {
    "ADD": "", "AVERAGE_POOL_2D": "no fused activation", "CONCATENATION": "no fused activation",
    "CONV_2D": "", "DEPTHWISE_CONV_2D": "", "EXPAND_DIMS": "", "FULLY_CONNECTED": "default weights format",
    "L2_NORMALIZATION": "", "LOGISTIC": "", "LSTM": "", "MAXIMUM": "", "MAX_POOL_2D": "no fused activation",
    "MEAN": "reduction along x/y only", "MINIMUM": "", "MUL": "", "PACK": "", "PAD": "padding along x/y only",
    "PRELU": "", "QUANTIZE": "", "REDUCE_MAX": "", "REDUCE_MIN": "", "RELU": "", "RELU6": "", "RELU_N1_TO_1": "",
    "RESHAPE": "", "RESIZE_BILINEAR": "", "RESIZE_NEAREST_NEIGHBOR": "", "RSQRT": "", "SLICE": "",
    "SOFTMAX": "1-D input, at most 16,000 elements", "SPACE_TO_DEPTH": "", "SPLIT": "", "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "", "STRIDED_SLICE": "", "SUB": "", "SUM": "", "TANH": "", "TRANSPOSE": "", "TRANSPOSE_CONV": "",
}
COMPILED_OP = "edgetpu-custom-op"  # what edgetpu_compiler puts in place of the ops it mapped
USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}  # Coral USB Accelerator before / after its firmware loads


@dataclass
class OpCheck:
    index: int
    op: str
    outputs: list[str]
    reason: str = ""  # why it is not mapped ("" when it is)


@dataclass
class EdgeTPUReport:
    path: str
    rejected: list[str] = field(default_factory=list)  # model rules broken: the compiler refuses the file
    ops: list[OpCheck] = field(default_factory=list)
    first_unmapped: int | None = None
    compiled: bool = False

    @property
    def fallback(self) -> list[OpCheck]:
        """The ops that would run on the CPU: the first unmapped one and all after it."""
        return [] if self.first_unmapped is None else self.ops[self.first_unmapped:]

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.fallback

    def as_dict(self) -> dict:
        return {
            "model": self.path, "rules": RULES_SOURCE, "rejected": self.rejected, "compiled": self.compiled,
            "ops": len(self.ops), "mapped": len(self.ops) - len(self.fallback),
            "fallback": [{"index": o.index, "op": o.op, "output": o.outputs[0] if o.outputs else "",
                          "reason": o.reason or "after the first unmapped op"} for o in self.fallback],
        }


def _read(path: Path):
    import tflite

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BadInput(f"{path} is not a TFLite model (no TFL3 FlatBuffer identifier)")
    try:
        model = tflite.Model.GetRootAs(data, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        model.Subgraphs(0).OperatorsLength()
    except Exception:
        raise BadInput(f"{path} is not a readable TFLite model (its FlatBuffer is damaged)") from None
    return model


def check_tflite(path: Path | str) -> EdgeTPUReport:
    """The Edge TPU rules (module doc) applied to a TFLite file."""
    import tflite
    from tflite.utils import BUILTIN_OPCODE2NAME

    path = Path(path)
    model = _read(path)
    sg = model.Subgraphs(0)
    rep = EdgeTPUReport(str(path))
    type_names = {v: k for k, v in vars(tflite.TensorType).items() if k.isupper()}

    def tensor(i: int):
        return sg.Tensors(i)

    def is_const(t) -> bool:
        buf = model.Buffers(t.Buffer())
        return buf is not None and buf.DataLength() > 0

    def name(t) -> str:
        return t.Name().decode(errors="replace")

    def shape(t) -> list[int]:
        return [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def const_values(i: int) -> np.ndarray | None:
        t = tensor(i)
        if not is_const(t) or t.Type() != tflite.TensorType.INT32:
            return None
        return np.frombuffer(model.Buffers(t.Buffer()).DataAsNumpy().tobytes(), np.int32)

    # model rules
    floats, dynamic = [], []
    for i in range(sg.TensorsLength()):
        t = tensor(i)
        kind = t.Type()
        if kind not in (tflite.TensorType.INT8, tflite.TensorType.UINT8, tflite.TensorType.INT32):
            floats.append(f"{name(t)} ({type_names.get(kind, kind).lower()})")
        if t.ShapeSignatureLength() and any(int(d) < 0 for d in t.ShapeSignatureAsNumpy()):
            dynamic.append(name(t))
    inp = tensor(int(sg.Inputs(0))) if sg.InputsLength() else None
    if inp is not None and inp.Type() not in (tflite.TensorType.INT8, tflite.TensorType.UINT8):
        rep.rejected.append(f"input {name(inp)!r} is {type_names.get(inp.Type(), inp.Type()).lower()}: "
                            "the Edge TPU takes int8/uint8 input")
    if floats:
        rep.rejected.append(f"not full-integer: {len(floats)} tensor(s) are not 8-bit quantized "
                            f"(first: {floats[0]}); export with --precision int8")
    if dynamic:
        rep.rejected.append(f"dynamic shape: {len(dynamic)} tensor(s) have a size unknown at compile time "
                            f"(first: {dynamic[0]}); the Edge TPU needs static shapes")

    # op rules, in execution order
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        opname = BUILTIN_OPCODE2NAME.get(number, str(number))
        if opname == "CUSTOM":
            opname = (code.CustomCode() or b"custom").decode(errors="replace")
        ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
        check = OpCheck(k, opname, [name(tensor(o)) for o in outs])
        if opname == COMPILED_OP:
            rep.compiled = True
        elif opname not in SUPPORTED_OPS:
            check.reason = f"{opname} is not in the Edge TPU's supported operations"
        elif opname == "MEAN" and len(ins) > 1:
            axes = const_values(ins[1])
            rank = len(shape(tensor(ins[0])))
            if axes is None or any((a % rank) not in (1, 2) for a in axes):
                check.reason = "MEAN reduces along other axes than x/y"
        elif opname == "PAD" and len(ins) > 1:
            pads = const_values(ins[1])
            if pads is None or pads.size != 8 or pads.reshape(4, 2)[[0, 3]].any():
                check.reason = "PAD pads along other axes than x/y"
        elif opname in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"):
            opts = op.BuiltinOptions()
            if opts is not None:
                cls = tflite.Pool2DOptions if opname != "CONCATENATION" else tflite.ConcatenationOptions
                o = cls()
                o.Init(opts.Bytes, opts.Pos)
                if o.FusedActivationFunction() != tflite.ActivationFunctionType.NONE:
                    check.reason = f"{opname} with a fused activation"
        elif opname == "SOFTMAX" and ins:
            dims = [d for d in shape(tensor(ins[0])) if d != 1]
            if len(dims) > 1 or (dims and dims[0] > 16000):
                check.reason = "SOFTMAX input is not 1-D with at most 16,000 elements"
        elif opname == "FULLY_CONNECTED":
            opts = op.BuiltinOptions()
            if opts is not None:
                o = tflite.FullyConnectedOptions()
                o.Init(opts.Bytes, opts.Pos)
                if o.WeightsFormat() != tflite.FullyConnectedOptionsWeightsFormat.DEFAULT:
                    check.reason = "FULLY_CONNECTED weights are not in the default format"
        if not check.reason:
            for i in ins + outs:
                if i < 0 or is_const(tensor(i)):  # weights are [O, kh, kw, I] in every Edge TPU model
                    continue
                dims = shape(tensor(i))
                if len(dims) > 3 and any(d > 1 for d in dims[:-3]):
                    check.reason = f"tensor {name(tensor(i))!r} {dims} is larger than 1 outside its 3 innermost dimensions"
                    break
        if check.reason and rep.first_unmapped is None and opname != COMPILED_OP:
            rep.first_unmapped = k
        rep.ops.append(check)
    return rep


@dataclass
class EdgeTPUTools:
    compiler: str | None  # path of edgetpu_compiler
    compiler_version: str
    libedgetpu: str | None
    devices: list[str]

    def missing(self) -> list[str]:
        out = []
        if self.compiler is None:
            out.append("edgetpu_compiler (Coral's Debian package edgetpu-compiler, x86-64 Linux)")
        if self.libedgetpu is None:
            out.append("libedgetpu (the Edge TPU runtime, package libedgetpu1-std)")
        if not self.devices:
            out.append("an Edge TPU device (no /dev/apex_* and no Coral USB accelerator)")
        return out

    def as_dict(self) -> dict:
        return {"edgetpu_compiler": self.compiler, "compiler_version": self.compiler_version,
                "libedgetpu": self.libedgetpu, "devices": self.devices, "missing": self.missing()}


def _usb_devices() -> list[str]:
    found = []
    for folder in glob.glob("/sys/bus/usb/devices/*"):
        try:
            ids = (Path(folder, "idVendor").read_text().strip(), Path(folder, "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in USB_IDS:
            found.append(f"USB {ids[0]}:{ids[1]} ({Path(folder).name})")
    return found


def tools() -> EdgeTPUTools:
    """What this host has for the Edge TPU: compiler, runtime library, devices."""
    compiler = shutil.which("edgetpu_compiler")
    version = ""
    if compiler:
        try:
            done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=20)
            version = (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else ""
        except (OSError, subprocess.SubprocessError):
            version = "did not answer --version"
    lib = ctypes.util.find_library("edgetpu")
    if lib is None:
        hits = sorted(glob.glob("/usr/lib/*/libedgetpu.so*") + glob.glob("/usr/lib/libedgetpu.so*")
                      + glob.glob("/usr/local/lib/libedgetpu.so*"))
        lib = hits[0] if hits else None
    devices = sorted(glob.glob("/dev/apex_*")) + _usb_devices()
    return EdgeTPUTools(compiler, version, lib, devices)


def is_edgetpu_profile(name: str | None) -> bool:
    """Whether a --device name is the Edge TPU profile (bench runs these checks instead of timing)."""
    return bool(name) and Path(str(name)).stem.startswith("coral-edge-tpu")
