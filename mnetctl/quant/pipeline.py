"""`quantize_model`: a float model to a verified static int8 model.

The model is opened and validated once (`mnetctl.model.Model`); its proto, metadata and preprocessor are
handed to every step. All intermediate files live in a private temporary folder that is removed on success,
error and Ctrl-C alike; the output appears only by an atomic rename:

  float model -> onnxsim (outputs checked on real images) -> `quant_pre_process` (shape inference,
  ORT basic graph optimisation) -> calibration on real images with the model's own preprocessing
  -> `quantize_static` (QDQ or QOperator) -> metadata (settings + sha256 of the calibration set)
  -> optional before/after evaluation (top-1/top-5, agreement) -> optional float vs int8 timing on a device
  profile (`quant.speed`) -> rename onto the output path.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..data import Sample, find_samples
from ..errors import BadInput, GateFailed, short
from ..fsutil import atomic_path, check_writable, temp_dir
from ..meta import write_meta
from ..model import Model, as_model, fit_batches
from ..progress import ProgressFn, report
from ..simplify import (CHECK_SAMPLES, SIMPLIFY_TOLERANCE, copy_metadata, load_check_images, model_bytes,
                        simplify_checked, with_weights)
from .calibrate import ImageCalibrationReader, calibrate, calibration_hash, quantizable_op_types
from .grid import plan_weights
from .storage import compact_names, drop_zero_points, store_float_weights_int8
from .nodes import float_node_names, name_unnamed_nodes
from .settings import ALWAYS_FLOAT, CALIB_BATCH, FORMATS, METHODS, TYPES, QuantSettings, resolve_settings
from .speed import SpeedOptions


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
    metric: str | None = None  # a task scored otherwise (a detector: "map", COCO mAP@[.5:.95]) ...
    metric_before: float | None = None  # ... on the float model
    metric_after: float | None = None  # ... on the int8 model
    annotations: str | None = None  # the ground truth it was scored against
    seconds_eval: float = 0.0
    speed: dict[str, Any] | None = None  # float vs int8 latency (quant.speed.SpeedReport.as_dict), if measured
    seconds_speed: float = 0.0

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
    def metric_drop(self) -> float | None:
        """The task metric lost by quantization, in points (x 100; negative: int8 is better)."""
        if self.metric_before is None or self.metric_after is None:
            return None
        return round(100.0 * (self.metric_before - self.metric_after), 9)

    @property
    def drop(self) -> float | None:
        """Points lost on the headline metric: top-1, or the task's own (mAP)."""
        return self.top1_drop if self.top1_drop is not None else self.metric_drop

    @property
    def seconds(self) -> float:
        return self.seconds_quantize + self.seconds_eval + self.seconds_speed

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size_ratio"] = round(self.size_ratio, 3)
        data["top1_drop"] = None if self.top1_drop is None else round(self.top1_drop, 3)
        data["metric_drop"] = None if self.metric_drop is None else round(self.metric_drop, 3)
        data["seconds"] = round(self.seconds, 3)
        for key in ("seconds_quantize", "seconds_calibrate", "seconds_eval", "seconds_speed", "simplify_max_abs_diff"):
            data[key] = float(f"{data[key]:.4g}")
        return data


class ModelInputReader(ImageCalibrationReader):
    """Calibration batches as the model's input takes them: its dtype, and its batch size where that is fixed
    (then each batch is one inference of that size)."""

    def __init__(self, samples: Sequence[Sample], model: Model, **kwargs: Any):
        super().__init__(samples, model.preprocessor, model.input_name, batch=model.fixed_batch or CALIB_BATCH,
                         **kwargs)
        self.spec = model.input

    def get_next(self) -> dict[str, Any] | None:
        feed = super().get_next()
        if feed is None:
            return None
        ((chunk, _),) = fit_batches(feed[self.input_name], self.spec)  # one chunk: batches are at most that size
        return {self.input_name: chunk}


def default_output(model_path: Path | str) -> Path:
    path = Path(model_path)
    return path.with_name(path.stem + ".int8.onnx")


