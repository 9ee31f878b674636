"""The runtimes (engines) a model runs on, behind one interface: ONNX Runtime, LiteRT and OpenVINO's own runtime.

`load(engine, path, ...)` gives a `Loaded`: `run(feed)` for the timing loops (the input set once, as ONNX
Runtime's IO binding does), `infer(batch)` for eval and predict (preprocessed images in, float32 scores out, a
quantised output dequantised) and `facts` for reports (engine, version, device or delegate, threads).

  onnxruntime  .onnx files on the profile's execution providers (`runtime.create_session`, no silent fallback)
  litert       .tflite files; XNNPACK on the CPU (LiteRT's default delegate), the plain built-in kernels, or a
               delegate library such as Android's GPU delegate (`litert.LiteRTRunner`)
  openvino     .onnx files (float and QDQ int8) compiled for CPU, GPU or NPU with a performance hint
               (`openvino_runtime.OpenVINOModel`)

Each runtime is imported by one module: onnxruntime by `runtime/ort.py`, LiteRT by `litert.py`, OpenVINO by
`openvino_runtime.py`. Engine options (a profile's `[engine_options]`) are data: `ENGINE_OPTIONS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .errors import BadInput, EnvironmentMissing

ONNXRUNTIME, LITERT, OPENVINO = "onnxruntime", "litert", "openvino"
ENGINES = (ONNXRUNTIME, LITERT, OPENVINO)


@dataclass(frozen=True)
class EngineInfo:
    name: str
    title: str
    suffixes: tuple[str, ...]  # the model files it runs
    hint: str  # how to install it


ENGINE_INFO: dict[str, EngineInfo] = {
    ONNXRUNTIME: EngineInfo(ONNXRUNTIME, "ONNX Runtime", (".onnx",), "pip install onnxruntime"),
    LITERT: EngineInfo(LITERT, "LiteRT", (".tflite",), "pip install 'mnetctl[litert]'"),
    OPENVINO: EngineInfo(OPENVINO, "OpenVINO", (".onnx",), "pip install 'mnetctl[openvino]'"),
}

# Allowed `engine_options` per engine: key -> allowed values (a tuple), or the value's type.
LITERT_DELEGATES = ("xnnpack", "builtin", "gpu")
ENGINE_OPTIONS: dict[str, dict[str, Any]] = {
    ONNXRUNTIME: {},
    LITERT: {
        "delegate": LITERT_DELEGATES,  # xnnpack: LiteRT's default CPU delegate; builtin: its plain kernels; gpu: a library
        "delegate_library": str,  # the delegate's shared library (gpu: libtensorflowlite_gpu_delegate.so)
    },
    OPENVINO: {
        "device": str,  # CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU ...
        "performance_hint": ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"),
        "num_streams": int,
        "inference_precision": ("f32", "bf16", "f16"),
    },
}


def check_engine(name: str) -> str:
    key = str(name).strip().lower()
    if key not in ENGINE_INFO:
        raise BadInput(f"runtime must be one of {', '.join(ENGINES)}, got {name!r}")
    return key


def check_engine_options(engine: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with their values checked against `ENGINE_OPTIONS` (BadInput naming the key)."""
    allowed = ENGINE_OPTIONS[check_engine(engine)]
    out = {}
    for key, value in options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise BadInput(f"engine_options.{key}: not an option of the {engine} runtime (its options: {known})")
        rule = allowed[key]
        if isinstance(rule, tuple):
            if value not in rule:
                raise BadInput(f"engine_options.{key} must be one of {', '.join(map(str, rule))}, got {value!r}")
        elif rule is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BadInput(f"engine_options.{key} must be a whole number >= 1, got {value!r}")
        elif rule is str and (not isinstance(value, str) or not value):
            raise BadInput(f"engine_options.{key} must be a non-empty string, got {value!r}")
        out[key] = value
    if engine == LITERT and out.get("delegate") == "gpu" and not out.get("delegate_library"):
        raise BadInput("engine_options.delegate = \"gpu\" needs delegate_library (e.g. libtensorflowlite_gpu_delegate.so)")
    return out


def engine_for(path: Path | str, runtime: str | None = None) -> str:
    """The engine for a model file: `runtime` when given (checked against the file kind), else by the file
    (.tflite: litert, anything else: onnxruntime)."""
    from .tflite_model import is_tflite

    tfl = is_tflite(path)
    if runtime is None:
        return LITERT if tfl else ONNXRUNTIME
    engine = check_engine(runtime)
    if engine == LITERT and not tfl:
        raise BadInput(f"runtime litert runs .tflite files, and {path} is not one",
                       "export it first: mnetctl export MODEL.onnx --format tflite")
    if engine != LITERT and tfl:
        raise BadInput(f"{path} is a TFLite model; the {engine} runtime runs .onnx files", "pass --runtime litert")
    return engine


def status(engine: str) -> tuple[bool, str]:
    """(installed here, version or why not)."""
    engine = check_engine(engine)
    try:
        return True, version(engine)
    except EnvironmentMissing as exc:
        return False, exc.message


