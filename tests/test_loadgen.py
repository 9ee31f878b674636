"""`mnetctl bench --scenario`: MLPerf LoadGen runs on real models and the shipped images, LoadGen's logs parsed."""

from __future__ import annotations

import json
import sys

import pytest

from mnetctl.cli import main
from mnetctl.data import default_val_dir, find_samples
from mnetctl.errors import EnvironmentMissing
from mnetctl.loadgen import KEPT_FILES, parse_summary, read_accuracy_log, run_loadgen


def test_single_stream_short_run_cli(tiny_model, tmp_path, capsys):
    out, js = tmp_path / "mlperf", tmp_path / "lg.json"
    rc = main(["bench", str(tiny_model), "--scenario", "single-stream", "--min-duration", "500ms", "--min-queries", "64",
               "--limit", "16", "--threads", "1", "--out", str(out), "--json", str(js)])
    assert rc == 0
    r = json.loads(js.read_text())
    assert r["scenario"] == "single-stream" and r["mode"] == "performance" and r["samples"] == 16
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        assert (out / name).stat().st_size > 0 and r["files"][name] == str(out / name)
    summary = parse_summary((out / "mlperf_log_summary.txt").read_text())
    assert summary["fields"]["Scenario"] == "SingleStream" and summary["fields"]["Mode"] == "PerformanceOnly"
    # the figures are LoadGen's own: the reported p90 is the summary's 90th-percentile line
    assert r["p90_ms"] == pytest.approx(float(summary["fields"]["90.0th percentile latency (ns)"]) / 1e6)
    assert 0 < r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["p90_ms"] <= r["latency_ms"]["max"]
    assert "p90" in r["early_stopping_ms"] and r["early_stopping_ms"]["p90"] >= r["p90_ms"]
    # each query's latency holds the SUT's own time for it, so the SUT's percentiles sit below LoadGen's
    assert 0 < r["sut_ms"]["p50"] <= r["latency_ms"]["p90"] and r["sut_ms"]["p90"] <= r["latency_ms"]["p95"]
    assert r["settings"]["min_duration_ms"] == 500 and r["settings"]["rules_min_duration_ms"] >= 600_000
    # LoadGen judged the shortened settings; the report says plainly that MLPerf's rules are not met
    assert r["result"] in ("VALID", "INVALID") and r["mlperf_valid"] is False and r["settings"]["shortened"]
    assert any("not valid under MLPerf's rules" in n for n in r["notes"])


def test_single_stream_text_says_not_valid(tiny_model, tmp_path, capsys):
    rc = main(["bench", str(tiny_model), "--scenario", "single-stream", "--min-duration", "200ms", "--min-queries", "20",
               "--limit", "8", "--out", str(tmp_path), "-q"])
    assert rc == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "90th percentile latency" in text and "not valid under MLPerf's rules" in text


def test_offline_reports_samples_per_s(tiny_model, tmp_path):
    r = run_loadgen(tiny_model, "offline", batch=4, limit=16, min_duration="500ms", min_queries=64, out_dir=tmp_path,
                    threads=1)
    summary = parse_summary((tmp_path / "mlperf_log_summary.txt").read_text())
    assert r.samples_per_s == pytest.approx(float(summary["fields"]["Samples per second"])) and r.samples_per_s > 0
    assert r.batch == 4 and r.p90_ms is None and r.mlperf_valid is False


def test_accuracy_mode_top1_equals_eval(pretrained_small, tmp_path):
    from mnetctl.evaluate import evaluate

    samples = find_samples(default_val_dir(), 20)
    r = run_loadgen(pretrained_small, "single-stream", "accuracy", limit=20, out_dir=tmp_path)
    e = evaluate(pretrained_small, samples)
    assert r.scored == e.n == 20
    assert r.top1 == e.top1 and r.correct1 == e.correct1 > 0
    # image by image, from LoadGen's accuracy log (what the SUT wrote as responses)
    logged = read_accuracy_log(tmp_path / "mlperf_log_accuracy.json")
    assert [logged[i] for i in range(20)] == r.predictions == e.predictions
    assert r.paths == e.paths
    assert (tmp_path / KEPT_FILES[2]).exists() and r.result is None


def test_missing_loadgen_exits_3(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # `import mlperf_loadgen` raises ImportError
    with pytest.raises(EnvironmentMissing):
        run_loadgen(tiny_model, out_dir=tmp_path)
    assert main(["bench", str(tiny_model), "--scenario", "offline", "--out", str(tmp_path)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "pip install 'mnetctl[mlperf]'" in err
    assert not (tmp_path / "mlperf_log_summary.txt").exists()


@pytest.mark.parametrize("args, word", [
    (["--out", "x"], "--out applies to LoadGen runs"),
    (["--min-duration", "1s"], "--min-duration applies to LoadGen runs"),
    (["--scenario", "server"], "--scenario 'server' is not one of"),
    (["--scenario", "offline", "--mlperf-mode", "both"], "--mlperf-mode 'both'"),
    (["--scenario", "offline", "-n", "10"], "--iterations does not apply"),
    (["--scenario", "single-stream", "-b", "4"], "does not apply to single-stream"),
    (["--scenario", "offline", "--min-duration", "soon"], "--min-duration 'soon' is not a duration"),
    (["--scenario", "offline", "--limit", "0"], "--limit must be between 1 and"),
])
def test_bad_loadgen_flags_exit_2(tiny_model, tmp_path, capsys, args, word):
    assert main(["bench", str(tiny_model), *args]) == 2
    assert word in " ".join(capsys.readouterr().err.split())
