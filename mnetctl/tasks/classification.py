"""Image classification: logits (or probabilities) per class; top-1/top-5 accuracy; top-k predictions.

A TF checkpoint's logit 0 is a background class (`label_offset` 1): predicted class index = argmax over the
logits after the offset, so predictions and labels are both ImageNet indices 0..999.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput
from ..meta import PREFIX
from .base import Metric, Task


@dataclass(frozen=True)
class ClassifierHead:
    """What decoding a classifier's output needs."""

    output_name: str
    classes: int  # output width including a background logit
    label_offset: int
    ends_in_softmax: bool

    @property
    def num_labels(self) -> int:
        return self.classes - self.label_offset


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Prediction:
    path: str
    top: list[tuple[int, str, float]]  # (class index, label, probability), best first
    error: str | None = None  # why the image could not be read (top is then empty)

    @property
    def warning(self) -> str | None:
        """Set when the model gave non-finite scores (NaN/inf): those probabilities mean nothing."""
        if any(not np.isfinite(p) for _, _, p in self.top):
            return "the model output non-finite values (NaN or inf)"
        return None

    def as_dict(self) -> dict[str, Any]:
        """Valid JSON: a non-finite probability is null, with a `warning`."""
        out: dict[str, Any] = {"path": self.path}
        if self.error:
            out["error"] = self.error
        else:
            out["top"] = [{"index": i, "label": lab, "prob": round(p, 6) if np.isfinite(p) else None}
                          for i, lab, p in self.top]
            if self.warning:
                out["warning"] = self.warning
        return out


@dataclass
class TopKAccuracy(Metric):
    offset: int
    n: int = 0
    correct1: int = 0
    correct5: int = 0
    nonfinite: int = 0  # samples whose outputs hold NaN or inf (their predictions mean nothing)
    predictions: list[int] = field(default_factory=list)  # top-1 class index per scored sample
    labels: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def update(self, outputs: np.ndarray, batch) -> None:
        top = topk(outputs[:, self.offset:], 5)
        labels = np.array([s.label for s in batch.samples_ok])
        self.n += len(labels)
        self.nonfinite += int(np.sum(~np.all(np.isfinite(outputs), axis=1)))
        self.correct1 += int(np.sum(top[:, 0] == labels))
        self.correct5 += int(np.sum(np.any(top == labels[:, None], axis=1)))
        self.predictions.extend(int(i) for i in top[:, 0])
        self.labels.extend(int(i) for i in labels)
        self.paths.extend(str(s.path) for s in batch.samples_ok)

    def result(self) -> dict[str, Any]:
        n = self.n
        return {"top1": self.correct1 / n if n else 0.0, "top5": self.correct5 / n if n else 0.0,
                "n": n, "correct1": self.correct1, "correct5": self.correct5, "nonfinite": self.nonfinite}


class ClassificationTask(Task):
    name = "classification"
    headline = "top1"

    def inspect_outputs(self, proto, meta, inp, path: str) -> ClassifierHead:
        out = proto.graph.output[0]
        ttype = out.type.tensor_type
        out_dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
        trailing = [d for d in out_dims[1:] if d != 1]
        if ttype.HasField("shape") and (len(out_dims) not in (2, 4) or len(trailing) > 1):
            shown = [d if d is not None else "?" for d in out_dims]
            raise BadInput(f"{path}: output {out.name!r} {shown} is not a class vector ([N, classes] or "
                           "[N, classes, 1, 1]); mnetctl needs an image classifier")
        classes = meta.classes
        if len(trailing) == 1 and trailing[0] is not None:
            classes = trailing[0]
        offset = meta.label_offset
        if PREFIX + "label_offset" not in {p.key for p in proto.metadata_props} and classes == 1001:
            offset = 1  # a foreign TF-style classifier: logit 0 is background
        if not 0 <= offset < classes:
            raise BadInput(f"{path}: label offset {offset} does not fit {classes} outputs")
        producer = next((n for n in proto.graph.node if out.name in n.output), None)
        softmax_last = producer is not None and producer.op_type == "Softmax"
        return ClassifierHead(out.name, classes, offset, softmax_last)

    def metric(self, model) -> TopKAccuracy:
        return TopKAccuracy(model.head.label_offset)

    def needs_labels(self) -> bool:
        return True

    def check_labels(self, model, labels: list[int]) -> None:
        too_big = sorted({lab for lab in labels if lab >= model.head.num_labels})
        if too_big:
            raise BadInput(f"{model.name} predicts {model.head.num_labels} classes, but the data has label {too_big[0]}")

    def decode(self, model, outputs: np.ndarray, top: int) -> list[list[tuple[int, str, float]]]:
        """Softmax probabilities over all outputs (a background logit included, then left out of the listing);
        a model that already ends in Softmax is not normalised twice."""
        head = model.head
        probs = outputs if head.ends_in_softmax else softmax(outputs)
        probs = probs[:, head.label_offset:]
        k = min(int(top), head.num_labels)
        return [[(int(i), model.label(int(i)), float(row[i])) for i in idx] for row, idx in zip(probs, topk(probs, k))]

    def prediction(self, path: str, decoded, image, model=None, min_score: float = 0.0) -> Prediction:
        return Prediction(path, decoded)

    def calibration_dir(self) -> Path:
        from ..data import default_calib_dir

        return default_calib_dir()

    def default_eval_dir(self) -> Path:
        from ..data import default_val_dir

        return default_val_dir()
