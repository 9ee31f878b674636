"""Side-by-side run of an ONNX model (ONNX Runtime) and a TFLite checkpoint (LiteRT) on this host.

Both runtimes get the same images, the same thread count and the same kind of call (numpy array
in, numpy array out), and their timed runs are interleaved in one process: iteration i runs
ONNX then LiteRT, iteration i+1 LiteRT then ONNX, so drift of the host (frequency, other
processes, caches) hits both sides alike and the ratio stays meaningful on a busy machine.

Preprocessing follows the ONNX model's metadata (`mnetctl.data.Preprocessor`). The LiteRT model
gets the same geometric crop at its own input size: a uint8 input takes the crop's pixels as they
are (the TF checkpoints' convention), an int8 input the normalised image quantised with the
input's (scale, zero point), a float input the normalised image.

LiteRT (`ai-edge-litert`, the optional extra `litert`) is imported only here, and only when a
comparison runs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import BadInput, EnvironmentMissing, MnetctlError

LITERT_HINT = "pip install 'mnetctl[litert]'"
DEFAULT_ITERATIONS = 200
DEFAULT_WARMUP = 20
TIMING_IMAGES = 16  # the timed runs cycle through (at most) this many preprocessed images

ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


# --------------------------------------------------------------------------------------------
# Host description and load


def host_cpu() -> str:
    """The CPU model named by /proc/cpuinfo (platform's guess elsewhere) and the CPUs usable here."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name}, {usable_cpus()} CPUs"


def usable_cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


class LoadMeter:
    """Share of the machine's CPU time that other processes used while a measurement ran.

    Busy time of all CPUs (from /proc/stat) minus this process's own CPU time, over wall time x CPUs.
    None where /proc/stat does not exist. A value above ~0.1 means the figures were taken on a
    busy host: ratios from interleaved runs still hold, absolute times less so.
    """

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = fh.readline().split()[1:]
        except OSError:
            return None
        ticks = [int(v) for v in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        busy = (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        own = sum(os.times()[:2])
        return busy, own, time.monotonic()

    def other_load(self) -> float | None:
        end = self._snapshot()
        if self._start is None or end is None:
            return None
        busy = end[0] - self._start[0]
        own = end[1] - self._start[1]
        wall = end[2] - self._start[2]
        ncpu = os.cpu_count() or 1
        if wall <= 0:
            return None
        return round(min(1.0, max(0.0, (busy - own) / (wall * ncpu))), 3)


# --------------------------------------------------------------------------------------------
# Statistics


@dataclass
class LatencyStats:
    runs: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "LatencyStats":
        if not len(seconds):
            raise ValueError("no timings")
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(
            runs=int(ms.size),
            p50_ms=float(np.percentile(ms, 50)),
            p90_ms=float(np.percentile(ms, 90)),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class Side:
    """One runtime's half of a comparison."""

    name: str  # "onnxruntime" / "litert"
    model: str
    runtime: str  # package and version
    detail: str  # provider(s) / delegate
    latency: LatencyStats | None = None
    predictions: list[int] = field(default_factory=list, repr=False)
    correct: int = 0

    def as_dict(self, labelled: int) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "runtime": self.runtime, "detail": self.detail}
        out.update(self.latency.as_dict() if self.latency else {})
        out["top1"] = round(self.correct / labelled, 6) if labelled else None
        out["correct"] = self.correct if labelled else None
        return out


@dataclass
class CompareResult:
    onnx: Side
    litert: Side
    host: str
    threads: int
    iterations: int
    warmup: int
    images: int  # images classified by both
    labelled: int  # of those, with a known label
    agree: int  # images where both predicted the same class
    failed: list[tuple[str, str]] = field(default_factory=list)  # unreadable images (path, reason)
    other_load: float | None = None  # share of the CPUs used by other processes during timing

    @property
    def ratio_p50(self) -> float:
        return self.onnx.latency.p50_ms / self.litert.latency.p50_ms

    @property
    def ratio_mean(self) -> float:
        return self.onnx.latency.mean_ms / self.litert.latency.mean_ms

    @property
    def agreement(self) -> float:
        return self.agree / self.images if self.images else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "threads": self.threads,
            "iterations": self.iterations,
            "warmup": self.warmup,
            "images": self.images,
            "labelled": self.labelled,
            "onnx": self.onnx.as_dict(self.labelled),
            "litert": self.litert.as_dict(self.labelled),
            "ratio_p50": round(self.ratio_p50, 4),
            "ratio_mean": round(self.ratio_mean, 4),
            "agreement": round(self.agreement, 6),
            "agree": self.agree,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "other_load": self.other_load,
        }


# --------------------------------------------------------------------------------------------
# LiteRT side


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


class LiteRTRunner:
    """A LiteRT interpreter at batch 1 with a numpy-in, numpy-out call like a session.run."""

    def __init__(self, path: Path | str, threads: int):
        interpreter_cls = load_litert()
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"--tflite {path}: no such file")
        if path.stat().st_size == 0:
            raise BadInput(f"--tflite {path}: empty file")
        try:
            with _native_stderr_silenced():
                self.interp = interpreter_cls(model_path=str(path), num_threads=int(threads))
            inputs = self.interp.get_input_details()
            if len(inputs) != 1:
                raise BadInput(f"--tflite {path} has {len(inputs)} inputs; compare needs a one-image classifier")
            shape = [int(d) for d in inputs[0]["shape"]]
            if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
                raise BadInput(f"--tflite {path}: input shape {shape} is not [batch, R, R, 3]")
            if shape[0] != 1:
                self.interp.resize_tensor_input(inputs[0]["index"], [1, shape[1], shape[2], 3])
            with _native_stderr_silenced():
                self.interp.allocate_tensors()
        except BadInput:
            raise
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"--tflite {path} is not a loadable TFLite model ({' '.join(str(exc).split())[:200]})") from None
        inp = self.interp.get_input_details()[0]
        outs = self.interp.get_output_details()
        self.input_index = inp["index"]
        self.input_dtype = np.dtype(inp["dtype"])
        self.resolution = int(inp["shape"][1])
        self.input_quant = tuple(inp.get("quantization", (0.0, 0)))
        if self.input_dtype not in (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32)):
            raise BadInput(f"--tflite {path}: unsupported input type {self.input_dtype}")
        out = outs[0]
        self.output_index = out["index"]
        self.output_quant = tuple(out.get("quantization", (0.0, 0)))
        width = int(np.prod(out["shape"][1:]))
        self.classes = width
        self.label_offset = 1 if width == 1001 else 0
        self.path = path

    def prepare(self, crop_rgb: np.ndarray, normalise: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The input tensor [1, R, R, 3] for one RGB uint8 crop of this model's size."""
        if self.input_dtype == np.uint8:
            x = crop_rgb
        else:
            x = normalise(crop_rgb)
            if self.input_dtype == np.int8:
                scale, zero = self.input_quant
                if not scale:
                    raise BadInput(f"--tflite {self.path}: int8 input without quantization parameters")
                x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        return np.ascontiguousarray(x[None], dtype=self.input_dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.input_index, x)
        self.interp.invoke()
        return self.interp.get_tensor(self.output_index)

    def scores(self, out: np.ndarray) -> np.ndarray:
        """Dequantised scores of the 1000 (or however many) real classes, background dropped."""
        flat = np.asarray(out).reshape(-1).astype(np.float32)
        scale, zero = self.output_quant
        if out.dtype != np.float32 and scale:
            flat = (flat - zero) * scale
        return flat[self.label_offset:]


# --------------------------------------------------------------------------------------------
# ONNX side


class OnnxRunner:
    """An ONNX Runtime session at batch 1 (numpy in, numpy out), plus its model's I/O description."""

    def __init__(self, path: Path | str, threads: int, session=None):
        from .evaluate import inspect_io
        from .modelio import load_onnx
        from .runtime import cpu_session

        model = load_onnx(path, load_external_data=False)
        self.io = inspect_io(model, path)
        del model
        if session is None:
            try:
                # idle pool threads stop spinning when a run returns, so they take no CPU time from
                # LiteRT's runs in between (on a 2-core host spinning added ~30% to LiteRT's p50)
                session = cpu_session(path, threads, stop_idle_spinning=True)
            except MnetctlError:
                raise
            except Exception as exc:  # onnxruntime's own errors (unsupported op, bad graph)
                raise BadInput(f"ONNX Runtime cannot load {path}: {' '.join(str(exc).split())[:300]}") from None
        self.session = session
        self.path = Path(path)
        self.feed_name = self.io.input_name
        self.out_names = [self.io.output_name]

    @property
    def providers(self) -> str:
        return ", ".join(self.session.get_providers())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(self.out_names, {self.feed_name: x})[0]
        except Exception as exc:  # ORT loaded the graph but cannot run it (e.g. a corrupt attribute)
            from .modelio import cannot_run

            raise cannot_run(self.path, exc) from None

    def scores(self, out: np.ndarray) -> np.ndarray:
        return np.asarray(out, dtype=np.float32).reshape(-1)[self.io.label_offset:]


def ort_version() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}"


