"""Top-1 / top-5 accuracy of an ONNX classifier on labelled images, and top-k prediction.

The model's metadata says how to preprocess (see `mnetctl.data.Preprocessor`) and whether logit 0
is a background class (`label_offset`, 1 for TF checkpoints). Predicted class index =
argmax over the logits after the offset, so predictions and labels are both ImageNet indices 0..999.
Images that cannot be decoded are counted in `failed` with the reason; they are never dropped
silently and never stop the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .data import Batch, Preprocessor, Sample, class_name, find_samples, iter_batches, load_image
from .errors import BadInput
from .meta import PREFIX, ModelMeta, read_meta
from .modelio import load_onnx

ProgressFn = Callable[[int, int], None]  # (images done, images total)

# Rough peak bytes per image during inference, as a multiple of the float input tensor: MobileNet
# activations reach ~8x the input (e.g. 112x112x96 vs 224x224x3), and ORT keeps a few alive.
_ACTIVATION_FACTOR = 24


@dataclass
class ModelIO:
    """What evaluate/predict need to know about a model's input and output."""

    meta: ModelMeta
    input_name: str
    input_dtype: np.dtype
    fixed_batch: int | None  # the input's batch dimension when it is a fixed number
    output_name: str
    classes: int  # output width including a background logit
    label_offset: int
    ends_in_softmax: bool

    @property
    def num_labels(self) -> int:
        return self.classes - self.label_offset


def inspect_io(model, path: Path | str = "model") -> ModelIO:
    """Check that an onnx.ModelProto is a one-input image classifier we can feed; describe its I/O."""
    from onnx import TensorProto, helper

    meta = read_meta(model)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise BadInput(f"{path} has {len(inputs)} inputs; eval/predict need a model with one image input")
    inp = inputs[0]
    ttype = inp.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
    if len(dims) != 4:
        raise BadInput(f"{path}: input {inp.name!r} has rank {len(dims)}, expected a 4-D image batch")
    pre = Preprocessor.from_meta(meta)
    spatial = dims[2:4] if pre.input_format == "float-nchw" else dims[1:3]
    channels = dims[1] if pre.input_format == "float-nchw" else dims[3]
    if channels not in (None, 3):
        raise BadInput(f"{path}: input {inp.name!r} {dims} does not match the layout {pre.input_format} in its metadata")
    for d in spatial:
        if d is not None and d != meta.resolution:
            raise BadInput(f"{path}: input {inp.name!r} is {spatial}, but its metadata says resolution {meta.resolution}")
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)) if ttype.elem_type else np.dtype(np.float32)
    if (ttype.elem_type == TensorProto.UINT8) != (pre.input_format == "uint8-nhwc"):
        raise BadInput(f"{path}: input {inp.name!r} is {dtype}, but its metadata says input format {pre.input_format}")
    if dtype.kind not in "fu":
        raise BadInput(f"{path}: unsupported input type {dtype}")

    out = model.graph.output[0]
    out_dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
    trailing = [d for d in out_dims[1:] if d != 1]
    classes = meta.classes
    if len(trailing) == 1 and trailing[0] is not None:
        classes = trailing[0]
    offset = meta.label_offset
    if PREFIX + "label_offset" not in {p.key for p in model.metadata_props} and classes == 1001:
        offset = 1  # a foreign TF-style classifier: logit 0 is background
    if not 0 <= offset < classes:
        raise BadInput(f"{path}: label offset {offset} does not fit {classes} outputs")
    producer = next((n for n in model.graph.node if out.name in n.output), None)
    softmax = producer is not None and producer.op_type == "Softmax"
    fixed = dims[0] if dims[0] and dims[0] > 0 else None
    return ModelIO(meta, inp.name, dtype, fixed, out.name, classes, offset, softmax)


def open_model(model_path: Path | str, threads: int | None = None):
    """Load + check a model file and open a CPU session: (session, ModelIO, Preprocessor)."""
    from .runtime import check_threads, cpu_session

    if threads is not None:
        check_threads(threads)  # before the session, whose errors are reported as a bad model
    model = load_onnx(model_path, load_external_data=False)
    io = inspect_io(model, model_path)
    pre = Preprocessor.from_meta(io.meta)
    del model
    try:
        session = cpu_session(model_path, threads=threads)
    except Exception as exc:  # ORT raises its own exception types for invalid graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"ONNX Runtime cannot load {model_path}: {first}") from None
    return session, io, pre