def default_calib_data(model: Model) -> Path:
    """The images a model is calibrated on when given none: a trained model's own training images
    (`mnetctl.train.data_dir`, while that folder exists), else the task's shipped calibration sample."""
    trained = model.meta.extra.get("train.data_dir")
    if trained and Path(trained).is_dir():
        return Path(trained)
    return model.task.calibration_dir()


def default_eval_data(model: Model | Path | str) -> Path | None:
    """The labelled images a before/after report uses when given none: the task's shipped sample (ImageNet),
    or None for a model with classes of its own (trained with `mnetctl train`, a custom-class checkpoint)."""
    model = as_model(model)
    if model.task.needs_annotations:  # its shipped images come with their annotations
        return model.task.default_eval_dir()
    if model.task.name == "classification" and model.meta.classes not in (1000, 1001):
        return None
    return model.task.default_eval_dir()


def quantize_model(
    model: Model | Path | str,
    output: Path | str | None = None,
    settings: QuantSettings | Mapping[str, Any] | None = None,
    *,
    calib: Path | str | None = None,
    samples: int = 100,
    eval_data: Path | str | None = None,
    eval_limit: int | None = None,
    max_drop: float | None = None,
    speed: SpeedOptions | None = None,
    on_progress: ProgressFn | None = None,
    annotations: Path | str | None = None,
    runtime: str | None = None,
) -> QuantReport:
    """Static int8 quantization of a float ONNX model (a handle or a path) with real calibration images, verified.

    settings: a QuantSettings (used as is), a mapping of QuantSettings fields that change the model's
      per-architecture defaults (None values keep the default), or None for those defaults.
    calib: folder/CSV of images (default: the shipped 100 calibration images); the first `samples`.
    eval_data: labelled images for the before/after report (None: no evaluation), the first `eval_limit`.
    max_drop: if given, fail (GateFailed, exit 1, nothing written) when top-1 (a detector: mAP x 100) drops by more
      points.
    annotations: a detector's ground truth of `eval_data` (COCO instances JSON; default for its shipped images:
      their instances.json).
    speed: if given, time the float model against the int8 file on that device profile (`quant.speed`) and
      fill `speed` of the report (None: no timing).
    runtime: the runtime the int8 model is for (`settings.RUNTIME_DEFAULTS`: onnxruntime, openvino; None: ONNX
      Runtime's defaults); the mapping `settings` changes those.
    Output (default `<stem>.int8.onnx` next to the input) appears atomically or not at all.
    """
    t0 = time.perf_counter()
    if int(samples) <= 0:
        raise BadInput(f"samples must be a positive number, got {samples}")
    if eval_limit is not None and int(eval_limit) <= 0:
        raise BadInput(f"eval_limit must be a positive number, got {eval_limit}")
    if max_drop is not None and not -100 <= float(max_drop) <= 100:  # NaN too: it would turn the gate off
        raise BadInput(f"max_drop must be a number of top-1 points in -100..100, got {max_drop}")
    if max_drop is not None and eval_data is None:
        raise BadInput("max_drop needs eval_data: a top-1 drop is measured on labelled images")
    speed = speed.checked() if speed is not None else None  # the profile and its providers, before the work
    model = as_model(model)  # parsed once, its image input and outputs checked
    if output is None and model.path is None:
        raise BadInput("output is needed for a model that has no file")
    out = Path(output) if output is not None else default_output(model.path)
    calib_src = Path(calib) if calib is not None else default_calib_data(model)
    check_writable(out, inputs=(model.path, calib_src, eval_data))  # never onto or into what is read
    name = model.name
    if model.quantized:
        raise BadInput(f"{name} is already quantized", "quantize the float model it came from")
    meta = model.meta
    if meta.precision not in ("fp32", "float32", ""):
        raise BadInput(f"{name} has precision {meta.precision!r}; quantize needs a float32 model")
    qs = settings if isinstance(settings, QuantSettings) else resolve_settings(meta.arch, meta.width, runtime,
                                                                               **dict(settings or {}))

    # the calibration images, walked once: the first few verify the simplification (and that ORT runs the model)
    calib_samples = find_samples(calib_src, int(samples), flag="calib", labels=False)
    check = load_check_images(model, calib_samples[:CHECK_SAMPLES], calib_src)
    calib_sha = calibration_hash(calib_samples)
    eval_samples = (find_samples(eval_data, eval_limit, flag="eval_data", names=model.label_names,
                                 labels=model.task.needs_labels()) if eval_data is not None else None)
    if model.task.needs_annotations and eval_data is not None and annotations is None:
        if Path(eval_data).resolve() != model.task.default_eval_dir().resolve():
            raise BadInput(f"annotations: {name} is a {model.task.name} model; the report on {eval_data} needs its "
                           "ground truth (COCO instances JSON)", "give --annotations instances.json, or --no-eval")
        annotations = model.task.default_annotations()

    # Load the extension modules before any temporary file exists: a Ctrl-C that landed while one was being
    # imported was seen to surface as a TypeError ("expected a message argument") instead of KeyboardInterrupt.
    import importlib

    for module in ("onnxsim", "onnxruntime.quantization"):
        importlib.import_module(module)

    with temp_dir("mnetctl-quant-") as tmp:  # locked while in use; a killed run's is removed by a later one
        # 1. simplify, verified on real calibration images
        proto = with_weights(model)
        simplified, diff = simplify_checked(model, proto, check, SIMPLIFY_TOLERANCE)
        sim_path = tmp / "simplified.onnx"
        sim_path.write_bytes(model_bytes(simplified))
        del simplified
        # 2. ORT's pre-processing (symbolic + ONNX shape inference, basic graph optimisation)
        pre_path, excluded, plan = _preprocess(sim_path, tmp, qs, name)
        # 3. calibrate on real images (ranges cached in the temp folder), then quantize
        op_types = list(qs.op_types) if qs.op_types else quantizable_op_types()
        label = f"calibrate {Path(name).name} ({qs.method})"
        reader = ModelInputReader(calib_samples, model, on_progress=on_progress, label=label)
        t_cal = time.perf_counter()
        cache = calibrate(pre_path, reader, qs, op_types, tmp, what=name)
        seconds_cal = time.perf_counter() - t_cal
        qmodel = _quantize(pre_path, tmp / "quantized.onnx", qs, op_types, excluded, plan, cache)
        # 4. metadata: the float model's, precision int8, settings and calibration hash
        copy_metadata(qmodel, model.proto)
        qmeta = dataclasses.replace(meta, precision="int8").with_extra(
            **quant_metadata(qs, excluded, plan.on_grid, calib_sha, reader.used))
        write_meta(qmodel, qmeta)
        data = model_bytes(qmodel)

        rep = QuantReport(
            model=name, output=str(out), arch=meta.arch, settings=qs.as_dict(), nodes_kept_float=excluded,
            weights_on_checkpoint_grid=plan.on_grid, calib=str(calib_src), calib_samples=reader.used,
            calib_failed=len(reader.failures), calib_sha256=calib_sha,
            size_before=model.size_bytes(), size_after=len(data), simplify_max_abs_diff=diff,
            seconds_quantize=0.0, seconds_calibrate=seconds_cal,
        )
        with atomic_path(out) as tmp_out:
            tmp_out.write_bytes(data)
            rep.seconds_quantize = time.perf_counter() - t0
            # 5. before/after evaluation of the file about to be published
            if eval_samples is not None:
                # the int8 model keeps the float model's input, outputs and preprocessing: same handle, new graph
                int8 = dataclasses.replace(model, path=tmp_out, proto=qmodel, meta=qmeta)
                evaluate_pair(rep, model, int8, eval_samples, on_progress, annotations)
                rep.eval_data = str(eval_data)
                if max_drop is not None and rep.drop is not None and rep.drop > float(max_drop):
                    what = "top-1" if rep.top1_drop is not None else rep.metric
                    before, after = ((rep.top1_before, rep.top1_after) if rep.top1_drop is not None
                                     else (rep.metric_before, rep.metric_after))
                    raise GateFailed(
                        f"int8 {what} {100 * after:.2f} is {rep.drop:.2f} points below float "
                        f"{100 * before:.2f} (limit {float(max_drop):g}); {out} not written",
                        "try moving-average or percentile calibration, or keep the sensitive layers in float",
                    )
            # 6. float vs int8 latency of the file about to be published, on the target device profile
            if speed is not None:
                t_speed = time.perf_counter()
                rep.speed = speed.measure(model, tmp_out, on_progress).as_dict()
                rep.seconds_speed = time.perf_counter() - t_speed
    return rep


