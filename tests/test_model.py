"""The model handle and the task contract."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mnetctl.errors import BadInput
from mnetctl.meta import PREFIX
from mnetctl.model import Model, as_model
from mnetctl.tasks import TASKS, get_task
from mnetctl.tasks.classification import ClassificationTask


def test_open_reads_everything_once(tiny_model):
    m = Model.open(tiny_model)
    assert m.path == tiny_model and m.meta.arch == "v1" and m.meta.resolution == 128
    assert m.task.name == "classification" and isinstance(m.task, ClassificationTask)
    assert m.input.dims == (None, 3, 128, 128) and m.input.dtype == np.float32
    assert m.head.classes == 1000 and m.num_labels == 1000 and m.label_offset == 0
    assert m.preprocessor.resolution == 128 and not m.quantized and m.opset == 17
    assert m.size_bytes() == tiny_model.stat().st_size
    assert as_model(m) is m and as_model(tiny_model).meta == m.meta


def test_task_recorded_in_metadata(tiny_model):
    props = {p.key: p.value for p in onnx.load(str(tiny_model), load_external_data=False).metadata_props}
    assert props[PREFIX + "task"] == "classification"


def test_unknown_task_is_one_clean_error(tiny_model, tmp_path):
    proto = onnx.load(str(tiny_model))
    for p in proto.metadata_props:
        if p.key == PREFIX + "task":
            p.value = "telepathy"
    with pytest.raises(BadInput, match="unknown task 'telepathy'"):
        Model.from_proto(proto, "x.onnx")


def test_classification_decode_and_metric(tiny_model):
    m = Model.open(tiny_model)
    logits = np.zeros((2, 1000), np.float32)
    logits[0, 7], logits[1, 3] = 5.0, 4.0
    top = m.task.decode(m, logits, top=2)
    assert [t[0][0] for t in top] == [7, 3] and top[0][0][2] == pytest.approx(np.exp(5) / (np.exp(5) + 999))

    class _Batch:  # what a Metric reads of a data.Batch
        samples_ok = [type("S", (), {"label": 7, "path": "a"})(), type("S", (), {"label": 9, "path": "b"})()]

    metric = m.task.metric(m)
    metric.update(logits, _Batch())
    assert metric.result() == {"top1": 0.5, "top5": 0.5, "n": 2, "correct1": 1, "correct5": 1, "nonfinite": 0}
    with pytest.raises(BadInput, match="predicts 1000 classes, but the data has label 1000"):
        m.task.check_labels(m, [1, 1000])


def test_registry_has_classification():
    assert get_task("classification") is TASKS["classification"]


def test_stages_take_the_handle(tiny_model):
    from mnetctl.bench import bench
    from mnetctl.evaluate import evaluate

    m = Model.open(tiny_model)
    r = bench(m, eps="cpu", iterations=3, warmup=0, threads=1)
    assert r.model["arch"] == "v1" and r.iterations == 3 and r.model_size_mb == pytest.approx(m.size_bytes() / 1e6, rel=1e-3)
    assert evaluate(m, limit=4).n == 4
