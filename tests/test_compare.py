"""`mnetctl compare`: real LiteRT on a shipped checkpoint against mnetctl's import of it under ONNX Runtime."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from mnetctl.cli import main

from .conftest import PRETRAINED, VAL

TFLITE = PRETRAINED / "coral" / "mobilenet_v1_0.25_128_quant.tflite"


@pytest.fixture(scope="module")
def litert():
    return pytest.importorskip("ai_edge_litert.interpreter")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """V1 0.25 at 128 px with the weights of the shipped uint8 checkpoint (float ONNX)."""
    from mnetctl.builder import build_model, save_model

    path = tmp_path_factory.mktemp("compare") / "v1-0.25-128.onnx"
    save_model(build_model("v1", 0.25, 128, weights="pretrained"), path)
    return path


@pytest.fixture(scope="module")
def result(imported, litert):
    from mnetctl.compare import compare

    return compare(imported, TFLITE, threads=2, iterations=12, warmup=2, data=VAL, limit=8)


def test_both_sides_timed_and_interleaved(result):
    assert result.onnx.latency.runs == 12 and result.litert.latency.runs == 12
    for side in (result.onnx, result.litert):
        lat = side.latency
        assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.max_ms
        assert lat.min_ms <= lat.mean_ms <= lat.max_ms
    assert result.ratio_p50 == pytest.approx(result.onnx.latency.p50_ms / result.litert.latency.p50_ms)
    assert result.ratio_p50 > 0


def test_same_images_and_agreement(result):
    assert result.images == result.labelled == 8
    assert len(result.onnx.predictions) == len(result.litert.predictions) == 8
    agree = sum(a == b for a, b in zip(result.onnx.predictions, result.litert.predictions))
    assert result.agree == agree
    assert result.agreement == pytest.approx(agree / 8)
    # the float import of a checkpoint and the checkpoint itself, fed the same crop, mostly agree
    assert result.agree >= 6
    # predictions are ImageNet indices 0..999 on both sides (the background logit dropped)
    assert all(0 <= p < 1000 for p in result.onnx.predictions + result.litert.predictions)


def test_top1_counts_against_labels(result):
    from mnetctl.data import find_samples

    labels = [s.label for s in find_samples(VAL, limit=8)]
    assert result.onnx.correct == sum(p == y for p, y in zip(result.onnx.predictions, labels))
    assert result.litert.correct == sum(p == y for p, y in zip(result.litert.predictions, labels))


def test_cli_json_keys(imported, litert, capsys):
    rc = main(["compare", str(imported), "--tflite", str(TFLITE), "--iterations", "6", "--warmup", "1",
               "--limit", "4", "--data", str(VAL), "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"host", "threads", "iterations", "images", "onnx", "litert", "ratio_p50", "ratio_mean",
            "agreement", "agree", "labelled", "other_load"} <= set(doc)
    for side in ("onnx", "litert"):
        assert {"p50_ms", "p90_ms", "mean_ms", "top1", "runtime", "model"} <= set(doc[side])
    assert doc["threads"] == 2 and doc["images"] == 4 and doc["onnx"]["runs"] == 6
    assert doc["ratio_p50"] > 0 and 0.0 <= doc["agreement"] <= 1.0
    assert doc["ratio_p50"] == pytest.approx(doc["onnx"]["p50_ms"] / doc["litert"]["p50_ms"], rel=1e-2)


def test_cli_table(imported, litert, capsys):
    rc = main(["compare", str(imported), "--tflite", str(TFLITE), "-n", "4", "--warmup", "0", "-l", "2",
               "--data", str(VAL)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "onnx/litert p50 ratio" in out and "top-1 agreement" in out


def test_missing_litert_exits_3(imported, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    rc = main(["compare", str(imported), "--tflite", str(TFLITE), "-l", "1", "-n", "1"])
    assert rc == 3
    err = capsys.readouterr().err
    assert "ai-edge-litert" in err and "pip install 'mnetctl[litert]'" in err


@pytest.mark.parametrize("bad", ["missing.tflite", "empty.tflite", "junk.tflite"])
def test_bad_tflite_exits_2(imported, litert, tmp_path, capsys, bad):
    path = tmp_path / bad
    if bad == "empty.tflite":
        path.write_bytes(b"")
    elif bad == "junk.tflite":
        path.write_bytes(b"this is not a flatbuffer" * 10)
    rc = main(["compare", str(imported), "--tflite", str(path), "-l", "1", "-n", "1"])
    assert rc == 2
    assert str(path.name) in capsys.readouterr().err


def test_bad_numbers_exit_2(imported, capsys):
    assert main(["compare", str(imported), "--tflite", str(TFLITE), "--iterations", "0"]) == 2
    assert "--iterations" in capsys.readouterr().err


def test_int8_input_is_quantised_with_its_parameters():
    """An int8-input checkpoint gets round(x / scale + zero_point) of the normalised crop."""
    from mnetctl.litert import LiteRTRunner

    runner = LiteRTRunner.__new__(LiteRTRunner)
    runner.input_dtype = np.dtype(np.int8)
    runner.input_quant = (1.0 / 128.0, -1)
    runner.path = "x.tflite"
    crop = np.array([[[0, 128, 255]]], np.uint8)
    x = runner.prepare(crop, lambda c: (c.astype(np.float32) - 127.5) / 127.5)
    assert x.dtype == np.int8 and x.shape == (1, 1, 1, 3)
    expected = np.clip(np.round(((crop - 127.5) / 127.5) * 128.0 - 1), -128, 127)
    assert np.array_equal(x[0], expected.astype(np.int8))
    runner.input_dtype = np.dtype(np.uint8)
    assert np.array_equal(runner.prepare(crop, lambda c: 1 / 0)[0], crop)  # uint8: the crop's own pixels


V1_FILES = [PRETRAINED / "coral" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
            PRETRAINED / "coral" / "mobilenet_quant_v1_224_head_layers.tflite"]


@pytest.fixture(scope="module")
def v1_full(tmp_path_factory):
    """V1 1.0 at 224 px with the weights of the shipped two-file checkpoint (extractor + head)."""
    from mnetctl.builder import build_model, save_model

    path = tmp_path_factory.mktemp("compare") / "v1-1.0-224.onnx"
    save_model(build_model("v1", 1.0, 224, weights="pretrained"), path)
    return path


def test_multi_file_checkpoint(v1_full, litert, capsys):
    """--tflite twice chains the feature extractor and the classifier head; 'pretrained' finds the same two files."""
    rc = main(["compare", str(v1_full), "--tflite", str(V1_FILES[0]), "--tflite", str(V1_FILES[1]),
               "-n", "4", "--warmup", "1", "-l", "6", "--data", str(VAL), "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["litert"]["model"] == " + ".join(str(f) for f in V1_FILES)
    assert doc["images"] == 6 and doc["agree"] >= 5 and doc["litert"]["runs"] == 4
    assert doc["litert"]["top1"] is not None and doc["ratio_p50"] > 0

    from mnetctl.compare import compare

    res = compare(v1_full, "pretrained", iterations=2, warmup=0, data=VAL, limit=2)
    assert res.litert.model == doc["litert"]["model"]
    assert len(res.litert.predictions) == 2 and res.agree >= 1


def test_chained_files_must_fit(imported, litert, capsys):
    """A head that does not take the first file's output is refused, naming both files."""
    rc = main(["compare", str(imported), "--tflite", str(TFLITE), "--tflite", str(V1_FILES[1]), "-l", "1", "-n", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--tflite" in err and V1_FILES[1].name in err
