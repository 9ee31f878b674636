"""eval / predict: real ONNX Runtime sessions on the shipped images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mnetctl import evaluate as evaluate_mod
from mnetctl.cli import main
from mnetctl.data import class_names, default_calib_dir, default_val_dir, find_samples
from mnetctl.errors import BadInput
from mnetctl.evaluate import evaluate, predict
from mnetctl.meta import ModelMeta, write_meta

TENCH = default_val_dir() / "n01440764" / "n01440764_tench.JPEG"
GOLDFISH = default_calib_dir() / "n01443537_goldfish.JPEG"
RES = 32


def constant_logits_model(
    path: Path,
    logits: np.ndarray,
    meta: ModelMeta | None = None,
    softmax: bool = False,
    batch: int | str = "batch",
) -> Path:
    """A classifier whose output is `logits` for every image (the input is read, then multiplied by 0)."""
    classes = logits.shape[0]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["m"], ["f"], axis=1),
        helper.make_node("Mul", ["f", "zero"], ["z"]),
        helper.make_node("Add", ["z", "table"], ["logits" if not softmax else "raw"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["raw"], ["logits"], axis=1))
    inits = [
        helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
        helper.make_tensor("table", TensorProto.FLOAT, [1, classes], logits.astype(np.float32).ravel().tolist()),
    ]
    graph = helper.make_graph(
        nodes, "const",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, RES, RES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if meta is not None:
        write_meta(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def labelled_csv(tmp_path: Path, labels: list[int]) -> Path:
    """A CSV pointing at real shipped images with the given labels."""
    images = [s.path for s in find_samples(default_val_dir(), limit=len(labels))]
    csv = tmp_path / "labels.csv"
    csv.write_text("".join(f"{p},{lab}\n" for p, lab in zip(images, labels)))
    return csv


# ---------------------------------------------------------------------------- eval


def test_eval_random_model_on_val(tiny_model):
    res = evaluate(tiny_model, default_val_dir())
    samples = find_samples(default_val_dir())
    assert res.n == 200 and res.failed == []
    assert res.labels == [s.label for s in samples]
    assert len(res.predictions) == 200 and all(0 <= p < 1000 for p in res.predictions)
    assert res.top1 <= 0.05  # random weights: chance level
    assert res.top1 <= res.top5 <= 1.0 and res.correct1 == round(res.top1 * 200)
    assert res.images_per_s > 0 and res.seconds > 0
    # the batch size changes nothing but speed; batch > dataset is fine
    small = evaluate(tiny_model, default_val_dir(), limit=20, batch=7)
    assert small.predictions == res.predictions[:20]
    big = evaluate(tiny_model, default_val_dir(), limit=5, batch=1000)
    assert big.n == 5 and big.predictions == res.predictions[:5]


def test_label_offset_and_background_ignored(tmp_path):
    # 1001 outputs, logit 0 = background (largest), then class 1 (goldfish) and class 2
    logits = np.zeros(1001)
    logits[0], logits[1 + 1], logits[1 + 2] = 10.0, 5.0, 4.0
    csv = labelled_csv(tmp_path, [1, 1, 2])
    tf_style = constant_logits_model(tmp_path / "tf.onnx", logits, ModelMeta(resolution=RES, classes=1001, label_offset=1))
    res = evaluate(tf_style, csv)
    assert res.predictions == [1, 1, 1]
    assert (res.correct1, res.correct5, res.n) == (2, 3, 3)
    assert res.top1 == pytest.approx(2 / 3) and res.top5 == 1.0
    # the same logits declared without an offset: the background logit wins, nothing is right
    no_offset = constant_logits_model(tmp_path / "plain.onnx", logits, ModelMeta(resolution=RES, classes=1001, label_offset=0))
    res0 = evaluate(no_offset, csv)
    assert res0.predictions == [0, 0, 0] and res0.correct1 == 0
    # a foreign 1001-class model without mnetctl metadata: TF convention assumed
    foreign = constant_logits_model(tmp_path / "foreign.onnx", logits, None)
    assert evaluate(foreign, csv).predictions == [1, 1, 1]


def test_fixed_batch_models(tmp_path):
    logits = np.zeros(1000)
    logits[7] = 1.0
    csv = labelled_csv(tmp_path, [7] * 5 + [3] * 5)
    for fixed in (1, 4):  # 4 does not divide 10: the last batch is padded
        model = constant_logits_model(tmp_path / f"b{fixed}.onnx", logits, ModelMeta(resolution=RES), batch=fixed)
        res = evaluate(model, csv, batch=32)
        assert res.n == 10 and res.correct1 == 5 and res.predictions == [7] * 10


def test_unlabeled_and_unusable_data(tmp_path, tiny_model):
    shutil.copy(TENCH, tmp_path / "holiday.jpg")
    with pytest.raises(BadInput, match="no class label"):
        evaluate(tiny_model, tmp_path)
    bad = tmp_path / "bad"
    (bad / "n01440764").mkdir(parents=True)
    (bad / "n01440764" / "x.jpg").write_bytes(TENCH.read_bytes()[:500])
    with pytest.raises(BadInput, match="none of the 1 images"):
        evaluate(tiny_model, bad)


def test_batch_that_does_not_fit_memory(monkeypatch, tiny_model):
    monkeypatch.setattr(evaluate_mod, "_available_memory", lambda: 64 * 2**20)
    with pytest.raises(BadInput, match="--batch 64 needs") as err:
        evaluate(tiny_model, default_val_dir(), batch=64)
    assert "lower --batch" in err.value.hint


# ---------------------------------------------------------------------------- predict


def test_predict_probabilities(tmp_path):
    logits = np.zeros(1000)
    logits[:3] = [3.0, 2.0, 1.0]
    expected = np.exp(logits) / np.exp(logits).sum()
    for softmax in (False, True):  # a model ending in Softmax is not normalised twice
        model = constant_logits_model(tmp_path / f"s{softmax}.onnx", logits, ModelMeta(resolution=RES), softmax=softmax)
        (pred,) = predict(model, [GOLDFISH], top=2)
        assert pred.error is None
        assert [(i, lab) for i, lab, _ in pred.top] == [(0, class_names()[0]), (1, class_names()[1])]
        assert [p for _, _, p in pred.top] == pytest.approx(expected[:2], rel=1e-5)


def test_predict_background_is_not_listed(tmp_path):
    logits = np.zeros(1001)
    logits[0], logits[5] = 9.0, 3.0
    model = constant_logits_model(tmp_path / "tf.onnx", logits, ModelMeta(resolution=RES, classes=1001, label_offset=1))
    (pred,) = predict(model, [GOLDFISH], top=1)
    expected = np.exp(3.0) / np.exp(logits).sum()  # softmax over all outputs, background left out of the list
    assert pred.top[0][0] == 4 and pred.top[0][2] == pytest.approx(expected, rel=1e-5)
    assert pred.path == str(GOLDFISH)


def test_predict_cli_with_real_weights(pretrained_small, tmp_path, capsys):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(TENCH.read_bytes()[:2000])
    assert main(["predict", str(pretrained_small), str(GOLDFISH), "--top", "3", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["path"] == str(GOLDFISH) and len(entry["top"]) == 3
    assert entry["top"][0]["index"] == 1 and entry["top"][0]["label"].startswith("goldfish")
    assert entry["top"][0]["prob"] > 0.5
    # an unreadable image among good ones: the good ones are printed, the exit code says something failed
    assert main(["predict", str(pretrained_small), str(GOLDFISH), str(cut)]) == 2
    captured = capsys.readouterr()
    assert "goldfish" in captured.out and "cut.jpg" in captured.err and "truncated" in captured.err


# ---------------------------------------------------------------------------- CLI


def test_eval_cli_counts_unreadable_images(tmp_path, tiny_model, capsys):
    for wnid, src in (("n01440764", TENCH), ("n01443537", GOLDFISH)):
        (tmp_path / wnid).mkdir()
        shutil.copy(src, tmp_path / wnid / src.name)
    cut = tmp_path / "n01440764" / "cut.JPEG"
    cut.write_bytes(TENCH.read_bytes()[:3000])
    assert main(["eval", str(tiny_model), "--data", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert {"top1", "top5", "n", "images_per_s", "failed", "seconds", "correct1", "correct5"} <= set(out)
    assert out["n"] == 2 and 0.0 <= out["top1"] <= out["top5"] <= 1.0
    assert out["failed"] == [{"path": str(cut), "reason": out["failed"][0]["reason"]}]
    assert "truncated" in out["failed"][0]["reason"]
    assert "unreadable" in captured.err and str(cut) in captured.err
    # table output
    assert main(["eval", str(tiny_model), "--data", str(tmp_path), "--limit", "2"]) == 0
    assert "top-1" in capsys.readouterr().out


def test_eval_cli_default_data_and_limit(tiny_model, capsys):
    assert main(["eval", str(tiny_model), "--limit", "3", "--batch", "2", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 3 and out["data"] == str(default_val_dir())


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "text", "directory"])
def test_bad_model_files_exit_2(tmp_path, capsys, kind):
    path = tmp_path / "model.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 10)
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "directory":
        path.mkdir()
    for argv in (["eval", str(path), "--limit", "1"], ["predict", str(path), str(GOLDFISH)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "Traceback" not in err and str(path) in " ".join(err.split())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--batch", "0"], "--batch"),
        (["--limit", "0"], "--limit"),
        (["--threads", "0"], "--threads"),
        (["--data", "/nonexistent/folder"], "does not exist"),
    ],
)
def test_eval_cli_bad_flags_exit_2(tiny_model, capsys, args, needle):
    assert main(["eval", str(tiny_model), *args]) == 2
    assert needle in " ".join(capsys.readouterr().err.split())


# ---------------------------------------------------------------------------- non-finite outputs


def test_nan_outputs_give_valid_json_and_a_warning(tmp_path, capsys):
    """predict --json stays strict JSON (null, with a warning); eval counts and warns about NaN outputs."""
    logits = np.zeros(10)
    logits[3] = np.nan
    model = constant_logits_model(tmp_path / "nan.onnx", logits, ModelMeta(resolution=RES, classes=10))

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    assert main(["predict", str(model), str(TENCH), "--json", "-k", "2"]) == 0
    out, err = capsys.readouterr()
    (doc,) = json.loads(out, parse_constant=no_constants)
    assert doc["top"][0]["prob"] is None and "non-finite" in doc["warning"]
    assert "warning:" in err and "non-finite" in err
    csv = labelled_csv(tmp_path, [3, 4])
    assert evaluate(model, csv).nonfinite == 2
    assert main(["eval", str(model), "--data", str(csv), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out, parse_constant=no_constants)["nonfinite"] == 2
    assert "NaN or inf for 2 of 2 images" in err
