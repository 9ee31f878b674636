"""Side-by-side run of an ONNX model (ONNX Runtime) and a TFLite checkpoint (LiteRT) on this host.

Both runtimes get the same images, the same thread count and the same kind of call (numpy array
in, numpy array out), and their timed runs are interleaved in one process (`mnetctl.interleave`):
iteration i runs ONNX then LiteRT, iteration i+1 LiteRT then ONNX, so drift of the host (frequency,
other processes, caches) hits both sides alike and the ratio stays meaningful on a busy machine.

Preprocessing follows the ONNX model's metadata (`mnetctl.data.Preprocessor`). The LiteRT model
gets the same geometric crop at its own input size: a uint8 input takes the crop's pixels as they
are (the TF checkpoints' convention), an int8 input the normalised image quantised with the
input's (scale, zero point), a float input the normalised image. The checkpoint may be several
files applied in order (`mnetctl.litert`), or "pretrained": the shipped one for the model's
architecture and width.

This module also holds the ONNX side used for interleaving (`OnnxRunner`, `onnx_runnable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import BadInput
from .hostinfo import cpu_summary
from .interleave import Runnable, interleave
from .litert import LiteRTRunner, litert_version, load_litert, pretrained_files
from .progress import ProgressFn, report
from .stats import LatencyStats

DEFAULT_ITERATIONS = 200
DEFAULT_WARMUP = 20
TIMING_IMAGES = 16  # the timed runs cycle through (at most) this many preprocessed images
PRETRAINED = "pretrained"  # as a tflite argument: the shipped checkpoint for the model's arch and width


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
        out.update(self.latency.as_dict(suffix="_ms", digits=4) if self.latency else {})
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
    other_load: float | None = None  # other processes' CPU load during timing, in cores (hostinfo.LoadMeter)

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
# ONNX side


class OnnxRunner:
    """An ONNX Runtime session at batch 1 (numpy in, numpy out), plus its model's I/O description."""

    def __init__(self, path: Path | str, threads: int, session=None):
        from .model import Model
        from .runtime import open_cpu_session

        self.io = Model.open(path)
        if session is None:
            # idle pool threads stop spinning when a run returns, so they take no CPU time from
            # LiteRT's runs in between (on a 2-core host spinning added ~30% to LiteRT's p50)
            session = open_cpu_session(path, str(path), threads, stop_idle_spinning=True)
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


class EngineRunner(OnnxRunner):
    """The ONNX model on another runtime than ONNX Runtime (OpenVINO), with OnnxRunner's interface."""

    def __init__(self, path: Path | str, threads: int, engine: str):
        from .engines import load, version
        from .model import Model

        self.io = Model.open(path)
        self.path = Path(path)
        self.loaded = load(engine, path, threads=threads, batch=1, first_run=False)
        self.engine = engine
        self.version = version(engine)
        self.feed_name = self.io.input_name
        self.out_names = [self.io.output_name]

    @property
    def providers(self) -> str:
        return ", ".join(self.loaded.providers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.loaded.call(x)


def onnx_runnable(path: Path | str, threads: int | None = None, name: str | None = None,
                  inputs: Sequence[np.ndarray] | None = None, seed: int = 0) -> Runnable:
    """An ONNX model as an `interleave.Runnable`: a CPU session that stops spinning between runs.

    inputs: arrays for the model's (one) input, cycled through; default: one random input of the right shape.
    """
    from .modelio import guarded_run
    from .runtime import open_cpu_session, random_feeds

    session = open_cpu_session(path, str(path), threads, stop_idle_spinning=True)
    if inputs is None:
        feeds = [random_feeds(session, seed=seed)]
    else:
        feeds = [{session.get_inputs()[0].name: x} for x in inputs]

    run = guarded_run(session, Path(path))

    return Runnable(name or str(path), run, feeds)


def ort_version() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}"


# --------------------------------------------------------------------------------------------
# The comparison


def _mismatch(onnx_side: OnnxRunner, resolution: int, lite: LiteRTRunner) -> list[str]:
    """How the two models differ in what a comparison needs alike: input resolution and real classes."""
    out = []
    if resolution != lite.resolution:
        out.append(f"input resolution {lite.resolution} != {resolution}")
    theirs, ours = lite.classes - lite.label_offset, onnx_side.io.num_labels
    if theirs != ours:
        out.append(f"{theirs} classes != {ours}")
    return out


def _litert_files(tflite, meta) -> list[Path]:
    items = [tflite] if isinstance(tflite, (str, Path)) else list(tflite)
    if [str(x) for x in items] == [PRETRAINED]:
        return pretrained_files(meta.arch, meta.width)
    return [Path(x) for x in items]


