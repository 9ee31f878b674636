"""`sweep --select` with the budget from a device profile: judged on the profile's statistic, not on --metric."""

from __future__ import annotations

import json

from mnetctl.cli import main

ARGS = ["sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "128", "--precisions", "fp32", "--weights", "random",
        "--limit", "10", "--iterations", "5"]

PROFILE = """
name = "p90-board"
description = "a board whose latency budget is on p90"
[[eps]]
name = "cpu"
[budgets]
latency_ms = {budget}
percentile = "p90"
"""


def test_select_uses_the_profiles_p90_budget(tmp_path, capsys):
    prof, cache = tmp_path / "p90-board.toml", tmp_path / "cache"
    prof.write_text(PROFILE.format(budget=10_000.0))
    first = tmp_path / "first"
    assert main(ARGS + ["--device", str(prof), "--out", str(first), "--cache", str(cache), "--select"]) == 0
    doc = json.loads((first / "sweep.json").read_text())
    assert doc["budget_ms"] == 10_000.0 and doc["budget_metric"] == "p90" and doc["selected"] == "v1-0.25-128-fp32"
    assert "(p90)" in (first / "report.md").read_text()
    (variant,) = doc["variants"]
    p50, p90 = variant["latency_ms"]["p50"], variant["latency_ms"]["p90"]
    assert p50 < p90, "five runs with identical p50 and p90: no budget separates them"
    # A budget between p50 and p90 (the bench stage is cached, so the latencies stay the same): p90 does not fit.
    prof.write_text(PROFILE.format(budget=(p50 + p90) / 2))
    second = tmp_path / "second"
    capsys.readouterr()
    assert main(ARGS + ["--device", str(prof), "--out", str(second), "--cache", str(cache), "--select"]) == 1
    err = capsys.readouterr().err
    assert "no variant fits the budget" in err and "ms (p90)" in err
    doc = json.loads((second / "sweep.json").read_text())
    assert all(v["cached"]["bench"] for v in doc["variants"]) and doc["selected"] is None and doc["budget_metric"] == "p90"
    assert not (second / "selected.onnx").exists()
