"""LiteRT (ai-edge-litert) as a numpy-in, numpy-out classifier, for compare and accuracy checks.

A checkpoint is one .tflite file or several applied in order (a feature extractor then a classifier head,
as the shipped V1 1.0 checkpoint): each file's output tensor feeds the next file's input, requantized
when the two tensors' quantization parameters differ.

LiteRT (the optional extra `litert`) is imported only when a runner is created.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import BadInput, EnvironmentMissing

LITERT_HINT = "pip install 'mnetctl[litert]'"
KERNELS = ("AUTO", "BUILTIN", "BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
_INPUT_TYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32))


def load_litert():
    """The LiteRT `Interpreter` class; EnvironmentMissing (exit 3) if ai-edge-litert is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise EnvironmentMissing(
            f"LiteRT (the ai-edge-litert package) is not installed here ({exc})",
            LITERT_HINT,
        ) from None
    return Interpreter


def load_delegate(library: str):
    """A LiteRT delegate from its shared library (the GPU delegate on Android: libtensorflowlite_gpu_delegate.so);
    EnvironmentMissing (exit 3) when the library cannot be loaded here."""
    import ctypes

    load_litert()
    from ai_edge_litert.interpreter import load_delegate as _load

    try:
        ctypes.CDLL(library)  # first: LiteRT's Delegate object fails noisily in __del__ when the library is absent
        with _native_stderr_silenced():
            return _load(library)
    except (ValueError, OSError, RuntimeError) as exc:
        raise EnvironmentMissing(f"LiteRT delegate library {library} cannot be loaded on this host ({' '.join(str(exc).split())[:160]})",
                                 "the GPU delegate runs on Android/Linux GPUs with its library installed; on this host "
                                 "use delegate = \"xnnpack\"") from None


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide the native library's INFO lines (e.g. "Created TensorFlow Lite XNNPACK delegate") on fd 2."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def litert_version() -> str:
    try:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except Exception:  # metadata missing: installed some other way
        return "ai-edge-litert"


def pretrained_files(arch: str, width: float) -> list[Path]:
    """The shipped checkpoint's .tflite file(s) for an architecture and width, in the order they apply."""
    from .weights import registry

    ckpt = registry.find(arch, width)
    if ckpt is None:
        raise BadInput(f"no shipped checkpoint for {arch} width {width:g}",
                       "give the .tflite file(s) instead of 'pretrained'")
    root = registry.pretrained_dir()
    return [root / f for f in ckpt.files]


def _dequantize(x: np.ndarray, quant: tuple) -> np.ndarray:
    scale, zero = quant
    return (x.astype(np.float32) - zero) * scale if x.dtype != np.float32 and scale else x.astype(np.float32)


def _quantize(x: np.ndarray, dtype: np.dtype, quant: tuple) -> np.ndarray:
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero = quant
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


