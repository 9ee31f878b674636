"""Tasks as a contract: what a kind of model (classifier, detector, segmenter) supplies to the stages.

A task module defines one `Task` subclass and registers it here; `Model.open` picks the task named by the
model's `mnetctl.task` metadata (classification when absent). Adding a task = one module + one line below.
"""

from __future__ import annotations

from ..errors import BadInput
from .base import Metric, Task
from .classification import ClassificationTask
from .detection import DetectionTask
from .segmentation import SegmentationTask

TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise BadInput(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})") from None


register(ClassificationTask())
register(DetectionTask())
register(SegmentationTask())

__all__ = ["TASKS", "Metric", "Task", "get_task", "register"]
