"""The task contract: output decoding, the eval metric, what predict reports, which images calibrate."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # type names only: tasks sit below the model handle
    from ..data import Batch
    from ..model import InputSpec, Model


class Metric(ABC):
    """Accumulates a task's score over batches of model outputs."""

    @abstractmethod
    def update(self, outputs: np.ndarray, batch: "Batch") -> None: ...

    @abstractmethod
    def result(self) -> dict[str, Any]:
        """Plain JSON-able numbers (e.g. top1/top5, mAP, mIoU) plus the count of scored samples `n`."""


class Task(ABC):
    """What one kind of model supplies to eval, predict, quantize and sweep."""

    name: str = ""
    #: the metric a sweep ranks variants by, a key of `Metric.result()`
    headline: str = ""
    #: eval scores against a ground-truth file (`annotations`, e.g. COCO instances) instead of per-image labels
    needs_annotations: bool = False
    #: the most images per inference call eval uses (None: as asked), for tasks with large outputs
    max_batch: int | None = None

    def prepare(self, model: "Model", samples: list, truth: Any = None) -> tuple[list, Any]:
        """The samples eval scores and the checked ground truth the metric reads besides them (`truth`: where it
        lies, e.g. a folder of masks). Default: the samples as they are, no extra ground truth (refused if given)."""
        if truth is not None:
            from ..errors import BadInput

            raise BadInput(f"masks {truth}: {self.name} eval scores class labels and reads no masks",
                           "--masks is for segmentation models")
        return samples, None

    @abstractmethod
    def inspect_outputs(self, proto, meta, inp: "InputSpec", path: str) -> Any:
        """Check the model's outputs fit this task; return what decoding needs (raise BadInput if not)."""

    @abstractmethod
    def metric(self, model: "Model") -> Metric:
        """A fresh accumulator of this task's eval metric for `model`."""

    @abstractmethod
    def needs_labels(self) -> bool:
        """Whether eval needs a ground-truth label per image."""

    @abstractmethod
    def check_labels(self, model: "Model", labels: list[int]) -> None:
        """Refuse ground truth the model cannot predict (raise BadInput)."""

    @abstractmethod
    def decode(self, model: "Model", outputs: np.ndarray, top: int) -> list[Any]:
        """One prediction per row of raw outputs, for `predict` (JSON-able via `as_dict`)."""

    @abstractmethod
    def calibration_dir(self) -> Path:
        """The shipped images that suit calibrating this task's models."""

    @abstractmethod
    def default_eval_dir(self) -> Path:
        """The shipped labelled images eval uses when given none."""

    def prediction(self, path: str, decoded: Any, image: np.ndarray, model: "Model | None" = None,
                   min_score: float = 0.0) -> Any:
        """What predict reports for one image (its `decode` row; the original RGB image, HxWx3)."""
        raise NotImplementedError(f"the {self.name} task has no predict output")