class LiteRTRunner:
    """A LiteRT checkpoint (one file, or several chained) at batch 1 with a call like a session.run.

    paths: the .tflite file(s), applied in order. threads: LiteRT's num_threads (None: LiteRT's default).
    kernels: LiteRT's op resolver ("AUTO": optimised kernels with XNNPACK, "BUILTIN_REF": reference kernels).
    """

    def __init__(self, paths: Path | str | Sequence[Path | str], threads: int | None, kernels: str = "AUTO",
                 delegate_library: str | None = None):
        interpreter_cls = load_litert()
        if kernels not in KERNELS:
            raise BadInput(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
        self.delegates = [load_delegate(delegate_library)] if delegate_library else []
        files = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not files:
            raise BadInput("no TFLite file given")
        self.paths = files
        self.path = files[0]
        self.label = " + ".join(str(f) for f in files)  # how reports name the checkpoint
        self.chain = [self._open(interpreter_cls, f, threads, kernels, first=i == 0, delegates=self.delegates)
                      for i, f in enumerate(files)]
        for (a, a_path), (b, b_path) in zip(zip(self.chain, files), zip(self.chain[1:], files[1:])):
            out, inp = a.get_output_details()[0], b.get_input_details()[0]
            if [int(d) for d in out["shape"]] != [int(d) for d in inp["shape"]]:
                raise BadInput(f"tflite {b_path} takes {list(inp['shape'])}, but {a_path} gives {list(out['shape'])}")
        inp = self.chain[0].get_input_details()[0]
        self.input_index = inp["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        self.resolution = int(inp["shape"][1])
        self.input_quant = tuple(inp.get("quantization", (0.0, 0)))
        if self.input_dtype not in _INPUT_TYPES:
            raise BadInput(f"tflite {files[0]}: unsupported input type {self.input_dtype}")
        # per link: (interpreter, input index, input dtype, input quant, output index, output quant)
        self._links = []
        for it in self.chain:
            i, o = it.get_input_details()[0], it.get_output_details()[0]
            self._links.append((it, i["index"], np.dtype(i["dtype"]), tuple(i.get("quantization", (0.0, 0))),
                                o["index"], tuple(o.get("quantization", (0.0, 0)))))
        out = self.chain[-1].get_output_details()[0]
        self.output_index = out["index"]
        self.output_quant = tuple(out.get("quantization", (0.0, 0)))
        self.classes = int(np.prod(out["shape"][1:]))
        self.label_offset = 1 if self.classes == 1001 else 0

    @staticmethod
    def _open(interpreter_cls, path: Path, threads: int | None, kernels: str, first: bool, delegates=()):
        if not path.is_file():
            raise BadInput(f"tflite {path}: no such file")
        if path.stat().st_size == 0:
            raise BadInput(f"tflite {path}: empty file")
        with open(path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise BadInput(f"tflite {path} is not a TFLite model (no 'TFL3' FlatBuffer identifier)")
        kwargs = {} if threads is None else {"num_threads": int(threads)}
        if delegates:
            kwargs["experimental_delegates"] = list(delegates)
        if kernels != "AUTO":
            from ai_edge_litert.interpreter import OpResolverType

            kwargs["experimental_op_resolver_type"] = getattr(OpResolverType, kernels)
        try:
            with _native_stderr_silenced():
                interp = interpreter_cls(model_path=str(path), **kwargs)
            inputs = interp.get_input_details()
            if len(inputs) != 1:
                raise BadInput(f"tflite {path} has {len(inputs)} inputs; a classifier takes one image")
            shape = [int(d) for d in inputs[0]["shape"]]
            if first:
                if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
                    raise BadInput(f"tflite {path}: input shape {shape} is not [batch, R, R, 3]")
                if shape[0] != 1:
                    interp.resize_tensor_input(inputs[0]["index"], [1, shape[1], shape[2], 3])
            with _native_stderr_silenced():
                interp.allocate_tensors()
        except BadInput:
            raise
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"tflite {path} is not a loadable TFLite model ({' '.join(str(exc).split())[:200]})") from None
        return interp

    def bind(self, x: np.ndarray) -> None:
        """Set the input of a one-file model once; `run_bound` then only invokes (no copy per run)."""
        it, in_index = self._links[0][0], self._links[0][1]
        it.set_tensor(in_index, np.ascontiguousarray(x, dtype=self.input_dtype))

    def run_bound(self, _arg=None) -> None:
        """One invoke on the bound input (a chain of files runs as `__call__` on what `bind` set)."""
        if len(self._links) == 1:
            self._links[0][0].invoke()
            return
        it, in_index = self._links[0][0], self._links[0][1]
        self(it.get_tensor(in_index))

    def prepare(self, crop_rgb: np.ndarray, normalise: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The input tensor [1, R, R, 3] for one RGB uint8 crop of this model's size."""
        if self.input_dtype == np.uint8:
            x = crop_rgb
        else:
            x = normalise(crop_rgb)
            if self.input_dtype == np.int8:
                scale, zero = self.input_quant
                if not scale:
                    raise BadInput(f"tflite {self.path}: int8 input without quantization parameters")
                x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        return np.ascontiguousarray(x[None], dtype=self.input_dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        prev_quant = None
        for it, in_index, in_dtype, in_quant, out_index, out_quant in self._links:
            if prev_quant is not None and (x.dtype != in_dtype or prev_quant != in_quant):
                x = _quantize(_dequantize(x, prev_quant), in_dtype, in_quant)
            it.set_tensor(in_index, x)
            it.invoke()
            x = it.get_tensor(out_index)
            prev_quant = out_quant
        return x

    def scores(self, out: np.ndarray) -> np.ndarray:
        """Dequantised scores of the 1000 (or however many) real classes, background dropped."""
        flat = np.asarray(out).reshape(-1)
        return _dequantize(flat, self.output_quant)[self.label_offset:]
