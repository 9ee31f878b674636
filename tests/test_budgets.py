"""Gates decided once: the Gates object, check_budgets on any measurement, the metric vocabulary, the memory guard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from mnetctl import memguard
from mnetctl.budgets import Gates, check_budgets
from mnetctl.cli import main
from mnetctl.errors import BadInput
from mnetctl.metrics import ALL_METRICS, SWEEP_METRICS, Metric, parse_metric


@dataclass
class FakeMeasurement:
    """Just what the gates read; no model, no session."""

    latency_ms: dict = field(default_factory=lambda: {"min": 1.0, "mean": 2.0, "p50": 2.0, "p90": 3.0, "p95": 3.5, "p99": 4.0, "max": 5.0})
    top1: float | None = None
    model: dict = field(default_factory=lambda: {"opset": 17, "ir_version": 8})
    simulated: bool = False
    providers: list = field(default_factory=lambda: ["CPUExecutionProvider"])
    model_size_mb: float = 2.0


# ---- the metric vocabulary


def test_one_metric_enum_everywhere():
    from mnetctl import profiles, sweep

    assert [m.value for m in ALL_METRICS] == ["min", "mean", "p50", "p90", "p95", "p99", "max"]
    assert tuple(profiles.PERCENTILES) == ALL_METRICS and tuple(sweep.METRICS) == SWEEP_METRICS
    assert Metric.MIN not in SWEEP_METRICS and Metric.MAX not in SWEEP_METRICS
    assert isinstance(profiles.load_profile("host").budgets.percentile, Metric)
    assert f"{Metric.P90}" == "p90" and json.dumps({"m": Metric.P90}) == '{"m": "p90"}'
    assert {"p90": 3.0}[Metric.P90] == 3.0  # a latency dict is indexed by the enum


def test_parse_metric_names_the_parameter():
    assert parse_metric(" P95 ") is Metric.P95 and parse_metric(Metric.MEAN) is Metric.MEAN
    with pytest.raises(BadInput, match=r"^regression_metric must be one of min, mean, p50, p90, p95, p99, max, got 'p42'$"):
        parse_metric("p42", "regression_metric")
    with pytest.raises(BadInput, match=r"^--metric must be one of p50, p90, p95, p99, mean, got 'max'$"):
        parse_metric("max", "--metric", SWEEP_METRICS)


# ---- Gates and check_budgets


def test_gates_checked_normalises_once_and_is_idempotent(tmp_path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"latency_ms": {"p50": 2.0}}))
    g = Gates(metric="p99", min_top1=70, top1=71.2, baseline=base, tolerance="5%", regression_metric="P50").checked()
    assert g.metric is Metric.P99 and g.regression_metric is Metric.P50
    assert g.min_top1 == pytest.approx(0.70) and g.top1 == pytest.approx(0.712)
    assert g.tolerance == pytest.approx(0.05) and g.baseline == {"latency_ms": {"p50": 2.0}}
    assert g.checked() == g
    assert Gates().checked().tolerance == pytest.approx(0.10)


@pytest.mark.parametrize("gates,start", [
    (Gates(latency_ms=0), "latency_ms must be > 0"),
    (Gates(size_mb=-1), "size_mb must be > 0"),
    (Gates(metric="p42"), "metric must be one of"),
    (Gates(regression_metric="p42"), "regression_metric must be one of"),
    (Gates(tolerance="lots"), "tolerance 'lots' is not a number"),
    (Gates(top1=-0.5), "top1 must be a fraction"),
    (Gates(baseline="/nonexistent/base.json"), "baseline /nonexistent/base.json does not exist"),
])
def test_bad_gates_name_the_field_not_a_flag(gates, start):
    with pytest.raises(BadInput) as err:
        gates.checked()
    assert err.value.message.startswith(start), err.value.message


def test_check_budgets_reads_any_measurement():
    m = FakeMeasurement(top1=0.72)
    checks = check_budgets(m, "host", Gates(min_top1=0.7))  # host: 100 ms on p90, 50 MB
    assert [(c.name, c.metric, c.status) for c in checks] == [("latency", "p90", "pass"), ("size", "size_mb", "pass"),
                                                             ("top1", "top1", "pass")]
    assert checks[0].actual == 3.0
    # The override's metric wins over the profile's percentile; the measured top-1 in Gates wins over the figure.
    checks = check_budgets(m, "host", Gates(latency_ms=2.5, metric="p50", min_top1=0.7, top1=0.6))
    assert [(c.name, c.metric, c.status) for c in checks] == [("latency", "p50", "pass"), ("size", "size_mb", "pass"),
                                                             ("top1", "top1", "fail")]
    assert checks[0].as_dict()["metric"] == "p50"
    # Simulated accelerators are not judged on latency; the regression line says where the baseline ran.
    sim = FakeMeasurement(simulated=True)
    base = {"latency_ms": {"p90": 1.0}, "providers": ["OpenVINOExecutionProvider"]}
    lat, reg = check_budgets(sim, None, Gates(latency_ms=1.0, baseline=base, regression_metric="p90"))
    assert lat.status == "skip" and reg.status == "skip" and "baseline ran on OpenVINOExecutionProvider" in reg.message
    with pytest.raises(BadInput, match="baseline: key 'latency_ms.p99'"):
        check_budgets(m, None, Gates(baseline={"latency_ms": {}}, regression_metric="p99"))


# ---- bench decides the gates in one pass


def test_bench_decides_gates_once(tiny_model, monkeypatch):
    import mnetctl.bench as bench_mod

    calls = []
    real = bench_mod.check_budgets
    monkeypatch.setattr(bench_mod, "check_budgets", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = bench_mod.bench(tiny_model, iterations=3, warmup=0, threads=1, gates=Gates(min_top1=70, top1=71.2, latency_ms=1e6, metric="p99"))
    assert len(calls) == 1
    assert r.top1 == pytest.approx(0.712) and r.as_dict()["top1"] == pytest.approx(0.712)
    assert [(c.name, c.metric, c.status) for c in r.checks] == [("latency", "p99", "pass"), ("top1", "top1", "pass")]


def test_bad_gates_fail_before_any_session(tiny_model, monkeypatch):
    import mnetctl.runtime as runtime

    def no_session(*args, **kwargs):
        raise AssertionError("a session was created before the gates were checked")

    monkeypatch.setattr(runtime, "create_session", no_session)
    from mnetctl.bench import bench

    with pytest.raises(BadInput, match="^regression_metric must be one of"):
        bench(tiny_model, iterations=2, gates=Gates(regression_metric="p42"))


def test_cli_top1_and_min_top1_in_one_pass(tiny_model, tmp_path, monkeypatch):
    import mnetctl.bench as bench_mod

    calls = []
    real = bench_mod.check_budgets
    monkeypatch.setattr(bench_mod, "check_budgets", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = tmp_path / "r.json"
    rc = main(["bench", str(tiny_model), "-n", "3", "--warmup", "0", "--min-top1", "70", "--top1", "71.2", "--json", str(out), "-q"])
    assert rc == 0 and len(calls) == 1
    doc = json.loads(out.read_text())
    assert doc["top1"] == pytest.approx(0.712) and doc["passed"] is True
    assert [(c["name"], c["status"], c["limit"]) for c in doc["checks"]] == [("top1", "pass", pytest.approx(0.70))]
    assert main(["bench", str(tiny_model), "-n", "3", "--warmup", "0", "--min-top1", "0.8", "--top1", "0.75", "--json", str(out), "-q"]) == 1
    doc = json.loads(out.read_text())
    assert doc["top1"] == pytest.approx(0.75) and [c["status"] for c in doc["checks"]] == ["fail"]


@pytest.mark.parametrize("args,start", [
    (["--budget-ms", "0"], "--budget-ms must be > 0"),
    (["--budget-size-mb", "-1"], "--budget-size-mb must be > 0"),
    (["--regression-metric", "p42"], "--regression-metric must be one of"),
    (["--tolerance", "lots"], "--tolerance 'lots' is not a number"),
    (["--warmup", "-1"], "--warmup must be >= 0"),
    (["--duration", "soon"], "--duration 'soon' is not a duration"),
])
def test_cli_maps_parameters_to_flags(tiny_model, capsys, args, start):
    assert main(["bench", str(tiny_model), "-n", "2", *args]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].removeprefix("error:").strip().startswith(start), errors


# ---- progress through a callback, throttled


def test_timed_runs_reports_progress_sparingly():
    from mnetctl.bench import REPORT_EVERY_NS, timed_runs

    calls = []
    samples, wall = timed_runs(lambda _: None, None, 50_000, None, on_progress=lambda *a: calls.append(a), label="x")
    assert len(samples) == 50_000 and calls[-1] == (50_000, 50_000, "x")
    assert len(calls) <= wall / REPORT_EVERY_NS + 2  # at most one report per interval, plus the last
    assert all(t == 50_000 for _, t, _ in calls)
    calls.clear()
    samples, _ = timed_runs(lambda _: None, None, None, 0.05, on_progress=lambda *a: calls.append(a), label="y")
    assert calls[-1] == (len(samples), len(samples), "y") and all(t is None for _, t, _ in calls[:-1])
    assert len(calls) >= 3  # 50 ms at one report per 5 ms


def test_bench_passes_progress_to_the_callback(tiny_model):
    from mnetctl.bench import bench

    seen = []
    bench(tiny_model, iterations=7, warmup=0, threads=1, on_progress=lambda *a: seen.append(a))
    assert seen[-1] == (7, 7, f"bench {tiny_model.name}")


# ---- one batch-memory guard


def test_memguard_estimate_and_refusal(monkeypatch):
    assert memguard.shape_elements([1, 3, 128, 128]) == 3 * 128 * 128
    assert memguard.shape_elements(["N", 3, "H", "W"], default_dim=96) == 3 * 96 * 96
    elems = 3 * 224 * 224
    assert memguard.image_bytes(elems) == elems * 4 * (memguard.ACTIVATION_FACTOR + 1)
    assert memguard.image_bytes(elems, elems) == elems * 4 * memguard.ACTIVATION_FACTOR + elems  # uint8 input
    monkeypatch.setattr(memguard, "available_memory", lambda: 10 * 2**30)
    memguard.check_batch_memory(8, 2**20)  # 8 MiB of 10 GiB: fine
    with pytest.raises(BadInput) as err:
        memguard.check_batch_memory(100, 2**30, detail=" at resolution 224")
    assert err.value.message == "batch 100 needs about 100.0 GiB at resolution 224, but only 10.0 GiB is free"
    assert err.value.hint == "lower batch (at most ~8 fits)"