def _preprocess(sim_path: Path, tmp: Path, qs: QuantSettings, name: str):
    """ORT's `quant_pre_process`, nameless nodes named, the nodes kept float and the weight plan."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre_path = tmp / "preprocessed.onnx"
    try:
        quant_pre_process(str(sim_path), str(pre_path))
    except Exception as exc:
        raise BadInput(f"quantization pre-processing failed on {name}: {short(exc)}") from None
    pre_model = onnx.load(str(pre_path))
    if name_unnamed_nodes(pre_model):
        pre_path.write_bytes(model_bytes(pre_model))
    excluded = float_node_names(pre_model, (*ALWAYS_FLOAT, *qs.keep_float), qs.float_max_channels)
    return pre_path, excluded, plan_weights(pre_model, excluded, qs)


def _quantize(pre_path: Path, q_path: Path, qs: QuantSettings, op_types: Sequence[str], excluded: Sequence[str],
              plan, cache: Path):
    """ORT's `quantize_static` with the calibrated ranges and the weight plan; returns the quantized proto."""
    import onnx
    from onnxruntime.quantization import quantize_static

    quantize_static(
        str(pre_path), str(q_path), None,
        quant_format=FORMATS[qs.fmt],
        op_types_to_quantize=list(op_types),
        per_channel=plan.per_channel,
        reduce_range=qs.reduce_range,
        activation_type=TYPES[qs.activations],
        weight_type=TYPES[qs.weights],
        nodes_to_exclude=list(excluded),
        calibrate_method=METHODS[qs.method],
        extra_options=qs.extra_options(plan.overrides),
        calibration_cache_path=str(cache),
    )
    qmodel = onnx.load(str(q_path))
    if qs.int8_storage:
        store_float_weights_int8(qmodel, excluded)
    if qs.fmt == "qdq" and qs.drop_zero_points:
        drop_zero_points(qmodel)
    compact_names(qmodel)
    return qmodel


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


