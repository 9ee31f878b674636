"""Evaluate a model on labelled images with its task's metric, and predict on single images.

The model handle (`mnetctl.model.Model`) says how to preprocess and which task decodes the outputs; for a
classifier the metric is top-1/top-5 (see `mnetctl.tasks.classification`). Images that cannot be decoded
are counted in `failed` with the reason; they are never dropped silently and never stop the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .data import Preprocessor, Sample, find_samples, iter_batches, load_image
from .errors import BadInput
from .model import Model, as_model, run_batched
from .modelio import cannot_run
from .progress import ProgressFn, report
from .tasks.classification import Prediction


def _available_memory() -> int:
    from .hostinfo import available_memory

    return available_memory()


def check_batch_memory(batch: int, pre: Preprocessor) -> None:
    """Refuse a batch whose estimated inference memory exceeds what the machine has free (memguard's estimate)."""
    from . import memguard

    memguard.check_batch_memory(batch, memguard.image_bytes(3 * pre.resolution**2, pre.sample_bytes), name="--batch",
                                detail=f" at resolution {pre.resolution}", available=_available_memory())


class _Runner:
    """Runs batches of any size through a session, or an engine's `infer` (the input dtype and a fixed batch
    dimension honoured)."""

    def __init__(self, session, model: Model, infer=None):
        self.session = session
        self.io = model
        self.path = model.name
        self.infer = infer

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return run_batched(self._run, array, self.io.input)

    def _run(self, array: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        if self.infer is not None:
            return self.infer(array)
        names = getattr(self.io.head, "output_names", None)  # a head with several outputs (a detector)
        try:
            outs = self.session.run(list(names or [self.io.output_name]), {self.io.input_name: array})
        except Exception as exc:  # ORT loaded the graph but cannot run it (e.g. a corrupt attribute)
            raise cannot_run(self.path, exc) from None
        if names:
            return tuple(np.asarray(o, dtype=np.float32) for o in outs)
        out = np.asarray(outs[0], dtype=np.float32)
        return out.reshape(out.shape[0], -1)


# --------------------------------------------------------------------------------------------
# eval


@dataclass
class EvalResult:
    model: str
    data: str
    task: str
    metrics: dict[str, Any]  # the task metric's result (classification: top1, top5, n, correct1, correct5, nonfinite)
    failed: list[tuple[str, str]]  # (path, reason) of images that could not be read
    seconds: float  # decode + preprocess + inference, excluding model loading
    batch: int
    threads: int | None
    label_offset: int
    predictions: list[int] = field(default_factory=list, repr=False)  # classifier: top-1 class index per sample
    labels: list[int] = field(default_factory=list, repr=False)
    paths: list[str] = field(default_factory=list, repr=False)

    @property
    def n(self) -> int:
        return int(self.metrics.get("n", 0))

    @property
    def top1(self) -> float:
        return float(self.metrics.get("top1", 0.0))

    @property
    def top5(self) -> float:
        return float(self.metrics.get("top5", 0.0))

    @property
    def correct1(self) -> int:
        return int(self.metrics.get("correct1", 0))

    @property
    def correct5(self) -> int:
        return int(self.metrics.get("correct5", 0))

    @property
    def nonfinite(self) -> int:
        """Samples whose outputs held NaN or inf (scored, but their predictions mean nothing)."""
        return int(self.metrics.get("nonfinite", 0))

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        metrics = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.metrics.items()}
        return {
            "model": self.model,
            "data": self.data,
            "task": self.task,
            **metrics,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "images_per_s": round(self.images_per_s, 2),
            "seconds": round(self.seconds, 3),
            "batch": self.batch,
            "threads": self.threads,
            "label_offset": self.label_offset,
        }


def _runner(handle: Model, threads: int | None, runtime: str | None, engine_options, session) -> "_Runner":
    """ONNX Runtime's plain CPU session (or the caller's `session`), or another engine's `infer`
    (`runtime`, default by the file: a .tflite runs on LiteRT)."""
    from .engines import ONNXRUNTIME, engine_for, load

    engine = engine_for(handle.path, runtime) if handle.path is not None else ONNXRUNTIME
    if engine == ONNXRUNTIME:
        return _Runner(session if session is not None else handle.session(threads), handle)
    if session is not None:
        raise BadInput(f"a session is onnxruntime's; the {engine} runtime makes its own")
    loaded = load(engine, handle.path, threads=threads, options=engine_options, batch=None, first_run=False)
    return _Runner(None, handle, infer=loaded.infer)


def evaluate(
    model: Model | Path | str,
    data: Path | str | Sequence[Sample] | None = None,
    limit: int | None = None,
    batch: int = 32,
    threads: int | None = None,
    on_progress: ProgressFn | None = None,
    session=None,
    annotations: Path | str | None = None,
    truth: Path | str | None = None,
    runtime: str | None = None,
    engine_options: dict | None = None,
) -> EvalResult:
    """The task metric of `model` (a handle or a path, .onnx or .tflite) on labelled images (default: the task's
    shipped set).

    annotations: the ground truth of a task that scores against a file (a detector: COCO instances JSON; default
    with the default images: their shipped instances.json). Refused for tasks with per-image labels.

    session: an onnxruntime session of the model configured by the caller (default: a plain CPU session).
    truth: where ground truth other than class labels lies (segmentation: the masks folder; see the task).
    runtime: onnxruntime, litert or openvino (`mnetctl.engines`; default: by the file), with its engine_options.

    data: a folder/CSV/image path (see `mnetctl.data.find_samples`) or a list of Samples (walked once, by
    the caller, e.g. a sweep that evaluates many variants on the same images).
    """
    if int(batch) <= 0:
        raise BadInput(f"batch must be a positive number, got {batch}")
    handle = as_model(model, tflite_ok=True)
    task = handle.task
    if annotations is not None and not task.needs_annotations:
        raise BadInput(f"annotations are for detection models; {handle.name} is a {task.name} model",
                       "leave out --annotations: its labels come from the image folders")
    if task.needs_annotations and annotations is None:
        if data is not None:
            where = data if isinstance(data, (str, Path)) else "its images"
            raise BadInput(f"annotations: {handle.name} is a {task.name} model; eval needs the ground truth of "
                           f"{where} (COCO instances JSON)", "give --annotations instances.json")
        annotations = task.default_annotations()
    if data is None:
        data = task.default_eval_dir()
    if isinstance(data, (str, Path)):
        samples = find_samples(data, limit, flag="data", names=handle.label_names, labels=task.needs_labels())
        data_name = str(data)
    else:
        samples = list(data)[:limit] if limit else list(data)
        data_name = "<samples>"
        if not samples:
            raise BadInput("no samples to evaluate")
    if task.needs_labels():
        unlabeled = [s for s in samples if s.label is None]
        if unlabeled:
            raise BadInput(
                f"{unlabeled[0].path} has no class label ({len(unlabeled)} of {len(samples)} images unlabeled)",
                "eval needs labels: DIR/<class name>/*.jpg, or a CSV of file,label" if handle.label_names else
                "eval needs labels: DIR/<wnid>/*.JPEG, DIR/<wnid>_*.JPEG or a CSV of file,label",
            )
        task.check_labels(handle, [s.label for s in samples])
    samples, checked = task.prepare(handle, samples, truth)
    pre = handle.preprocessor
    eff_batch = handle.fixed_batch or min(int(batch), len(samples), task.max_batch or int(batch))
    check_batch_memory(eff_batch, pre)
    run = _runner(handle, threads, runtime, engine_options, session)
    if task.needs_annotations:
        from .tasks.detection import load_ground_truth

        metric = task.metric(handle, load_ground_truth(annotations, samples))
    else:
        metric = task.metric(handle) if checked is None else task.metric(handle, checked)
    failed: list[tuple[str, str]] = []
    label = f"eval {Path(handle.name).name}"
    done = 0
    start = time.perf_counter()
    for b in iter_batches(samples, pre, eff_batch):
        failed.extend((str(s.path), reason) for s, reason in b.failures)
        if len(b):
            metric.update(run(b.array), b)
        done += len(b) + len(b.failures)
        report(on_progress, done, len(samples), label)
    seconds = time.perf_counter() - start
    scores = metric.result()
    if not scores.get("n"):
        path, reason = failed[0]
        raise BadInput(f"none of the {len(samples)} images could be read (first: {path}: {reason})")
    return EvalResult(handle.name, data_name, task.name, scores, failed, seconds, int(batch), threads,
                      getattr(handle.head, "label_offset", 0), list(getattr(metric, "predictions", [])),
                      list(getattr(metric, "labels", [])), list(getattr(metric, "paths", [])))


# --------------------------------------------------------------------------------------------
# predict


def _expand(images: Iterable[Path | str]) -> list[Path]:
    paths: list[Path] = []
    for img in images:
        p = Path(img)
        if p.is_dir():
            paths.extend(s.path for s in find_samples(p, labels=False))
        else:
            paths.append(p)
    if not paths:
        raise BadInput("no images given")
    return paths


def predict(
    model: Model | Path | str,
    images: Iterable[Path | str],
    top: int = 5,
    threads: int | None = None,
    min_score: float = 0.0,
    runtime: str | None = None,
    engine_options: dict | None = None,
) -> list[Prediction]:
    """The task's decoded outputs for each image (folders are expanded); for a classifier the top-k classes, for a
    detector the boxes scoring at least `min_score` (all the model gives: `top` does not cut them).
    `runtime`/`engine_options` as in `evaluate`."""
    if int(top) <= 0:
        raise BadInput(f"top must be a positive number, got {top}")
    if not 0.0 <= float(min_score) <= 1.0:  # also refuses NaN
        raise BadInput(f"min_score must be between 0 and 1, got {min_score}")
    paths = _expand(images)
    handle = as_model(model, tflite_ok=True)
    run = _runner(handle, threads, runtime, None if engine_options is None else engine_options, None)
    pre = handle.preprocessor
    results: list[Prediction] = []
    for path in paths:
        try:
            image = load_image(path)
            x = pre(image)[None]
        except BadInput as exc:  # BadImage
            prefix = f"{path}: "
            msg = exc.message[len(prefix):] if exc.message.startswith(prefix) else exc.message
            results.append(Prediction(str(path), [], msg))
            continue
        task = handle.task
        (decoded,) = task.decode(handle, run(x), 0 if task.needs_annotations else top)
        results.append(task.prediction(str(path), decoded, image, handle, min_score=float(min_score)))
    return results
