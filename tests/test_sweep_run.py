"""`mnetctl sweep` end to end on small real variants: outputs, Pareto flags, cache reuse, --select."""

from __future__ import annotations

import json

import pytest

from mnetctl.cli import main
from mnetctl.sweep import pareto_flags

ARGS = ["sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "96,128", "--precisions", "fp32",
        "--limit", "12", "--iterations", "10"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    out, cache = root / "out", root / "cache"
    assert main(ARGS + ["--out", str(out), "--cache", str(cache)]) == 0
    return root, out, cache


def test_outputs_and_pareto_flags(first_run):
    _, out, _ = first_run
    doc = json.loads((out / "sweep.json").read_text())
    variants = doc["variants"]
    assert [v["name"] for v in variants] == ["v1-0.25-96-fp32", "v1-0.25-128-fp32"]
    for v in variants:
        for key in ("arch", "width", "resolution", "precision", "macs", "params", "size_mb", "top1", "top5",
                    "p50_ms", "p90_ms", "pareto"):
            assert key in v
        assert v["n_images"] == 12 and 0 <= v["top1"] <= 1 and v["p50_ms"] > 0
        assert v["providers"] == ["CPUExecutionProvider"]
    assert variants[0]["macs"] < variants[1]["macs"]
    expected = pareto_flags([(v["top1"], v["p50_ms"]) for v in variants])
    assert [v["pareto"] for v in variants] == expected
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "pareto.png" in report and "v1 0.25 128" in report


def test_second_run_reuses_the_cache(first_run):
    root, out, cache = first_run
    out2 = root / "out2"
    assert main(ARGS + ["--out", str(out2), "--cache", str(cache)]) == 0
    a = json.loads((out / "sweep.json").read_text())["variants"]
    b = json.loads((out2 / "sweep.json").read_text())["variants"]
    assert all(all(v["cached"].values()) for v in b)
    assert not any(any(v["cached"].values()) for v in a)
    assert [(v["top1"], v["p50_ms"]) for v in a] == [(v["top1"], v["p50_ms"]) for v in b]


def test_select_obeys_budget(first_run, capsys):
    root, out, cache = first_run
    sel = root / "sel"
    assert main(ARGS + ["--out", str(sel), "--cache", str(cache), "--select", "--budget-ms", "1000", "--metric", "p90"]) == 0
    doc = json.loads((sel / "sweep.json").read_text())
    chosen = next(v for v in doc["variants"] if v["name"] == doc["selected"])
    fitting = [v for v in doc["variants"] if v["p90_ms"] <= 1000]
    assert chosen["top1"] == max(v["top1"] for v in fitting) and chosen["p90_ms"] <= 1000
    assert (sel / "selected.onnx").stat().st_size > 0
    none = root / "none"
    assert main(ARGS + ["--out", str(none), "--cache", str(cache), "--select", "--budget-ms", "0.000001"]) == 1
    assert "no variant fits" in capsys.readouterr().err
    assert not (none / "selected.onnx").exists()


@pytest.mark.parametrize("extra,needle", [
    (["--precisions", "fp16"], "precision"),
    (["--metric", "p42"], "--metric"),
    (["--limit", "0"], "--limit"),
    (["--arch", "v3-large"], "empty"),
    (["--max-load", "-1"], "--max-load"),
    (["--max-seconds", "-0.5"], "--max-seconds"),
])
def test_bad_sweep_arguments(tmp_path, capsys, extra, needle):
    args = ["sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "96", "--out", str(tmp_path / "o"),
            "--cache", str(tmp_path / "c")] + extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o" / "sweep.json").exists()


def test_an_earlier_selection_does_not_outlive_its_sweep(first_run):
    root, _, cache = first_run
    out = root / "stale"
    assert main(ARGS + ["--out", str(out), "--cache", str(cache), "--select", "--budget-ms", "100000"]) == 0
    assert (out / "selected.onnx").is_file()
    assert main(ARGS + ["--out", str(out), "--cache", str(cache)]) == 0
    assert not (out / "selected.onnx").exists() and json.loads((out / "sweep.json").read_text())["selected"] is None