def require(engine: str) -> None:
    """EnvironmentMissing (exit 3, with the pip hint) unless the engine's package is installed."""
    engine = check_engine(engine)
    if engine == LITERT:
        from .litert import load_litert

        load_litert()
    elif engine == OPENVINO:
        from .openvino_runtime import load_openvino

        load_openvino()


def version(engine: str) -> str:
    require(engine)
    if engine == LITERT:
        from .litert import litert_version

        return litert_version()
    if engine == OPENVINO:
        from .openvino_runtime import openvino_version

        return openvino_version()
    from .runtime import onnxruntime_info

    return f"onnxruntime {onnxruntime_info().get('version', '')}".strip()


@dataclass
class Loaded:
    """A model loaded on one engine."""

    engine: str
    path: Path
    run: Callable[[Any], Any]  # the timed call, on `feed`
    feed: Any
    infer: Callable[[np.ndarray], np.ndarray]  # preprocessed batch -> float32 [N, classes]
    input_shape: tuple[int, ...]
    input_dtype: np.dtype  # what `feed` holds (the runtime's own input type)
    providers: list[str]  # what runs it, e.g. ["CPUExecutionProvider"], ["litert:xnnpack"], ["openvino:CPU"]
    facts: dict[str, Any] = field(default_factory=dict)
    create_ms: float = 0.0
    session_info: Any = None  # onnxruntime only: runtime.SessionInfo
    keep: Any = None  # what the run needs alive (bound arrays)
    call: Callable[[np.ndarray], Any] | None = None  # one inference on the runtime's own input: array in, raw output


