"""`mnetctl bench A.onnx B.onnx`: several models timed interleaved, each against the first; and the interleave module."""

from __future__ import annotations

import json
import math
import time

import pytest

from mnetctl.cli import main
from mnetctl.interleave import Runnable, interleave


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from mnetctl.builder import build_model, save_model

    folder = tmp_path_factory.mktemp("many")
    a, b = folder / "a-v1-0.25-128.onnx", folder / "b-v1-0.25-160.onnx"
    save_model(build_model("v1", 0.25, 128), a)
    save_model(build_model("v1", 0.25, 160), b)
    return a, b


def test_two_models_json(two_models, capsys):
    a, b = two_models
    rc = main(["bench", str(a), str(b), "-n", "12", "--warmup", "1", "-t", "1", "--json", "-"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "mnetctl.bench-many/1" and doc["threads"] == 1
    assert {"host", "onnxruntime", "rounds", "runs_per_block", "other_load", "models"} <= set(doc)
    first, second = doc["models"]
    assert first["model"] == str(a) and second["model"] == str(b)
    for m in doc["models"]:
        assert {"name", "model", "runs", "p50_ms", "p90_ms", "mean_ms", "min_ms", "p50_ci95_ms",
                "ratio_p50", "ratio_mean", "ratio_p50_paired"} <= set(m)
        assert m["runs"] >= 12 and 0 < m["min_ms"] <= m["p50_ms"] <= m["max_ms"]
        lo, hi = m["p50_ci95_ms"]
        assert lo <= m["p50_ms"] <= hi
    assert first["ratio_p50"] == 1.0 and first["ratio_mean"] == 1.0
    assert math.isfinite(second["ratio_p50"]) and second["ratio_p50"] > 0
    assert second["ratio_p50"] == pytest.approx(second["p50_ms"] / first["p50_ms"], rel=1e-2)


def test_two_models_table_and_file(two_models, tmp_path, capsys):
    a, b = two_models
    out = tmp_path / "many.json"
    assert main(["bench", str(a), str(b), "-n", "4", "--warmup", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "x p50" in text and "ratio to" in text and "1.000" in text
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == [a.name, b.name]


def test_single_model_options_refused(two_models, capsys):
    a, b = two_models
    assert main(["bench", str(a), str(b), "--budget-ms", "5"]) == 2
    assert "--budget-ms applies to one model" in capsys.readouterr().err
    assert main(["bench", str(a), str(a.parent / "missing.onnx")]) == 2
    assert "missing.onnx" in capsys.readouterr().err


def test_interleave_rotates_and_counts():
    order: list[str] = []

    def runner(name, delay):
        def fn(x):
            order.append(name)
            time.sleep(delay)
        return Runnable(name, fn, [0, 1])

    res = interleave([runner("a", 0.001), runner("b", 0.002)], rounds=4, runs=2, block_warmup=1, warmup=1)
    assert order[:2] == ["a", "b"]  # the up-front warm-up
    blocks = order[2:]
    assert blocks[:6] == ["a"] * 3 + ["b"] * 3 and blocks[6:12] == ["b"] * 3 + ["a"] * 3  # order alternates
    assert len(res.samples("a")) == len(res.samples("b")) == 8 and len(res.round_load) == 4
    assert res.ratio("a") == 1.0 and res.ratio("b") > 1.2 and res.paired_ratio("b") > 1.2
    assert res.as_dict()["models"][1]["ratio_p50"] == round(res.ratio("b"), 4)


def test_many_models_bound_their_counts(tiny_model, capsys):
    assert main(["bench", str(tiny_model), str(tiny_model), "-n", "1000000000000"]) == 2
    err = capsys.readouterr().err
    assert "--iterations must be at most" in err and "Traceback" not in err