def evaluate_pair(rep: QuantReport, float_model: Model, int8_model: Model, samples: Sequence[Sample],
                  on_progress: ProgressFn | None = None, annotations: Path | str | None = None) -> None:
    """Evaluate both models on the same images; fill the before/after fields and the top-1 agreement of `rep`
    (a task scored against annotations: its headline metric before and after)."""
    from ..evaluate import evaluate

    t = time.perf_counter()
    stem = Path(float_model.name).name
    before = evaluate(float_model, samples, on_progress=_relabel(on_progress, f"eval {stem} (float)"), annotations=annotations)
    after = evaluate(int8_model, samples, on_progress=_relabel(on_progress, f"eval {stem} (int8)"), annotations=annotations)
    rep.eval_n = before.n
    if float_model.task.name != "classification":
        key = float_model.task.headline
        rep.metric, rep.metric_before, rep.metric_after = key, float(before.metrics[key]), float(after.metrics[key])
        rep.annotations = None if annotations is None else str(annotations)
        rep.seconds_eval = time.perf_counter() - t
        return
    rep.top1_before, rep.top5_before = before.top1, before.top5
    rep.top1_after, rep.top5_after = after.top1, after.top5
    pairs = dict(zip(before.paths, before.predictions))
    same = [pairs[p] == q for p, q in zip(after.paths, after.predictions) if p in pairs]
    rep.agreement = sum(same) / len(same) if same else None
    rep.seconds_eval = time.perf_counter() - t


def _relabel(on_progress: ProgressFn | None, label: str) -> ProgressFn | None:
    if on_progress is None:
        return None
    return lambda done, total, _label: report(on_progress, done, total, label)
