"""The teacher of a distillation: any classifier whose label names are the student's classes, run in ONNX Runtime
on the same image views as the student's backbone (each view preprocessed as the teacher's own metadata says),
its outputs reordered to the student's classes and cached by content like the features."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..data import Preprocessor
from ..errors import BadInput
from .features import FeatureExtractor


def open_teacher(path: Path | str, names: list[str]):
    """(Model handle, index of each of `names` among the teacher's outputs after its label offset).

    Refuses, naming `--teacher`, a file that is not a classifier, one without label names, or one whose names
    are not exactly `names` (in any order)."""
    from ..model import Model

    try:
        model = Model.open(path)
    except BadInput as exc:
        raise BadInput(f"--teacher: {exc.message}", exc.hint) from None
    if model.task.name != "classification":
        raise BadInput(f"--teacher {path} is a {model.task.name} model, not a classifier")
    theirs = model.label_names
    if theirs is None:
        raise BadInput(f"--teacher {path} has no label names (mnetctl.labels), so its outputs cannot be matched to "
                       f"the classes {', '.join(names)}",
                       "use a model made by `mnetctl train` on these classes, or `mnetctl build ... --labels FILE`")
    if len(set(theirs)) != len(theirs) or sorted(theirs) != sorted(names):
        extra = sorted(set(theirs) - set(names))
        missing = sorted(set(names) - set(theirs))
        what = "; ".join(p for p in (f"not in DATA: {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}" if extra else "",
                                     f"missing: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "",
                                     "repeated names" if len(set(theirs)) != len(theirs) else "") if p)
        raise BadInput(f"--teacher {path} predicts {len(theirs)} classes that are not the training classes ({what})",
                       f"the teacher's label names must be {', '.join(names)}")
    return model, [theirs.index(n) for n in names]


class TeacherOutputs(FeatureExtractor):
    """`extract` gives [views, classes] teacher logits per image (log-probabilities when the teacher ends in a
    Softmax), columns in the student's class order."""

    def __init__(self, model, order: list[int], cache_dir: Path | None, batch: int = 32, threads: int | None = None):
        from ..model import run_batched

        self.model = model
        self.session = model.session(threads)
        self.pre = Preprocessor.from_meta(model.meta)
        self.width = len(order)
        self.batch = max(1, int(batch))
        self._columns = np.asarray(order) + model.label_offset
        self._run_batched = run_batched
        h = hashlib.sha256(model.proto.SerializeToString(deterministic=True))
        h.update(repr((list(map(int, self._columns)), model.head.ends_in_softmax)).encode())
        self.identity = "teacher-" + h.hexdigest()[:20]
        self.cache_dir = Path(cache_dir) / self.identity if cache_dir is not None else None

    def _run(self, array: np.ndarray) -> np.ndarray:
        m = self.model

        def one(chunk: np.ndarray) -> np.ndarray:
            (out,) = self.session.run([m.output_name], {m.input_name: chunk})
            return np.asarray(out, np.float32).reshape(len(chunk), -1)

        out = self._run_batched(one, array, m.input)[:, self._columns]
        if m.head.ends_in_softmax:
            out = np.log(np.maximum(out, 1e-30))
        return out.astype(np.float32)
