"""`mnetctl train`: the frozen backbone cut, the numpy head, the exported model, bad inputs; and the coarse-class
task built from the shipped images (scripts/coarse_task.py) against the pretrained model's zero-shot accuracy."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mnetctl.cli import main

from .conftest import REPO, VAL

sys.path.insert(0, str(REPO / "scripts"))
import coarse_task  # noqa: E402


@pytest.fixture(scope="module")
def coarse(tmp_path_factory) -> tuple[Path, Path]:
    return coarse_task.materialise(tmp_path_factory.mktemp("coarse"))


def _run(*args: str) -> int:
    return main(list(args))


# ------------------------------------------------------------------------------------------ head (numpy)



def _check_against_finite_differences(head, grads, loss, step: int) -> None:
    """Every `step`-th parameter's analytic gradient equals the central difference of `loss`."""
    params = [p for layer in head.layers for p in layer]
    for p, g in zip(params, grads):
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for k in range(0, flat.size, step):
            old = flat[k]
            flat[k] = old + 1e-6
            up = loss()
            flat[k] = old - 1e-6
            down = loss()
            flat[k] = old
            assert abs((up - down) / 2e-6 - gflat[k]) < 1e-5

def test_head_gradients_match_finite_differences():
    from mnetctl.train.head import Head, _gradients, _targets

    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5))
    t = _targets(rng.integers(0, 3, 6), 3, 0.1)
    head = Head([(rng.normal(size=(4, 5)), rng.normal(size=4)), (rng.normal(size=(3, 4)), rng.normal(size=3))])

    def loss() -> float:
        z = head.logits(x)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(t * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))).sum(axis=1).mean())

    grads = _gradients(head, x, t, 0.0, rng)
    _check_against_finite_differences(head, grads, loss, step=3)


def test_head_training_is_deterministic_and_learns():
    from mnetctl.train.head import HeadSettings, train_head

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    y = rng.integers(0, 3, 120)
    x = centres[y] + rng.normal(size=(120, 8))
    s = HeadSettings(epochs=20, lr=0.05, seed=3)
    a = train_head(x[:90], y[:90], x[90:], y[90:], 3, s)
    b = train_head(x[:90], y[:90], x[90:], y[90:], 3, s)
    assert a.best.val_acc > 0.9
    assert all(np.array_equal(p, q) for la, lb in zip(a.head.layers, b.head.layers) for p, q in zip(la, lb))


# ------------------------------------------------------------------------------------------ backbone and export


def test_backbone_features_feed_the_pretrained_classifier(pretrained_small):
    """Features of the cut model times head.fc's weights = the full model's logits (the cut is at head.fc's input)."""
    import onnx
    from onnx import numpy_helper

    from mnetctl.data import Preprocessor, find_samples, load_image
    from mnetctl.meta import read_meta
    from mnetctl.runtime import cpu_session
    from mnetctl.train.export import export_model
    from mnetctl.train.features import FeatureExtractor, draw_views
    from mnetctl.train.head import Head

    proto = onnx.load(str(pretrained_small))
    pre = Preprocessor.from_meta(read_meta(proto))
    samples = find_samples(VAL, limit=4)
    fs = FeatureExtractor(proto, pre, None).extract(samples, lambda d: draw_views(0, d, 1, False))
    feats = np.stack([f[0] for f in fs.features])
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    w, b = inits["head.fc.weight"], inits["head.fc.bias"]
    batch = np.stack([pre(load_image(s.path)) for s in samples])
    (full,) = cpu_session(str(pretrained_small)).run(None, {proto.graph.input[0].name: batch})
    np.testing.assert_allclose(feats @ w.T + b, full, rtol=1e-4, atol=1e-4)
    # a 3-class head made of three of the pretrained rows gives exactly those logits from the exported graph
    rows = [1, 2, 3]
    model = export_model(proto, Head([(w[rows].astype(np.float64), b[rows].astype(np.float64))]), ["a", "b", "c"], {})
    (out,) = cpu_session(model.SerializeToString()).run(None, {proto.graph.input[0].name: batch})
    np.testing.assert_allclose(out, full[:, rows], rtol=1e-4, atol=1e-4)
    meta = read_meta(model)
    assert (meta.classes, meta.label_offset, json.loads(meta.extra["labels"])) == (3, 0, ["a", "b", "c"])


