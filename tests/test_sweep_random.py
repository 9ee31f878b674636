"""A random-weight sweep measures latency and size only: no eval stage, no accuracy, a size/latency frontier."""

from __future__ import annotations

import json

from mnetctl.cli import main
from mnetctl.sweep import pareto_flags

ARGS = ["sweep", "--arch", "v1,v4-conv-s", "--widths", "0.25", "--resolutions", "96", "--precisions", "fp32",
        "--weights", "random", "--iterations", "5", "--max-seconds", "5"]


def test_random_weight_sweep_is_latency_and_size_only(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main(ARGS + ["--out", str(out), "--cache", str(cache)]) == 0
    variants = json.loads((out / "sweep.json").read_text())["variants"]
    assert [v["name"] for v in variants] == ["v1-0.25-96-fp32", "v4-conv-s-0.25-96-fp32"]
    for v in variants:
        assert v["top1"] is None and v["top5"] is None and v["n_images"] == 0
        assert "eval" not in v["cached"] and v["p50_ms"] > 0 and v["weights"] == "random"
    assert [v["pareto"] for v in variants] == pareto_flags([(-v["size_mb"], v["p50_ms"]) for v in variants])
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "latency and size only" in report and "v4-conv-s 0.25 96" in report


def test_random_weight_select_takes_the_most_macs_within_the_budget(tmp_path):
    out = tmp_path / "o"
    assert main(ARGS + ["--out", str(out), "--cache", str(tmp_path / "c"), "--select", "--budget-ms", "100000"]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["selected"] == max(doc["variants"], key=lambda v: v["macs"])["name"]