def compare(
    model: Path | str,
    tflite: Path | str | Sequence[Path | str],
    threads: int = 2,
    iterations: int = DEFAULT_ITERATIONS,
    warmup: int = DEFAULT_WARMUP,
    data: Path | str | None = None,
    limit: int | None = None,
    session=None,
    on_progress: ProgressFn | None = None,
    allow_mismatch: bool = False,
    runtime: str | None = None,
) -> CompareResult:
    """Classify the same images with both runtimes, then time them interleaved.

    model: an ONNX classifier (preprocessing from its metadata).
    tflite: a TFLite classifier, several files applied in order (feature extractor, classifier head),
    or "pretrained" (the shipped checkpoint for the model's architecture and width).
    threads: intra-op threads of ONNX Runtime and LiteRT's num_threads alike.
    iterations: timed runs per runtime (after `warmup` untimed runs each).
    data: image folder / CSV / image (default: the shipped val sample); limit: first N images.
    session: an already configured ONNX Runtime session for `model` (default: a CPU session that stops spinning).
    on_progress: called as (done, total, label) for the classify and time phases.
    allow_mismatch: compare even when the TFLite model's input resolution or class count differs from the ONNX one.
    runtime: what runs the ONNX model: onnxruntime (default) or openvino (OpenVINO's own runtime).
    """
    from .bench import check_runs
    from .data import Preprocessor, default_val_dir, failure_reason, find_samples, load_image
    from .runtime import check_threads

    # before either session: the same bounds as bench
    threads, iterations, warmup = check_threads(threads), check_runs(iterations, "iterations", 1), check_runs(warmup, "warmup", 0)
    load_litert()  # first: a missing LiteRT is reported before any other work
    from .engines import ONNXRUNTIME, OPENVINO, check_engine, require

    engine = check_engine(runtime) if runtime is not None else ONNXRUNTIME
    if engine not in (ONNXRUNTIME, OPENVINO):
        raise BadInput(f"runtime for the ONNX side must be onnxruntime or openvino, got {runtime!r}",
                       "the TFLite side always runs on LiteRT")
    if engine != ONNXRUNTIME:
        if session is not None:
            raise BadInput("session is onnxruntime's; leave it out with runtime openvino")
        require(engine)
        onnx_side = EngineRunner(model, threads, engine)
    else:
        onnx_side = OnnxRunner(model, threads, session)
    if onnx_side.io.task.name != "classification":
        raise BadInput(f"compare runs classifiers (top-1 agreement with LiteRT); {model} is a "
                       f"{onnx_side.io.task.name} model",
                       "time it with `mnetctl bench`; `mnetctl eval` scores it on its ground truth")
    meta = onnx_side.io.meta
    lite = LiteRTRunner(_litert_files(tflite, meta), threads)
    pre = Preprocessor.from_meta(meta)
    mismatch = _mismatch(onnx_side, pre.resolution, lite)
    if mismatch and not allow_mismatch:
        raise BadInput(f"tflite {lite.label} is not the same model as {model}: {'; '.join(mismatch)}",
                       "compare a checkpoint of the same architecture, resolution and classes (or set allow_mismatch)")
    samples = find_samples(data if data is not None else default_val_dir(), limit, names=onnx_side.io.label_names)

    lite_geom = replace(Preprocessor.from_meta(meta), resolution=lite.resolution, input_format="uint8-nhwc")
    mean = np.asarray(meta.mean, np.float32)
    std = np.asarray(meta.std, np.float32)
    if meta.color_order.upper() == "BGR":
        mean, std = mean[::-1], std[::-1]

    def lite_norm(crop: np.ndarray) -> np.ndarray:  # the crop is already R x R (and in colour order)
        return (crop.astype(np.float32) - mean) / std

    ox_side = Side(engine, str(model), ort_version() if engine == ONNXRUNTIME else onnx_side.version, onnx_side.providers)
    lt_side = Side("litert", lite.label, litert_version(), f"num_threads={threads}")
    failed: list[tuple[str, str]] = []
    x_onnx_all: list[np.ndarray] = []
    x_lite_all: list[np.ndarray] = []
    labelled = agree = 0

    # 1) accuracy pass: every image through both runtimes
    for i, sample in enumerate(samples):
        try:
            rgb = load_image(sample.path)
        except BadInput as exc:
            failed.append((str(sample.path), failure_reason(exc.message, sample.path)))
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
        if len(x_onnx_all) < TIMING_IMAGES:
            x_onnx_all.append(x_onnx)
            x_lite_all.append(x_lite)
        report(on_progress, i + 1, len(samples), "classify images")
    if not x_onnx_all:
        path, reason = failed[0]
        raise BadInput(f"none of the {len(samples)} images could be read (first: {path}: {reason})")

    # 2) warm-up, then interleaved timed runs (one run each per round, the order alternating)
    timed = interleave(
        [Runnable("onnx", onnx_side, x_onnx_all), Runnable("litert", lite, x_lite_all)],
        rounds=iterations, runs=1, warmup=warmup, on_progress=on_progress,
    )
    ox_side.latency = timed.stats["onnx"]
    lt_side.latency = timed.stats["litert"]
    return CompareResult(
        onnx=ox_side,
        litert=lt_side,
        host=cpu_summary(),
        threads=threads,
        iterations=iterations,
        warmup=warmup,
        images=len(ox_side.predictions),
        labelled=labelled,
        agree=agree,
        failed=failed,
        other_load=timed.other_load,
    )