def _available_memory() -> int:
    from .hostinfo import available_memory

    return available_memory()


def check_batch_memory(batch: int, pre: Preprocessor) -> None:
    """Refuse a batch whose estimated inference memory exceeds what the machine has free."""
    per_image = 3 * pre.resolution * pre.resolution * 4 * _ACTIVATION_FACTOR + pre.sample_bytes
    need = batch * per_image
    avail = _available_memory()
    if need > 0.8 * avail:
        fits = max(1, int(0.8 * avail // per_image))
        raise BadInput(
            f"--batch {batch} needs about {need / 2**30:.1f} GiB at resolution {pre.resolution}, "
            f"but only {avail / 2**30:.1f} GiB is free",
            f"lower --batch (at most ~{fits} fits)",
        )


class _Runner:
    """Runs batches through a session, honouring a fixed batch dimension (pads the last batch)."""

    def __init__(self, session, io: ModelIO, path: Path | str = "the model"):
        self.session = session
        self.io = io
        self.path = path

    def __call__(self, array: np.ndarray) -> np.ndarray:
        n = array.shape[0]
        if array.dtype != self.io.input_dtype:
            array = array.astype(self.io.input_dtype)
        fixed = self.io.fixed_batch
        if fixed and n != fixed:
            outs = []
            for start in range(0, n, fixed):
                chunk = array[start:start + fixed]
                m = chunk.shape[0]
                if m < fixed:
                    chunk = np.concatenate([chunk, np.zeros((fixed - m, *chunk.shape[1:]), chunk.dtype)])
                outs.append(self._run(chunk)[:m])
            return np.concatenate(outs)
        return self._run(array)

    def _run(self, array: np.ndarray) -> np.ndarray:
        try:
            (out,) = self.session.run([self.io.output_name], {self.io.input_name: array})
        except Exception as exc:  # ORT loaded the graph but cannot run it (e.g. a corrupt attribute)
            from .modelio import cannot_run

            raise cannot_run(self.path, exc) from None
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(out.shape[0], -1)


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


# --------------------------------------------------------------------------------------------
# eval


@dataclass
class EvalResult:
    model: str
    data: str
    n: int  # images scored
    correct1: int
    correct5: int
    failed: list[tuple[str, str]]  # (path, reason) of images that could not be read
    seconds: float  # decode + preprocess + inference, excluding model loading
    batch: int
    threads: int | None
    label_offset: int
    predictions: list[int] = field(default_factory=list, repr=False)  # top-1 class index per scored sample
    labels: list[int] = field(default_factory=list, repr=False)
    paths: list[str] = field(default_factory=list, repr=False)

    @property
    def top1(self) -> float:
        return self.correct1 / self.n if self.n else 0.0

    @property
    def top5(self) -> float:
        return self.correct5 / self.n if self.n else 0.0

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "top1": round(self.top1, 6),
            "top5": round(self.top5, 6),
            "n": self.n,
            "correct1": self.correct1,
            "correct5": self.correct5,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "images_per_s": round(self.images_per_s, 2),
            "seconds": round(self.seconds, 3),
            "batch": self.batch,
            "threads": self.threads,
            "label_offset": self.label_offset,
        }


def _rich_progress(total: int, description: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    # A transient bar has nothing to show when stderr is a file or pipe, and would leave a blank line there.
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )
    task = progress.add_task(description, total=total)
    return progress, (lambda done, _total: progress.update(task, completed=done))


def evaluate(
    model_path: Path | str,
    data: Path | str | Sequence[Sample] | None = None,
    limit: int | None = None,
    batch: int = 32,
    threads: int | None = None,
    progress: bool | ProgressFn = True,
) -> EvalResult:
    """Top-1/top-5 of `model_path` on labelled images (default: the shipped val sample).

    data: a folder/CSV/image path (see `mnetctl.data.find_samples`) or a list of Samples.
    progress: True for a rich progress bar on stderr, False for none, or a callback (done, total).
    """
    from .data import default_val_dir

    if int(batch) <= 0:
        raise BadInput(f"--batch must be a positive number, got {batch}")
    if data is None:
        data = default_val_dir()
    if isinstance(data, (str, Path)):
        samples = find_samples(data, limit, flag="--data")
        data_name = str(data)
    else:
        samples = list(data)[:limit] if limit else list(data)
        data_name = "<samples>"
        if not samples:
            raise BadInput("no samples to evaluate")
    unlabeled = [s for s in samples if s.label is None]
    if unlabeled:
        raise BadInput(
            f"{unlabeled[0].path} has no class label ({len(unlabeled)} of {len(samples)} images unlabeled)",
            "eval needs labels: DIR/<wnid>/*.JPEG, DIR/<wnid>_*.JPEG or a CSV of file,label",
        )
    session, io, pre = open_model(model_path, threads)
    too_big = sorted({s.label for s in samples if s.label >= io.num_labels})
    if too_big:
        raise BadInput(f"{model_path} predicts {io.num_labels} classes, but the data has label {too_big[0]}")
    eff_batch = io.fixed_batch or min(int(batch), len(samples))
    check_batch_memory(eff_batch, pre)
    run = _Runner(session, io, model_path)

    result = EvalResult(str(model_path), data_name, 0, 0, 0, [], 0.0, int(batch), threads, io.label_offset)
    bar = None
    report: ProgressFn | None = None
    if progress is True:
        bar, report = _rich_progress(len(samples), f"eval {Path(str(model_path)).name}")
    elif callable(progress):
        report = progress
    done = 0
    start = time.perf_counter()
    try:
        if bar is not None:
            bar.start()
        for b in iter_batches(samples, pre, eff_batch):
            _score(run, io, b, result)
            done += len(b) + len(b.failures)
            if report:
                report(done, len(samples))
    finally:
        if bar is not None:
            bar.stop()
    result.seconds = time.perf_counter() - start
    if result.n == 0:
        path, reason = result.failed[0]
        raise BadInput(f"none of the {len(samples)} images could be read (first: {path}: {reason})")
    return result


def _score(run: _Runner, io: ModelIO, b: Batch, result: EvalResult) -> None:
    result.failed.extend((str(s.path), reason) for s, reason in b.failures)
    if not len(b):
        return
    scores = run(b.array)[:, io.label_offset:]
    labels = np.array([s.label for s in b.samples_ok])
    top = _topk(scores, 5)
    result.n += len(b)
    result.correct1 += int(np.sum(top[:, 0] == labels))
    result.correct5 += int(np.sum(np.any(top == labels[:, None], axis=1)))
    result.predictions.extend(int(i) for i in top[:, 0])
    result.labels.extend(int(i) for i in labels)
    result.paths.extend(str(s.path) for s in b.samples_ok)


# --------------------------------------------------------------------------------------------
# predict


@dataclass
class Prediction:
    path: str
    top: list[tuple[int, str, float]]  # (class index, label, probability), best first
    error: str | None = None  # why the image could not be read (top is then empty)

    def __iter__(self):  # unpacks as (path, top)
        return iter((self.path, self.top))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.error:
            out["error"] = self.error
        else:
            out["top"] = [{"index": i, "label": lab, "prob": round(p, 6)} for i, lab, p in self.top]
        return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _expand(images: Iterable[Path | str]) -> list[Path]:
    paths: list[Path] = []
    for img in images:
        p = Path(img)
        if p.is_dir():
            paths.extend(s.path for s in find_samples(p))
        else:
            paths.append(p)
    if not paths:
        raise BadInput("no images given")
    return paths


def predict(
    model_path: Path | str,
    images: Iterable[Path | str],
    top: int = 5,
    threads: int | None = None,
) -> list[Prediction]:
    """Top-k classes with softmax probabilities for each image (folders are expanded).

    Probabilities are a softmax over all outputs (a background logit included, then left out of
    the listing); a model that already ends in Softmax is not normalised twice.
    """
    if int(top) <= 0:
        raise BadInput(f"--top must be a positive number, got {top}")
    paths = _expand(images)
    session, io, pre = open_model(model_path, threads)
    run = _Runner(session, io, model_path)
    k = min(int(top), io.num_labels)
    results: list[Prediction] = []
    for path in paths:
        try:
            x = pre(load_image(path))[None]
        except BadInput as exc:  # BadImage
            prefix = f"{path}: "
            msg = exc.message[len(prefix):] if exc.message.startswith(prefix) else exc.message
            results.append(Prediction(str(path), [], msg))
            continue
        out = run(x)
        probs = out if io.ends_in_softmax else _softmax(out)
        probs = probs[:, io.label_offset:]
        idx = _topk(probs, k)[0]
        results.append(Prediction(str(path), [(int(i), _label(int(i), io), float(probs[0, i])) for i in idx]))
    return results


def _label(index: int, io: ModelIO) -> str:
    return class_name(index) if io.num_labels == 1000 else f"class {index}"
