"""Simplification and static int8 post-training quantization, each verified against the float model.

The one module that imports `onnxruntime.quantization` and `onnxsim`.

Pipeline of `quantize_model` (all intermediate files live in a private temporary folder that is
removed on success, error and Ctrl-C alike; the output appears only by an atomic rename):

  float model -> onnxsim (outputs checked on real images) -> `quant_pre_process` (shape inference,
  ORT basic graph optimisation) -> calibration on real images with the model's own preprocessing
  -> `quantize_static` (QDQ or QOperator) -> metadata (settings + sha256 of the calibration set)
  -> optional before/after evaluation (top-1/top-5, agreement) -> rename onto the output path.

Default settings depend on the architecture (`ARCH_DEFAULTS`, data only); every one of them can be
overridden per call. docs/quantization.md explains each choice and the figures behind it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from .errors import BadInput, GateFailed
from .fsutil import atomic_path, check_writable
from .meta import ModelMeta, read_meta, write_meta
from .modelio import check_model_path, load_onnx

Method = Literal["minmax", "entropy", "percentile"]
GridMode = Literal["channel", "exact", "off"]
Format = Literal["qdq", "qoperator"]
ActType = Literal["uint8", "int8"]

METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
FORMATS: dict[str, QuantFormat] = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
TYPES: dict[str, QuantType] = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}

# Node types whose presence means a model is already quantized.
_QUANT_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
    "ConvInteger", "MatMulInteger", "QGemm", "QLinearGlobalAveragePool", "DynamicQuantizeLinear",
})

SIMPLIFY_TOLERANCE = 1e-4  # max |diff| of logits allowed between a model and its simplified form
CHECK_SAMPLES = 8  # real images used to verify a simplification
CALIB_BATCH = 10  # images per calibration inference


# --------------------------------------------------------------------------------------------
# Settings (data)


@dataclass(frozen=True)
class QuantSettings:
    """Everything that decides how a float model becomes int8 (recorded in the output's metadata).

    per_channel: one scale per output channel for weights that lie on no checkpoint grid.
    weights: the weight type ("int8"; "uint8" for targets that want it).
    weight_grid: weights imported from an 8-bit checkpoint lie on its per-tensor grid (w = k * step):
      "channel": symmetric per-channel scales (zero point 0) that are multiples of the step: every
        channel whose levels fit in +-127 steps keeps its exact values (ORT's fast kernels);
      "exact": the step itself per tensor, with whatever zero point fits all levels: bit-exact,
        but a non-zero weight zero point sends ORT's CPU convolutions to slower kernels;
      "off": ignore the grid (ORT picks scales from the weights' range).
    keep_float: glob patterns over node names (e.g. "blocks.*.se.*") whose nodes stay in float.
    op_types: the operator types to quantize (None: all that ONNX Runtime can quantize).
    activation_symmetric: symmetric activation ranges (zero point 128 for uint8, 0 for int8).
    weight_symmetric: symmetric weight ranges (ORT's default for int8 weights).
    moving_average: MinMax ranges are the mean over calibration batches (CALIB_BATCH images each) of
      each batch's min/max, not the extremes over all images (ORT's `CalibMovingAverage`).
    percentile: the percentile kept by the "percentile" method.
    histogram_bins / entropy_bins: histogram resolution of "entropy"/"percentile", and the number of
      quantized bins the KL search of "entropy" compares against. ORT's own entropy defaults (128/128)
      leave the search a single candidate, the full range, so "entropy" would silently equal minmax;
      the search costs time in proportion to histogram_bins (ORT runs it in Python).
    reduce_range: 7-bit weights (for CPUs without VNNI that saturate int16 accumulation).
    """

    method: Method = "minmax"
    per_channel: bool = True
    fmt: Format = "qdq"
    activations: ActType = "uint8"
    weights: ActType = "int8"
    weight_grid: GridMode = "channel"
    keep_float: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    moving_average: bool = False
    percentile: float = 99.999
    histogram_bins: int | None = None  # None: 512 for entropy, 2048 for percentile
    entropy_bins: int = 128
    reduce_range: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInput(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.fmt not in FORMATS:
            raise BadInput(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.activations not in TYPES:
            raise BadInput(f"--activations must be uint8 or int8, got {self.activations!r}")
        if self.weights not in TYPES:
            raise BadInput(f"weights type must be uint8 or int8, got {self.weights!r}")
        if self.weight_grid not in ("channel", "exact", "off"):
            raise BadInput(f"--weight-grid must be channel, exact or off, got {self.weight_grid!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise BadInput(f"percentile must be in (50, 100], got {self.percentile}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["keep_float"] = list(self.keep_float)
        data["op_types"] = None if self.op_types is None else list(self.op_types)
        return data

    def extra_options(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The typed settings spelled as onnxruntime's `extra_options` (its keys live only here)."""
        opts: dict[str, Any] = {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": self.weight_symmetric,
        }
        if overrides:
            opts["TensorQuantOverrides"] = overrides
        return opts

    def calibrator_options(self) -> dict[str, Any]:
        """Options of ORT's `create_calibrator` for this method."""
        if self.method == "minmax":
            return {"symmetric": self.activation_symmetric, "moving_average": self.moving_average}
        bins = self.histogram_bins or (512 if self.method == "entropy" else 2048)
        opts: dict[str, Any] = {"symmetric": self.activation_symmetric, "num_bins": int(bins)}
        if self.method == "entropy":
            opts["num_quantized_bins"] = int(self.entropy_bins)
        else:
            opts["percentile"] = float(self.percentile)
        return opts


GENERIC = QuantSettings()

# Per-architecture defaults, chosen from measurements on the shipped 200-image val sample and
# `scripts/bench_int8.py` (docs/quantization.md has the tables):
#  * every shipped checkpoint comes from an 8-bit TFLite model, so its weights lie on a per-tensor
#    grid. ORT's own per-tensor scales ignore it and drop V2 from 85.5% to 10% top-1 and V1 0.75 from
#    75.5% to 15.5% (depthwise channels that hold 1-3 levels of the old grid fall between the levels
#    of the new one), so the grid is always kept;
#  * V2, V3: `weight_grid="channel"` (zero-point-0 per-channel multiples of the grid step): the same
#    accuracy as the exact grid and ORT's fast symmetric kernels (V2: 0.3-0.7x fp32 time vs 0.6-1.0x);
#  * V1: `weight_grid="exact"`: the per-channel scales, bias scales and zero points of "channel" cost
#    13 bytes per output channel, 10% of V1 0.25's int8 file (3.3x smaller than fp32 instead of
#    3.6x), and at 0.5 "channel" loses one point of top-1 where "exact" loses none. Faster V1:
#    `--weight-grid channel`;
#  * weights on no grid (trained float models, random init) get per-channel scales: per-tensor
#    scales cannot serve depthwise layers whose channel ranges differ by 100x;
#  * V3 (hard-swish, squeeze-excite): MinMax averaged over batches; plain MinMax keeps the extreme
#    activations of 100 images and flips 5 points more top-1 decisions against the float model.
#    The stem (3 input channels, hard-swish) stays float: int8 gains nothing there (V3-Small int8
#    runs at 1.09x of fp32 time instead of 1.19x, agreement 90.5% instead of 89.0%). Keeping the
#    squeeze-excite branches or the hard-swish nodes in float was measured too: slower, no better.
ARCH_DEFAULTS: dict[str, QuantSettings] = {
    "v1": QuantSettings(method="minmax", per_channel=True, weight_grid="exact"),
    "v2": QuantSettings(method="minmax", per_channel=True, weight_grid="channel"),
    "v3-small": QuantSettings(method="minmax", per_channel=True, weight_grid="channel", moving_average=True,
                              keep_float=("stem.*",)),
    "v3-large": QuantSettings(method="minmax", per_channel=True, weight_grid="channel", moving_average=True,
                              keep_float=("stem.*",)),
}

# Nodes that are never quantized: the in-graph input normalisation of uint8-input models.
ALWAYS_FLOAT: tuple[str, ...] = ("preprocess.*",)


def default_settings(arch: str) -> QuantSettings:
    """The per-architecture default settings (generic ones for unknown/foreign models)."""
    return ARCH_DEFAULTS.get(arch, GENERIC)


def resolve_settings(
    arch: str,
    method: str | None = None,
    per_channel: bool | None = None,
    fmt: str | None = None,
    activations: str | None = None,
    keep_float: Sequence[str] | None = None,
    **more: Any,
) -> QuantSettings:
    """Per-architecture defaults with the given overrides (None keeps the default)."""
    base = default_settings(arch)
    changes: dict[str, Any] = {k: v for k, v in more.items() if v is not None}
    for key, value in (("method", method), ("per_channel", per_channel), ("fmt", fmt), ("activations", activations)):
        if value is not None:
            changes[key] = value
    if keep_float is not None:
        changes["keep_float"] = tuple(keep_float)
    unknown = set(changes) - set(QuantSettings.__dataclass_fields__)
    if unknown:
        raise BadInput(f"unknown quantization setting(s): {', '.join(sorted(unknown))}")
    if isinstance(changes.get("op_types"), (list, tuple)):
        changes["op_types"] = tuple(changes["op_types"])
    return replace(base, **changes)


# --------------------------------------------------------------------------------------------
# Calibration data


class _DefaultVal:
    def __repr__(self) -> str:
        return "DEFAULT_VAL"


DEFAULT_VAL: Any = _DefaultVal()  # "evaluate on the shipped val sample"; pass None to skip evaluation

ProgressFn = Callable[[int, int], None]


def calibration_hash(samples: Iterable[Any]) -> str:
    """sha256 over the calibration set: for each image in order, its file name and its bytes."""
    digest = hashlib.sha256()
    for sample in samples:
        path = Path(sample.path)
        digest.update(path.name.encode("utf-8") + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as exc:
            raise BadInput(f"cannot read calibration image {path}: {exc.strerror or exc}") from exc
        digest.update(b"\0")
    return digest.hexdigest()


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds real images, preprocessed as the model's metadata says, to the ORT calibrator."""

    def __init__(self, samples: Sequence[Any], meta: ModelMeta, input_name: str,
                 batch: int = CALIB_BATCH, progress: ProgressFn | None = None):
        from .data import Preprocessor

        self.samples = list(samples)
        self.pre = Preprocessor.from_meta(meta)
        self.input_name = input_name
        self.batch = int(batch)
        self.progress = progress
        self.failures: list[tuple[str, str]] = []
        self.used = 0
        self._iter: Any = None
        self.rewind()

    def __len__(self) -> int:
        return len(self.samples)

    def rewind(self) -> None:
        from .data import iter_batches

        self._iter = iter_batches(self.samples, self.pre, self.batch)
        self.done = 0
        self.used = 0
        self.failures = []

    def get_next(self) -> dict[str, np.ndarray] | None:
        for b in self._iter:
            self.failures.extend((str(s.path), reason) for s, reason in b.failures)
            self.done += len(b) + len(b.failures)
            if self.progress:
                self.progress(self.done, len(self.samples))
            if len(b):
                self.used += len(b)
                return {self.input_name: np.ascontiguousarray(b.array)}
        return None


# --------------------------------------------------------------------------------------------
# Helpers


def _input_name(model: onnx.ModelProto) -> str:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise BadInput(f"quantize needs a model with one image input, this one has {len(inputs)}")
    return inputs[0]


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in _QUANT_OPS for n in model.graph.node)


def model_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def _ort_error(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _run_logits(model: bytes | Path, batches: Sequence[np.ndarray], input_name: str, what: str) -> np.ndarray:
    from .runtime import cpu_session

    try:
        session = cpu_session(model if isinstance(model, bytes) else str(model))
        outs = [np.asarray(session.run(None, {input_name: b})[0], np.float32) for b in batches]
    except Exception as exc:  # ORT's own exception types: a model that loads but cannot run
        raise BadInput(f"ONNX Runtime cannot run {what}: {_ort_error(exc)}") from None
    return np.concatenate(outs)


def _check_image_classifier(model: onnx.ModelProto, path: Path) -> str:
    """The model's single image input (4-D, matching its metadata), or BadInput naming the file."""
    from .evaluate import inspect_io

    return inspect_io(model, path).input_name


def _check_batches(meta: ModelMeta, images: Path | str | None, samples: int) -> tuple[list[np.ndarray], int]:
    """A few real images preprocessed for `meta` (used to verify a simplification)."""
    from .data import Preprocessor, default_calib_dir, find_samples, iter_batches

    found = find_samples(images if images is not None else default_calib_dir(), samples)
    pre = Preprocessor.from_meta(meta)
    arrays = [b.array.copy() for b in iter_batches(found, pre, len(found)) if len(b)]
    n = sum(a.shape[0] for a in arrays)
    if n == 0:
        raise BadInput(f"none of the check images in {images} could be read")
    return arrays, n


def _restore_metadata(model: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Metadata of `model` := that of `source` (tools on the way add their own keys)."""
    del model.metadata_props[:]
    for p in source.metadata_props:
        entry = model.metadata_props.add()
        entry.key, entry.value = p.key, p.value
    model.producer_name = source.producer_name or model.producer_name
    model.producer_version = source.producer_version or model.producer_version
    model.doc_string = source.doc_string


def _progress_bar(description: str, total: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task(description, total=total)
    return bar, (lambda done, _total: bar.update(task, completed=done))


def quantizable_op_types() -> list[str]:
    """Every operator type ONNX Runtime's static quantizer handles (what it uses when given none)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


class _OneFeed(CalibrationDataReader):
    def __init__(self, feed: dict[str, np.ndarray]):
        self.feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self.feed = self.feed, None
        return feed


def calibrate(model_path: Path, reader: ImageCalibrationReader, qs: QuantSettings, op_types: Sequence[str],
              workdir: Path, progress: bool = True, label: str = "") -> Path:
    """Run ORT's calibrator for `qs.method` over the reader and save the ranges it finds.

    The histogram methods get the batches one pass at a time, so that memory stays at one batch of
    activations (ORT's histogram calibrators otherwise keep every intermediate output of every image
    until the end). Returns the path of the range cache that `quantize_static(calibration_cache_path=...)`
    reads.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    try:
        calibrator = create_calibrator(
            Path(model_path), list(op_types), augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=METHODS[qs.method], extra_options=qs.calibrator_options(),
        )
    except Exception as exc:
        raise BadInput(f"ONNX Runtime cannot calibrate {label or model_path}: {_ort_error(exc)}") from None
    bar = None
    if progress:
        bar, reader.progress = _progress_bar(f"calibrate {label} ({qs.method})".replace(" ()", ""), len(reader))
    try:
        if bar is not None:
            bar.start()
        with _quiet_stdout():
            try:
                if qs.method == "minmax":
                    # MinMax keeps only per-batch min/max (small): one pass, so that a moving average
                    # is the mean over batches (ORT merges separate passes with a 0.01 EMA instead)
                    calibrator.collect_data(reader)
                else:
                    while (feed := reader.get_next()) is not None:
                        calibrator.collect_data(_OneFeed(feed))
                if reader.used == 0:
                    raise BadInput(f"none of the {len(reader)} calibration images could be read",
                                   f"first failure: {reader.failures[0][0]}: {reader.failures[0][1]}" if reader.failures else None)
                ranges = calibrator.compute_data()
            except BadInput:
                raise
            except Exception as exc:  # ORT failing to run the model on the images
                if reader.used == 0 and reader.failures and isinstance(exc, ValueError):
                    raise BadInput(f"none of the {len(reader)} calibration images could be read",
                                   f"first failure: {reader.failures[0][0]}: {reader.failures[0][1]}") from None
                raise BadInput(f"ONNX Runtime cannot calibrate {label or model_path}: {_ort_error(exc)}") from None
    finally:
        if bar is not None:
            bar.stop()
        reader.progress = None
    cache = workdir / "calibration.json"
    save_tensors_data(ranges, cache)
    return cache


@contextlib.contextmanager
def _quiet_stdout():
    """ORT's histogram calibrators print progress lines to stdout; keep stdout for our report/JSON."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# --------------------------------------------------------------------------------------------
# simplify


@dataclass
class SimplifyReport:
    model: str
    output: str | None
    nodes_before: int
    nodes_after: int
    size_before: int
    size_after: int
    max_abs_diff: float
    check_images: int
    tolerance: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _simplify_proto(model: onnx.ModelProto, path: Path | str, meta: ModelMeta, check_images: Path | str | None,
                    samples: int, tolerance: float) -> tuple[onnx.ModelProto, float, int]:
    """onnxsim + numeric check on real images -> (simplified model, max |diff|, images checked)."""
    import onnxsim

    try:
        simplified, _ = onnxsim.simplify(model, check_n=0)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"onnxsim cannot simplify {path}: {first}") from None
    _restore_metadata(simplified, model)
    name = _input_name(model)
    batches, n = _check_batches(meta, check_images, samples)
    ref = _run_logits(model_bytes(model), batches, name, str(path))
    got = _run_logits(model_bytes(simplified), batches, name, f"the simplified {path}")
    if ref.shape != got.shape:
        raise GateFailed(f"simplifying {path} changed the output shape {ref.shape} -> {got.shape}; nothing written")
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    if not np.isfinite(diff) or diff > tolerance:
        raise GateFailed(
            f"simplifying {path} changes the logits by up to {diff:.3g} (> {tolerance:g}) on {n} real images; nothing written",
            "keep the unsimplified model",
        )
    return simplified, diff, n


def simplify_model(
    model_path: Path | str,
    output: Path | str | None = None,
    check_images: Path | str | None = None,
    samples: int = CHECK_SAMPLES,
    tolerance: float = SIMPLIFY_TOLERANCE,
) -> SimplifyReport:
    """onnxsim alone, verified: the logits on `samples` real images may differ by at most `tolerance`.

    check_images: a folder/CSV/image (default: the shipped calibration images). On failure nothing is
    written (GateFailed, exit 1). Default output: `<stem>.sim.onnx` next to the input.
    """
    start = time.perf_counter()
    path = check_model_path(model_path)
    out = Path(output) if output is not None else path.with_name(path.stem + ".sim.onnx")
    check_writable(out, inputs=(path,))
    if int(samples) <= 0:
        raise BadInput(f"--samples must be a positive number, got {samples}")
    model = load_onnx(path)
    _check_image_classifier(model, path)
    meta = read_meta(model)
    simplified, diff, n = _simplify_proto(model, path, meta, check_images, int(samples), float(tolerance))
    data = model_bytes(simplified)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return SimplifyReport(str(path), str(out), len(model.graph.node), len(simplified.graph.node),
                          path.stat().st_size, len(data), diff, n, float(tolerance), time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# quantize


@dataclass
class QuantReport:
    model: str
    output: str
    arch: str
    settings: dict[str, Any]
    nodes_kept_float: list[str]
    weights_on_checkpoint_grid: int  # weight tensors quantized onto the grid they already lay on
    calib: str
    calib_samples: int
    calib_failed: int
    calib_sha256: str
    size_before: int
    size_after: int
    simplify_max_abs_diff: float
    seconds_quantize: float  # simplify + pre-process + calibrate + quantize + write
    seconds_calibrate: float
    eval_data: str | None = None
    eval_n: int = 0
    top1_before: float | None = None
    top5_before: float | None = None
    top1_after: float | None = None
    top5_after: float | None = None
    agreement: float | None = None  # share of images with the same top-1 class in float and int8
    seconds_eval: float = 0.0

    @property
    def size_ratio(self) -> float:
        return self.size_before / self.size_after if self.size_after else 0.0

    @property
    def top1_drop(self) -> float | None:
        """Top-1 lost by quantization, in percentage points (negative: int8 is better)."""
        if self.top1_before is None or self.top1_after is None:
            return None
        return round(100.0 * (self.top1_before - self.top1_after), 9)  # 0.70 - 0.69 is 1 point, not 1.0000000000000009

    @property
    def seconds(self) -> float:
        return self.seconds_quantize + self.seconds_eval

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size_ratio"] = round(self.size_ratio, 3)
        data["top1_drop"] = None if self.top1_drop is None else round(self.top1_drop, 3)
        data["seconds"] = round(self.seconds, 3)
        for key in ("seconds_quantize", "seconds_calibrate", "seconds_eval", "simplify_max_abs_diff"):
            data[key] = float(f"{data[key]:.4g}")
        return data


# Weights that already lie on an 8-bit grid


def find_grid(w: np.ndarray, levels: int = 256) -> tuple[float, int, int] | None:
    """(scale, kmin, kmax) if every value of `w` is k * scale with integer k spanning at most `levels` levels.

    Weights imported from an 8-bit checkpoint (TFLite uint8: w = (q - zero_point) * scale) pass;
    trained float weights (thousands of distinct values) do not. The step is the smallest gap between
    distinct values (or an integer fraction of it), refined by least squares over all values.
    """
    w = np.asarray(w, np.float64).ravel()
    values = np.unique(w)
    if len(values) < 2 or len(values) > levels:
        return None
    step = float(np.diff(values).min())
    for div in (1, 2, 3, 4):
        scale = step / div
        k = np.round(w / scale)
        if k.max() - k.min() > levels - 1:
            return None
        scale = float(np.dot(w, k) / np.dot(k, k))  # least-squares refinement of the step
        if np.abs(w / scale - k).max() < 1e-2:
            return scale, int(k.min()), int(k.max())
    return None


@dataclass
class WeightPlan:
    """How each Conv/Gemm weight is quantized: ORT `TensorQuantOverrides` plus what ORT decides alone."""

    overrides: dict[str, list[dict[str, Any]]]
    on_grid: int  # weights quantized onto their checkpoint grid
    off_grid: int  # quantized weights on no grid
    per_channel: bool  # the per_channel flag quantize_static must get


def plan_weights(model: onnx.ModelProto, excluded: Sequence[str], qs: QuantSettings) -> WeightPlan:
    """Scales and zero points for the weights that lie on a checkpoint grid (see `QuantSettings.weight_grid`)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    qtype = TYPES[qs.weights]
    mode = qs.weight_grid
    if mode == "channel" and qs.weights != "int8":
        mode = "exact"  # symmetric per-channel grids are an int8 layout
    levels = 128 if qs.reduce_range else 256
    lo, hi = (-(levels // 2), levels // 2 - 1) if qs.weights == "int8" else (0, levels - 1)
    mid = 0 if qs.weights == "int8" else levels // 2
    out: dict[str, list[dict[str, Any]]] = {}
    axes: dict[str, int] = {}
    off_grid: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.name in excluded or len(node.input) < 2:
            continue
        init = inits.get(node.input[1])
        if init is None:
            continue
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 1 if node.op_type == "Gemm" and not trans_b else 0
        w = numpy_helper.to_array(init)
        grid = find_grid(w, levels) if mode != "off" else None
        if grid is None:
            off_grid[init.name] = w
            axes[init.name] = axis
            continue
        step, kmin, kmax = grid
        if mode == "channel":
            k = np.abs(np.moveaxis(np.round(w / step), axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
            mult = np.maximum(1.0, np.ceil(k / hi))
            out[init.name] = [{"axis": axis, "scale": np.array(step * m, np.float32), "zero_point": np.array(0, np.int8),
                               "quant_type": qtype} for m in mult]
            continue
        zp_lo, zp_hi = lo - kmin, hi - kmax
        if zp_lo > zp_hi:
            off_grid[init.name] = w
            axes[init.name] = axis
            continue
        zp = min(max(mid, zp_lo), zp_hi)
        out[init.name] = [{"scale": np.array(step, np.float32), "zero_point": np.array(zp, np.int8 if qs.weights == "int8" else np.uint8),
                           "quant_type": qtype}]
        axes[init.name] = axis
    on_grid = len(out)
    if mode == "channel" and out:
        per_channel = True
        if not qs.per_channel:  # off-grid weights keep one symmetric scale, spelled as a per-channel override
            for name, w in off_grid.items():
                scale = float(np.abs(w).max()) / hi or 1.0
                out[name] = [{"axis": axes[name], "scale": np.array(scale, np.float32), "zero_point": np.array(0, np.int8),
                              "quant_type": qtype}]
    else:
        per_channel = qs.per_channel and bool(off_grid)  # on-grid weights are per-tensor by nature
        if per_channel and qs.fmt == "qoperator":
            # QOperator's per-channel mode wants a channel axis on every override: one grid serves all channels
            for name in list(out):
                out[name][0]["axis"] = axes[name]
    return WeightPlan(out, on_grid, len(off_grid), per_channel)


def default_output(model_path: Path | str) -> Path:
    path = Path(model_path)
    return path.with_name(path.stem + ".int8.onnx")


def name_unnamed_nodes(model: onnx.ModelProto) -> int:
    """Give nameless nodes a name so that node patterns can select them.

    ORT's graph optimiser inlines HardSwish as HardSigmoid + Mul without node names: the Mul keeps the
    HardSwish's output (and so gets its name, e.g. `blocks.3.expand.act`); a node whose output is an
    internal `_inlfunc_*` tensor is named after its consumer (`blocks.3.expand.act.hardsigmoid`).
    """
    taken = {n.name for n in model.graph.node if n.name}
    consumers: dict[str, onnx.NodeProto] = {}
    for node in model.graph.node:
        for inp in node.input:
            consumers.setdefault(inp, node)

    def unique(base: str) -> str:
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}.{k}"
        taken.add(name)
        return name

    pending = []
    renamed = 0
    for node in model.graph.node:
        if node.name or not node.output:
            continue
        renamed += 1
        if node.output[0].startswith("_"):
            pending.append(node)
        else:
            node.name = unique(node.output[0] if node.output[0] not in taken else f"{node.output[0]}.{node.op_type.lower()}")
    for node in pending:  # internal tensors: name after the consumer, which is named by now
        consumer = consumers.get(node.output[0])
        base = f"{consumer.name}.{node.op_type.lower()}" if consumer is not None and consumer.name else node.output[0]
        node.name = unique(base)
    return renamed


def _match_nodes(model: onnx.ModelProto, patterns: Sequence[str]) -> list[str]:
    names = [n.name for n in model.graph.node if n.name]
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def quantize_model(
    model_path: Path | str,
    output: Path | str | None = None,
    calib: Path | str | None = None,
    method: Method | None = None,
    per_channel: bool | None = None,
    fmt: Format | None = None,
    activations: ActType | None = None,
    samples: int = 100,
    eval_data: Any = DEFAULT_VAL,
    progress: bool = True,
    *,
    keep_float: Sequence[str] | None = None,
    eval_limit: int | None = None,
    max_drop: float | None = None,
    settings: QuantSettings | None = None,
    **overrides: Any,
) -> QuantReport:
    """Static int8 quantization of a float ONNX model with real calibration images, verified.

    method/per_channel/fmt/activations/keep_float (and any other `QuantSettings` field as a keyword)
    override the per-architecture defaults when not None; `settings` replaces them entirely.
    calib: folder/CSV of images (default: the shipped 100 calibration images); the first `samples`.
    eval_data: labelled images for the before/after report (DEFAULT_VAL = shipped val sample, None = skip).
    max_drop: if given, fail (GateFailed, exit 1, nothing written) when top-1 drops by more points.
    Output (default `<stem>.int8.onnx` next to the input) appears atomically or not at all.
    """
    from .data import default_calib_dir, default_val_dir, find_samples

    t0 = time.perf_counter()
    path = check_model_path(model_path)
    out = Path(output) if output is not None else default_output(path)
    check_writable(out, inputs=(path,))
    if int(samples) <= 0:
        raise BadInput(f"--samples must be a positive number, got {samples}")
    if max_drop is not None and eval_data is None:
        raise BadInput("a top-1 drop limit needs evaluation data", "drop --no-eval or the limit")
    model = load_onnx(path)
    if is_quantized(model):
        raise BadInput(f"{path} is already quantized", "quantize the float model it came from")
    meta = read_meta(model)
    if meta.precision not in ("fp32", "float32", ""):
        raise BadInput(f"{path} has precision {meta.precision!r}; quantize needs a float32 model")
    qs = settings if settings is not None else resolve_settings(
        meta.arch, method, per_channel, fmt, activations, keep_float, **overrides)
    input_name = _check_image_classifier(model, path)

    calib_src = Path(calib) if calib is not None else default_calib_dir()
    calib_samples = find_samples(calib_src, int(samples))
    calib_sha = calibration_hash(calib_samples)
    if eval_data is DEFAULT_VAL:
        eval_data = default_val_dir()

    with tempfile.TemporaryDirectory(prefix="mnetctl-quant-") as tmpdir:
        tmp = Path(tmpdir)
        # 1. simplify, verified on real calibration images
        simplified, diff, _ = _simplify_proto(model, path, meta, calib_src, min(CHECK_SAMPLES, len(calib_samples)),
                                              SIMPLIFY_TOLERANCE)
        sim_path = tmp / "simplified.onnx"
        sim_path.write_bytes(model_bytes(simplified))
        del simplified
        # 2. ORT's pre-processing (symbolic + ONNX shape inference, basic graph optimisation)
        pre_path = tmp / "preprocessed.onnx"
        try:
            quant_pre_process(str(sim_path), str(pre_path))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BadInput(f"quantization pre-processing failed on {path}: {first}") from None
        pre_model = onnx.load(str(pre_path))
        if name_unnamed_nodes(pre_model):
            pre_path.write_bytes(model_bytes(pre_model))
        excluded = _match_nodes(pre_model, (*ALWAYS_FLOAT, *qs.keep_float))
        plan = plan_weights(pre_model, excluded, qs)
        del pre_model
        # 3. calibrate on real images (ranges cached in the temp folder), then quantize
        op_types = list(qs.op_types) if qs.op_types else quantizable_op_types()
        reader = ImageCalibrationReader(calib_samples, meta, input_name)
        t_cal = time.perf_counter()
        cache = calibrate(pre_path, reader, qs, op_types, tmp, progress=progress, label=path.name)
        seconds_cal = time.perf_counter() - t_cal
        q_path = tmp / "quantized.onnx"
        quantize_static(
            str(pre_path), str(q_path), None,
            quant_format=FORMATS[qs.fmt],
            op_types_to_quantize=op_types,
            per_channel=plan.per_channel,
            reduce_range=qs.reduce_range,
            activation_type=TYPES[qs.activations],
            weight_type=TYPES[qs.weights],
            nodes_to_exclude=excluded,
            calibrate_method=METHODS[qs.method],
            extra_options=qs.extra_options(plan.overrides),
            calibration_cache_path=str(cache),
        )
        # 4. metadata: the float model's, precision int8, settings and calibration hash
        qmodel = onnx.load(str(q_path))
        _restore_metadata(qmodel, model)
        write_meta(qmodel, replace(meta, precision="int8").with_extra(
            **quant_metadata(qs, excluded, plan.on_grid, calib_sha, reader.used)))
        data = model_bytes(qmodel)
        del qmodel

        rep = QuantReport(
            model=str(path), output=str(out), arch=meta.arch, settings=qs.as_dict(), nodes_kept_float=excluded,
            weights_on_checkpoint_grid=plan.on_grid, calib=str(calib_src), calib_samples=reader.used,
            calib_failed=len(reader.failures), calib_sha256=calib_sha,
            size_before=path.stat().st_size, size_after=len(data), simplify_max_abs_diff=diff,
            seconds_quantize=0.0, seconds_calibrate=seconds_cal,
        )
        with atomic_path(out) as tmp_out:
            tmp_out.write_bytes(data)
            rep.seconds_quantize = time.perf_counter() - t0
            # 5. before/after evaluation of the file about to be published
            if eval_data is not None:
                _evaluate_pair(rep, path, tmp_out, eval_data, eval_limit, progress)
                if max_drop is not None and rep.top1_drop is not None and rep.top1_drop > float(max_drop):
                    raise GateFailed(
                        f"int8 top-1 {100 * rep.top1_after:.2f}% is {rep.top1_drop:.2f} points below float "
                        f"{100 * rep.top1_before:.2f}% (limit {float(max_drop):g}); {out} not written",
                        "try --moving-average, --method percentile, or --keep-float on the sensitive layers",
                    )
    return rep


def quant_metadata(qs: QuantSettings, excluded: Sequence[str], grids: int, calib_sha: str, calib_n: int) -> dict[str, str]:
    """The `mnetctl.quant.*` metadata keys of a quantized model."""
    import onnxruntime

    return {
        "quant.method": qs.method,
        "quant.per_channel": str(qs.per_channel).lower(),
        "quant.format": qs.fmt,
        "quant.activations": qs.activations,
        "quant.weights": qs.weights,
        "quant.settings": json.dumps(qs.as_dict(), sort_keys=True),
        "quant.nodes_kept_float": json.dumps(list(excluded)),
        "quant.weights_on_checkpoint_grid": str(grids),
        "quant.calib_sha256": calib_sha,
        "quant.calib_samples": str(calib_n),
        "quant.onnxruntime": onnxruntime.__version__,
    }


def _evaluate_pair(rep: QuantReport, float_path: Path, int8_path: Path, data: Any, limit: int | None,
                   progress: bool) -> None:
    from .evaluate import evaluate

    t = time.perf_counter()
    before = evaluate(float_path, data, limit=limit)
    after = evaluate(int8_path, data, limit=limit)
    rep.eval_data = str(data)
    rep.eval_n = before.n
    rep.top1_before, rep.top5_before = before.top1, before.top5
    rep.top1_after, rep.top5_after = after.top1, after.top5
    pairs = dict(zip(before.paths, before.predictions))
    same = [pairs[p] == q for p, q in zip(after.paths, after.predictions) if p in pairs]
    rep.agreement = sum(same) / len(same) if same else None
    rep.seconds_eval = time.perf_counter() - t