# --------------------------------------------------------------------------------------------
# The comparison


def _timed(fn: Callable[[np.ndarray], Any], x: np.ndarray) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(x)
    return out, time.perf_counter() - start


def compare(
    model: Path | str,
    tflite: Path | str,
    threads: int = 2,
    iterations: int = DEFAULT_ITERATIONS,
    warmup: int = DEFAULT_WARMUP,
    data: Path | str | None = None,
    limit: int | None = None,
    session=None,
    progress: ProgressFn | None = None,
) -> CompareResult:
    """Classify the same images with both runtimes, then time them interleaved.

    model: an ONNX classifier (preprocessing from its metadata). tflite: a TFLite classifier.
    threads: intra-op threads of ONNX Runtime and LiteRT's num_threads alike.
    iterations: timed runs per runtime (after `warmup` untimed runs each).
    data: image folder / CSV / image (default: the shipped val sample); limit: first N images.
    session: an already configured ONNX Runtime session for `model` (default: a plain CPU session).
    """
    from .data import Preprocessor, default_val_dir, find_samples, load_image

    for name, value, low in (("--threads", threads, 1), ("--iterations", iterations, 1), ("--warmup", warmup, 0)):
        if int(value) < low:
            raise BadInput(f"{name} must be at least {low}, got {value}")
    threads, iterations, warmup = int(threads), int(iterations), int(warmup)
    lite = LiteRTRunner(tflite, threads)  # first: a missing LiteRT is reported before any other work
    onnx_side = OnnxRunner(model, threads, session)
    samples = find_samples(data if data is not None else default_val_dir(), limit)

    meta = onnx_side.io.meta
    pre = Preprocessor.from_meta(meta)
    lite_geom = replace(Preprocessor.from_meta(meta), resolution=lite.resolution, input_format="uint8-nhwc")
    mean = np.asarray(meta.mean, np.float32)
    std = np.asarray(meta.std, np.float32)
    if meta.color_order.upper() == "BGR":
        mean, std = mean[::-1], std[::-1]

    def lite_norm(crop: np.ndarray) -> np.ndarray:  # the crop is already R x R (and in colour order)
        return (crop.astype(np.float32) - mean) / std

    ox_side = Side("onnxruntime", str(model), ort_version(), onnx_side.providers)
    lt_side = Side("litert", str(tflite), litert_version(), f"num_threads={threads}")
    failed: list[tuple[str, str]] = []
    timing_inputs: list[tuple[np.ndarray, np.ndarray]] = []
    labelled = agree = 0

    # 1) accuracy pass: every image through both runtimes
    for i, sample in enumerate(samples):
        try:
            rgb = load_image(sample.path)
        except BadInput as exc:
            failed.append((str(sample.path), exc.message))
            continue
        x_onnx = pre(rgb)[None].astype(onnx_side.io.input_dtype, copy=False)
        x_lite = lite.prepare(lite_geom(rgb), lite_norm)
        p_onnx = int(np.argmax(onnx_side.scores(onnx_side(x_onnx))))
        p_lite = int(np.argmax(lite.scores(lite(x_lite))))
        ox_side.predictions.append(p_onnx)
        lt_side.predictions.append(p_lite)
        agree += int(p_onnx == p_lite)
        if sample.label is not None:
            labelled += 1
            ox_side.correct += int(p_onnx == sample.label)
            lt_side.correct += int(p_lite == sample.label)
        if len(timing_inputs) < TIMING_IMAGES:
            timing_inputs.append((x_onnx, x_lite))
        if progress:
            progress("classify", i + 1, len(samples))
    if not timing_inputs:
        path, reason = failed[0]
        raise BadInput(f"none of the {len(samples)} images could be read (first: {reason})")

    # 2) warm-up, then interleaved timed runs
    for i in range(warmup):
        x_onnx, x_lite = timing_inputs[i % len(timing_inputs)]
        onnx_side(x_onnx)
        lite(x_lite)
    t_onnx: list[float] = []
    t_lite: list[float] = []
    meter = LoadMeter()
    for i in range(iterations):
        x_onnx, x_lite = timing_inputs[i % len(timing_inputs)]
        if i % 2 == 0:
            t_onnx.append(_timed(onnx_side, x_onnx)[1])
            t_lite.append(_timed(lite, x_lite)[1])
        else:
            t_lite.append(_timed(lite, x_lite)[1])
            t_onnx.append(_timed(onnx_side, x_onnx)[1])
        if progress and ((i + 1) % 10 == 0 or i + 1 == iterations):
            progress("time", i + 1, iterations)
    ox_side.latency = LatencyStats.of(t_onnx)
    lt_side.latency = LatencyStats.of(t_lite)
    return CompareResult(
        onnx=ox_side,
        litert=lt_side,
        host=host_cpu(),
        threads=threads,
        iterations=iterations,
        warmup=warmup,
        images=len(ox_side.predictions),
        labelled=labelled,
        agree=agree,
        failed=failed,
        other_load=meter.other_load(),
    )