def test_views_are_seeded_and_plain_first():
    from mnetctl.train.features import View, draw_views

    a = draw_views(0, "ab" * 32, 5, True)
    assert a == draw_views(0, "ab" * 32, 5, True) and a[0] == View() and len(set(a)) == 5
    assert a != draw_views(1, "ab" * 32, 5, True)
    assert draw_views(0, "ab" * 32, 5, False) == [View()]


# ------------------------------------------------------------------------------------------ bad input


def _classes(root: Path, counts: dict[str, int]) -> Path:
    images = sorted(VAL.rglob("*.JPEG"))
    k = 0
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for _ in range(n):
            shutil.copy(images[k], root / name / images[k].name)
            k += 1
    return root


V1_SMALL = ("--arch", "v1", "--width", "0.25", "--resolution", "128", "--no-cache")


@pytest.mark.parametrize("case", ["one_class", "empty_class", "all_unreadable", "loose_images", "not_a_folder"])
def test_bad_training_data_is_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    data = tmp_path / "data"
    if case == "one_class":
        _classes(data, {"a": 3})
    elif case == "empty_class":
        _classes(data, {"a": 3})
        (data / "b").mkdir()
    elif case == "all_unreadable":
        for name in ("a", "b"):
            (data / name).mkdir(parents=True)
            for i in range(3):
                (data / name / f"{i}.jpg").write_bytes(b"not an image")
    elif case == "loose_images":
        _classes(data, {"a": 2, "b": 2})
        shutil.copy(next(VAL.rglob("*.JPEG")), data / "x.jpg")
    else:
        data = tmp_path / "missing"
    out = tmp_path / "out.onnx"
    assert _run("train", str(data), *V1_SMALL, "-o", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    data = _classes(tmp_path / "data", {"a": 4, "b": 4})
    (data / "a" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "m.onnx"
    assert _run("train", str(data), *V1_SMALL, "--epochs", "2", "--views", "2", "-o", str(out), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [Path(f["path"]).name for f in report["failed"]] == ["broken.jpg"]
    assert report["train_images"] + report["val_images"] == 8 and out.exists()


def test_bad_settings_name_the_flag(tmp_path, capsys):
    data = _classes(tmp_path / "data", {"a": 2, "b": 2})
    assert _run("train", str(data), *V1_SMALL, "--dropout", "1.5", "-o", str(tmp_path / "m.onnx")) == 2
    assert "--dropout" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the coarse task


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _task(coarse, tmp_path, capsys, arch: str, width: str, res: str) -> None:
    from mnetctl.builder import build_model, save_model
    from mnetctl.evaluate import evaluate

    train_dir, val_dir = coarse
    args = ["train", str(train_dir), "--val", str(val_dir), "--arch", arch, "--width", width, "--resolution", res, "--json"]
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert _run(*args, "--no-cache", "-o", str(a)) == 0
    report = json.loads(capsys.readouterr().out)
    assert _run(*args, "--cache", str(tmp_path / "cache"), "-o", str(b)) == 0  # computed into a fresh cache
    assert _sha(a) == _sha(b)
    assert _run(*args, "--cache", str(tmp_path / "cache"), "-o", str(b)) == 0  # and read back from it
    assert json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")["views_cached"] > 0
    assert _sha(a) == _sha(b)
    # the exported model under eval scores what train reported
    trained = evaluate(a, val_dir)
    assert trained.n == report["val_images"] and trained.top1 == pytest.approx(report["val_accuracy"], abs=1e-6)
    # zero-shot: the pretrained ImageNet model, each group's probabilities summed
    pre = tmp_path / "pretrained.onnx"
    save_model(build_model(arch, float(width), int(res), weights="pretrained"), pre)
    zero_shot = coarse_task.zero_shot_accuracy(pre, val_dir)
    # the same figure from the grouped model (a classifier with the coarse label names: a possible --teacher)
    grouped = tmp_path / "grouped.onnx"
    save_model(coarse_task.zero_shot_model(arch, float(width), int(res)), grouped)
    assert evaluate(grouped, val_dir).top1 == pytest.approx(zero_shot, abs=1e-9)
    majority = max(len(list((val_dir / c).iterdir())) for c in coarse_task.NAMES) / trained.n
    print(f"{arch} {width} {res}: trained {100 * trained.top1:.1f}% zero-shot {100 * zero_shot:.1f}% "
          f"majority class {100 * majority:.1f}%")
    assert trained.top1 > majority + 0.15  # the head learned the classes, far above always answering "object"
    # int8, calibrated on the training images
    q = tmp_path / "a.int8.onnx"
    assert _run("quantize", str(a), "--calib", str(train_dir), "--eval", str(val_dir), "-o", str(q), "--json") == 0
    capsys.readouterr()
    assert abs(evaluate(q, val_dir).top1 - trained.top1) <= 0.01 + 1e-9
    # without --eval the shipped ImageNet sample cannot score its classes: no evaluation, a note, exit 0
    # and with no --calib it calibrates on the model's own training images (recorded at training)
    q2 = tmp_path / "b.int8.onnx"
    assert _run("quantize", str(a), "--no-bench", "-o", str(q2), "--json") == 0
    out = capsys.readouterr()
    assert "pass --eval DIR" in " ".join(out.err.split()) and q2.is_file()
    assert json.loads(out.out)["calib"] == str(train_dir.resolve())


def test_coarse_task_v1_small(coarse, tmp_path, capsys):
    _task(coarse, tmp_path, capsys, "v1", "0.25", "128")


@pytest.mark.slow
def test_coarse_task_v2(coarse, tmp_path, capsys):
    _task(coarse, tmp_path, capsys, "v2", "1.0", "224")


# ------------------------------------------------------------------------------------------ more bad input


def _bad(capsys, *args: str) -> str:
    """Run a command expected to refuse its input: exit 2, one line on stderr; returns that line."""
    assert _run(*args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("case", ["val_lacks_class", "val_unknown_class", "val_empty_class", "val_one_class",
                                  "train_class_unreadable", "val_class_unreadable"])
def test_bad_validation_and_unreadable_classes(tmp_path, capsys, case):
    data = _classes(tmp_path / "data", {"a": 3, "b": 3, "c": 3})
    val = tmp_path / "val"
    if case == "val_lacks_class":
        _classes(val, {"a": 1, "b": 1})
        needle = "no folder for training class 'c'"
    elif case == "val_unknown_class":
        _classes(val, {"a": 1, "b": 1, "c": 1, "d": 1})
        needle = "class 'd'"
    elif case == "val_empty_class":
        _classes(val, {"a": 1, "b": 1})
        (val / "c").mkdir()
        needle = "holds no images"
    elif case == "val_one_class":
        _classes(val, {"a": 2})
        needle = "1 class folder"
    elif case == "train_class_unreadable":
        _classes(val, {"a": 1, "b": 1, "c": 1})
        for p in (data / "c").iterdir():
            p.write_bytes(b"not an image")
        needle = "training class 'c' has no readable image"
    else:
        _classes(val, {"a": 1, "b": 1, "c": 1})
        for p in (val / "b").iterdir():
            p.write_bytes(b"not an image")
        needle = "validation class 'b' has no readable image"
    out = tmp_path / "out.onnx"
    err = _bad(capsys, "train", str(data), "--val", str(val), *V1_SMALL, "--epochs", "1", "--views", "1", "-o", str(out))
    assert needle in err
    assert not out.exists()


def test_label_file_of_wrong_length_for_the_shipped_checkpoint(tmp_path, capsys):
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    out = tmp_path / "m.onnx"
    err = _bad(capsys, "build", "v1", "--width", "0.25", "--resolution", "128", "--weights", "pretrained",
               "--labels", str(labels), "-o", str(out))
    assert "--labels" in err and "3 names" in err and not out.exists()


# ------------------------------------------------------------------------------------------ distillation


def test_distillation_gradient_matches_finite_differences():
    """alpha * hard CE (rows with a label) + (1 - alpha) * T^2 * KL(teacher_T || student_T)."""
    from mnetctl.train.head import Distill, Head, _gradients, _targets_or_zero

    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 5))
    y = np.array([0, 2, -1, 1, -1, 2])
    t = _targets_or_zero(y, 3, 0.1)
    hard = (y >= 0).astype(float)
    temperature, alpha = 2.5, 0.3
    q = Distill(rng.normal(size=(6, 3)) * 3, temperature, alpha).soft_targets()
    head = Head([(rng.normal(size=(4, 5)), rng.normal(size=4)), (rng.normal(size=(3, 4)), rng.normal(size=3))])

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def loss() -> float:
        z = head.logits(x)
        ce = -(t * log_softmax(z)).sum(axis=1)
        kl = (q * (np.log(q) - log_softmax(z / temperature))).sum(axis=1)
        return float((alpha * hard * ce + (1 - alpha) * temperature**2 * kl).mean())

    grads = _gradients(head, x, t, 0.0, rng, hard=hard, soft=q, temperature=temperature, alpha=alpha)
    _check_against_finite_differences(head, grads, loss, step=2)


@pytest.fixture(scope="module")
def small_task(tmp_path_factory):
    """Two classes of real images (train 4+4, val 2+2), 3 unlabeled images, and a V1 0.25/128 teacher trained on them."""
    root = tmp_path_factory.mktemp("distil")
    images = sorted(VAL.rglob("*.JPEG"))
    for split, start, n in (("train", 0, 4), ("val", 8, 2)):
        for c, name in enumerate(("alpha", "beta")):
            d = root / split / name
            d.mkdir(parents=True)
            for img in images[start + c * n:start + (c + 1) * n]:
                shutil.copy(img, d / img.name)
    (root / "unlabeled" / "any").mkdir(parents=True)
    for img in images[20:23]:
        shutil.copy(img, root / "unlabeled" / "any" / img.name)
    teacher = root / "teacher.onnx"
    assert main(["train", str(root / "train"), "--val", str(root / "val"), *V1_SMALL, "--epochs", "3", "--views", "2",
                 "-o", str(teacher)]) == 0
    return root, teacher


def test_distillation_reports_with_and_without_the_teacher(small_task, tmp_path, capsys):
    from mnetctl.evaluate import evaluate
    from mnetctl.meta import read_meta
    from mnetctl.modelio import load_onnx

    root, teacher = small_task
    capsys.readouterr()
    out = tmp_path / "student.onnx"
    cache = tmp_path / "cache"
    args = ["train", str(root / "train"), "--val", str(root / "val"), *V1_SMALL[:-1], "--epochs", "3", "--views", "2",
            "--teacher", str(teacher), "--unlabeled", str(root / "unlabeled"), "--temperature", "3", "--alpha", "0.4",
            "--cache", str(cache), "--json"]
    assert _run(*args, "-o", str(out)) == 0
    report = json.loads(capsys.readouterr().out)
    d = report["distillation"]
    assert d["unlabeled_images"] == 3 and d["temperature"] == 3 and d["alpha"] == 0.4
    assert d["distilled_val_accuracy"] == report["val_accuracy"]
    for k in ("labels_only_val_accuracy", "teacher_val_accuracy"):
        assert 0 <= d[k] <= 1
    # the teacher is the V1 trained on the same rows: its val accuracy is its own recorded one
    assert d["teacher_val_accuracy"] == pytest.approx(float(read_meta(load_onnx(teacher)).extra["train.val_accuracy"]))
    assert report["train_images"] == 8  # the unlabeled images are not counted as labelled training images
    assert evaluate(out, root / "val").top1 == pytest.approx(report["val_accuracy"], abs=1e-6)
    assert json.loads(read_meta(load_onnx(out)).extra["train.distill"])["unlabeled_images"] == 3
    # teacher outputs are cached by content like the features: a second run computes nothing, same bytes
    again = tmp_path / "again.onnx"
    assert _run(*args, "-o", str(again)) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["views_extracted"] == 0 and _sha(out) == _sha(again)
    # the human-readable line names both figures
    assert _run(*args[:-1], "-o", str(tmp_path / "c.onnx")) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "with the teacher vs" in text and "from the labels alone" in text


def test_bad_teacher_is_one_line_exit_2_nothing_written(small_task, pretrained_small, tmp_path, capsys):
    root, teacher = small_task
    other = tmp_path / "other"
    _classes(other, {"alpha": 2, "gamma": 2})
    not_model = tmp_path / "notes.onnx"
    not_model.write_text("not a model")
    out = tmp_path / "s.onnx"
    base = ["train", str(root / "train"), "--val", str(root / "val"), *V1_SMALL, "--epochs", "1", "--views", "1", "-o", str(out)]
    capsys.readouterr()
    other_teacher = tmp_path / "other.onnx"
    assert _run("train", str(other), *V1_SMALL, "--epochs", "1", "--views", "1", "-o", str(other_teacher)) == 0
    capsys.readouterr()
    assert "not the training classes" in _bad(capsys, *base, "--teacher", str(other_teacher))
    assert "no label names" in _bad(capsys, *base, "--teacher", str(pretrained_small))
    assert "--teacher" in _bad(capsys, *base, "--teacher", str(not_model))
    assert "--teacher" in _bad(capsys, *base, "--teacher", str(tmp_path / "missing.onnx"))
    assert "needs --teacher" in _bad(capsys, *base, "--unlabeled", str(root / "unlabeled"))
    assert "--alpha" in _bad(capsys, *base, "--teacher", str(teacher), "--alpha", "1.5")
    assert "--temperature" in _bad(capsys, *base, "--teacher", str(teacher), "--temperature", "0")
    assert not out.exists()


# ------------------------------------------------------------------------------------------ sweep --train-data


def test_sweep_trains_a_head_per_variant_and_caches_it(small_task, tmp_path):
    from mnetctl.evaluate import evaluate
    from mnetctl.sweep import SweepSettings, plan_variants, run_sweep

    root, _ = small_task
    variants, _ = plan_variants(["v1"], [0.25], [128], ["fp32", "int8"])
    settings = dict(train_data=root / "train", val_data=root / "val", iterations=5, max_seconds=0.0,
                    train_settings={"epochs": 3}, train_views=2)
    stages: list[tuple[str, str, bool]] = []
    first = run_sweep(variants, SweepSettings(**settings), cache_dir=tmp_path / "cache",
                      on_stage=lambda s, v, hit: stages.append((s, v.name, hit)))
    assert [(s, hit) for s, _, hit in stages if s == "train"] == [("train", False), ("train", True)]  # fp32 and int8 share it
    assert "build" not in {s for s, _, _ in stages}
    by = {r.precision: r for r in first.variants}
    assert by["fp32"].n_images == 4 and by["int8"].n_images == 4
    assert by["fp32"].top1 == pytest.approx(evaluate(by["fp32"].model, root / "val").top1)
    assert by["fp32"].train_val_accuracy is not None
    assert first.settings["train"]["names"] == ["alpha", "beta"] and first.settings["calib"] == str(root / "train")
    stages.clear()
    second = run_sweep(variants, SweepSettings(**settings), cache_dir=tmp_path / "cache",
                       on_stage=lambda s, v, hit: stages.append((s, v.name, hit)))
    assert all(hit for _, _, hit in stages)
    assert [r.top1 for r in second.variants] == [r.top1 for r in first.variants]


def test_sweep_train_data_bad_input(small_task, tmp_path, capsys):
    root, _ = small_task
    base = ["sweep", "--train-data", str(root / "train"), "--arch", "v1", "--widths", "0.25", "--resolutions", "128",
            "-o", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert "pretrained" in _bad(capsys, *base, "--val-data", str(root / "val"), "--weights", "random")
    assert "--val-data" in _bad(capsys, *base)
    lacking = _classes(tmp_path / "val1", {"alpha": 1})
    (lacking / "gamma").mkdir()
    shutil.copy(next(VAL.rglob("*.JPEG")), lacking / "gamma" / "x.jpg")
    assert "--val-data" in _bad(capsys, *base, "--val-data", str(lacking))
    assert not (tmp_path / "out").exists()