def _random(shape, dtype: np.dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dtype == np.int8:
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    return rng.standard_normal(shape).astype(dtype)


def load(engine: str, path: Path | str, threads: int | None = None, options: Mapping[str, Any] | None = None,
         eps=None, batch: int | None = 1, seed: int = 0, session_config: Mapping[str, str] | None = None,
         graph_optimization: str | None = None, first_run: bool = True) -> Loaded:
    """Load `path` on `engine` for timing (`run(feed)`) and inference (`infer`).

    threads: the runtime's thread count (None: its default). options: the engine's options (`ENGINE_OPTIONS`).
    eps, session_config, graph_optimization: onnxruntime only (providers with no silent fallback; idle pool
    threads always stop spinning between runs, so interleaved runnables do not steal each other's cores).
    batch: the timed batch (LiteRT: 1 only); None keeps the model's own batch axis for `infer`.
    first_run: run once on the feed before returning (a model that loads but cannot run fails here, as BadInput);
    LiteRT and OpenVINO only (onnxruntime always runs once, to allocate and bind its outputs).
    """
    engine = engine_for(path, engine)
    path = Path(path)
    opts = check_engine_options(engine, options or {})
    if threads is not None:
        from .runtime import check_threads

        check_threads(threads)
    require(engine)
    if engine == LITERT:
        return _load_litert(path, threads, opts, batch, seed, first_run)
    if engine == OPENVINO:
        return _load_openvino(path, threads, opts, batch, seed, first_run)
    return _load_ort(path, threads, eps, batch, seed, session_config, graph_optimization)


def _load_ort(path, threads, eps, batch, seed, session_config, graph_optimization) -> Loaded:
    from .modelio import cannot_run
    from .runtime import bind_io, create_session, keep_outputs, random_feeds

    info = create_session(path, eps, threads=threads, batch=batch or 1, stop_idle_spinning=True,
                          config=session_config, graph_optimization=graph_optimization)
    session = info.session
    feeds = random_feeds(session, batch=batch or 1, seed=seed)
    io = bind_io(session, feeds)
    try:
        session.run_with_iobinding(io)  # the cold run allocates the outputs; bound, no later run allocates
    except Exception as exc:
        raise cannot_run(path, exc) from None
    keep_outputs(session, io)
    name = session.get_inputs()[0].name
    out_name = session.get_outputs()[0].name

    def infer(x: np.ndarray) -> np.ndarray:
        try:
            (out,) = session.run([out_name], {name: x})
        except Exception as exc:
            raise cannot_run(path, exc) from None
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(out.shape[0], -1)

    first = next(iter(feeds.values()))
    return Loaded(ONNXRUNTIME, path, session.run_with_iobinding, io, infer, tuple(first.shape), first.dtype,
                  list(info.used), {"engine": ONNXRUNTIME, "version": version(ONNXRUNTIME), "threads": threads,
                                    "providers": list(info.used)},
                  info.create_ms, info, keep=feeds, call=lambda x: session.run([out_name], {name: x})[0])


def _load_litert(path: Path, threads, opts, batch, seed, first_run) -> Loaded:
    from .litert import LiteRTRunner, _dequantize

    if batch not in (None, 1):
        raise BadInput(f"batch {batch} cannot be used with the litert runtime: mnetctl runs TFLite models at batch 1")
    delegate = opts.get("delegate", "xnnpack")
    kernels = "BUILTIN_WITHOUT_DEFAULT_DELEGATES" if delegate in ("builtin", "gpu") else "AUTO"
    t0 = time.perf_counter()
    runner = LiteRTRunner(path, threads, kernels=kernels, delegate_library=opts.get("delegate_library"))
    create_ms = (time.perf_counter() - t0) * 1000.0
    shape = (1, *runner.chain[0].get_input_details()[0]["shape"][1:])
    feed = _random(tuple(int(d) for d in shape), runner.input_dtype, seed)
    runner.bind(feed)
    if first_run:
        try:
            runner.run_bound()
        except (RuntimeError, ValueError) as exc:
            raise BadInput(f"LiteRT cannot run {path}: {' '.join(str(exc).split())[:200]}") from None
    scale, zero = runner.input_quant

    def infer(x: np.ndarray) -> np.ndarray:
        rows = []
        for row in x:
            sample = row[None]
            if runner.input_dtype == np.int8 and sample.dtype != np.int8:
                if not scale:
                    raise BadInput(f"tflite {path}: int8 input without quantization parameters")
                sample = np.clip(np.round(sample / scale + zero), -128, 127).astype(np.int8)
            out = np.asarray(runner(np.ascontiguousarray(sample, dtype=runner.input_dtype))).reshape(-1)
            rows.append(_dequantize(out, runner.output_quant))
        return np.stack(rows).astype(np.float32)

    label = f"litert:{delegate}"
    return Loaded(LITERT, path, runner.run_bound, None, infer, tuple(feed.shape), feed.dtype, [label],
                  {"engine": LITERT, "version": version(LITERT), "delegate": delegate,
                   "delegate_library": opts.get("delegate_library"), "threads": threads},
                  create_ms, keep=(runner, feed), call=runner)


def _load_openvino(path: Path, threads, opts, batch, seed, first_run) -> Loaded:
    from .openvino_runtime import OpenVINOModel

    t0 = time.perf_counter()
    model = OpenVINOModel(path, device=opts.get("device", "CPU"), threads=threads,
                          hint=opts.get("performance_hint", "LATENCY"), num_streams=opts.get("num_streams"),
                          precision=opts.get("inference_precision"), batch=batch)
    create_ms = (time.perf_counter() - t0) * 1000.0
    shape = tuple(d if d is not None else (batch or 1) for d in model.input_shape)
    if None in model.input_shape[1:]:
        from .meta import read_meta
        from .modelio import load_onnx

        res = read_meta(load_onnx(path, load_external_data=False), str(path)).resolution
        shape = tuple(shape[0:1]) + tuple(res if d is None else d for d in model.input_shape[1:])
    feed = _random(shape, model.input_dtype, seed)
    if batch is not None:
        model.bind(feed)
    if batch is not None and first_run:
        try:
            model.run_bound()
        except Exception as exc:  # OpenVINO's runtime errors
            from .errors import short

            raise BadInput(f"OpenVINO cannot run {path}: {short(exc)}") from None

    def infer(x: np.ndarray) -> np.ndarray:
        out = np.asarray(model(x), dtype=np.float32)
        return out.reshape(out.shape[0], -1)

    devices = model.execution_devices()
    return Loaded(OPENVINO, path, model.run_bound, None, infer, shape, feed.dtype, [f"openvino:{d}" for d in devices],
                  {"engine": OPENVINO, "version": version(OPENVINO), "device": model.device, "execution_devices": devices,
                   "performance_hint": model.hint, "threads": threads, "threads_used": model.threads_used()},
                  create_ms, keep=(model, feed), call=model)


def runnable(name: str, loaded: Loaded):
    """An `interleave.Runnable` timing `loaded.run` on its bound input."""
    from .interleave import Runnable

    return Runnable(name, loaded.run, [loaded.feed])


def profile_engine(profile) -> tuple[str, dict[str, Any]]:
    """(engine, engine options) a device profile names (onnxruntime for a profile that names none)."""
    if profile is None:
        return ONNXRUNTIME, {}
    return getattr(profile, "engine", ONNXRUNTIME), dict(getattr(profile, "engine_options", {}) or {})


def resolve(path: Path | str, runtime: str | None, profile) -> tuple[str, dict[str, Any]]:
    """The engine and its options for a model: `runtime` (a flag) over the profile's engine over the file kind.
    A flag that names another engine than the profile drops the profile's engine options."""
    prof_engine, prof_opts = profile_engine(profile)
    if runtime is not None:
        engine = engine_for(path, runtime)
        return engine, (prof_opts if engine == prof_engine else {})
    if profile is not None and prof_engine != ONNXRUNTIME:
        return engine_for(path, prof_engine), prof_opts
    return engine_for(path, None), (prof_opts if engine_for(path, None) == prof_engine else {})


__all__ = ["ENGINES", "ENGINE_INFO", "ENGINE_OPTIONS", "Loaded", "check_engine", "check_engine_options",
           "engine_for", "load", "profile_engine", "require", "resolve", "runnable", "status", "version"]
