"""Interleaved sweep timing: load-limited rounds (fake meter and clock), ties from intervals, sweep.json and report
fields on a tiny real sweep. No timing is asserted."""

from __future__ import annotations

import json

import pytest

from mnetctl.interleave import Runnable, interleave_quiet
from mnetctl.sweep import SweepResult, VariantResult, mark_ties, markdown_report, pareto_flags


class FakeMeters:
    """Meters whose load follows a script per window (one window = one round with min_window_s=0): a window makes
    one meter for itself, then one per runnable's block."""

    def __init__(self, loads, per_window):
        self.loads, self.per_window, self.made = list(loads), per_window, 0

    def __call__(self):
        window = self.made // self.per_window
        self.made += 1
        load = self.loads[min(window, len(self.loads) - 1)]
        return type("M", (), {"other_load": staticmethod(lambda: load)})()


def _clock():
    t = {"now": -1.0}

    def clock():
        t["now"] += 1.0
        return t["now"]

    return clock


def _runnables(calls):
    return [Runnable(n, lambda x, n=n: calls.append(n)) for n in ("a", "b", "c")]


def _quiet(loads, rounds=4, max_seconds=100.0, calls=None):
    calls = [] if calls is None else calls
    return interleave_quiet(_runnables(calls), rounds=rounds, runs=2, max_load=0.2, max_seconds=max_seconds,
                            meter=FakeMeters(loads, 4), clock=_clock(), min_window_s=0)


def test_quiet_rounds_are_all_kept():
    calls = []
    t = _quiet([0.05], calls=calls)
    assert len(t.rounds) == 4 and t.retaken_rounds == 0 and t.loaded_rounds == 0
    assert t.other_load == pytest.approx(0.05) and t.model_load == {"a": 0.05, "b": 0.05, "c": 0.05}
    assert [calls[6 * k] for k in range(4)] == ["a", "b", "c", "a"]  # the order rotates round by round
    assert all(len(r[n]) == 2 for r in t.rounds for n in "abc")


def test_loaded_rounds_are_taken_again():
    t = _quiet([0.9, 0.5, 0.1])
    assert t.retaken_rounds == 2 and t.loaded_rounds == 0 and len(t.rounds) == 4
    assert t.round_load == [0.1] * 4


def test_after_the_cap_loaded_rounds_are_kept_and_counted():
    t = _quiet([0.9], max_seconds=2.5)  # the fake clock passes 2.5 s at its third reading after the start
    assert t.retaken_rounds == 2 and t.loaded_rounds == 4 and len(t.rounds) == 4
    assert t.other_load == pytest.approx(0.9)
    assert t.as_dict()["loaded_rounds"] == 4 and t.as_dict()["max_load"] == 0.2


def test_no_cap_means_no_retake_and_unreadable_load_is_kept():
    t = _quiet([0.9], max_seconds=0)
    assert t.retaken_rounds == 0 and t.loaded_rounds == 4
    t = _quiet([None])
    assert t.retaken_rounds == 0 and t.loaded_rounds == 0 and t.other_load is None and t.model_load["a"] is None


@pytest.mark.parametrize("kw", [{"max_load": -1}, {"max_seconds": -0.5}, {"rounds": 0}])
def test_bad_limits(kw):
    args = {"rounds": 2, **kw}
    with pytest.raises(ValueError):
        interleave_quiet(_runnables([]), **args)


def _result(width, p50, ci, precision="fp32"):
    return VariantResult(arch="v1", width=width, resolution=128, precision=precision, weights="random", macs=1,
                         params=1, size_mb=1.0, top1=width, top5=width, n_images=10, p50_ms=p50, p90_ms=p50 * 1.1,
                         mean_ms=p50, latency_ms={"p50": p50, "p90": p50 * 1.1, "mean": p50},
                         providers=["CPUExecutionProvider"], model="m", p50_ci95_ms=ci, other_load=0.05)


def test_ties_from_overlapping_intervals():
    rs = [_result(0.25, 1.0, [0.9, 1.1]), _result(0.5, 1.05, [1.0, 1.2]), _result(0.75, 1.5, [1.4, 1.6]),
          _result(1.0, 1.3, None)]
    mark_ties(rs)
    assert rs[0].ties_with == [rs[1].name] and rs[1].ties_with == [rs[0].name]
    assert rs[2].ties_with == [] and rs[3].ties_with == []  # no interval: no tie claimed


def test_report_marks_ties_and_loaded_rounds():
    rs = [_result(0.25, 1.0, [0.9, 1.1]), _result(0.5, 1.05, [1.0, 1.2])]
    mark_ties(rs)
    for r, f in zip(rs, pareto_flags([(r.top1, r.p50_ms) for r in rs])):
        r.pareto = f
    timing = {"method": "interleaved", "rounds": 10, "runs_per_block": 10, "block_warmup": 2, "max_load": 0.2,
              "max_seconds": 60.0, "retaken_rounds": 3, "loaded_rounds": 2, "other_load": 0.4}
    md = markdown_report(SweepResult(rs, [], {"device": "host", "data": "d"}, {"cpu": "x"}, 1.0, timing=timing),
                         "p50", "pareto.png")
    header = next(line for line in md.splitlines() if line.startswith("| variant"))
    for col in ("p50 95% CI (ms)", "other load", "ties with", "x fp32", "Pareto"):
        assert col in header
    assert "1.000 ~" in md and "0.900-1.100" in md and rs[0].name in md.split(rs[1].name)[1]  # listed as its tie
    assert "2 rounds kept although loaded" in md and "3 rounds above 0.2" in md


def test_table_shows_tie_marker(capsys, monkeypatch):
    from mnetctl.cli.sweep import _print_table

    monkeypatch.setenv("COLUMNS", "200")
    rs = [_result(0.25, 1.0, [0.9, 1.1]), _result(0.5, 1.05, [1.0, 1.2])]
    mark_ties(rs)
    _print_table(SweepResult(rs, [], {}, {}, 1.0, timing={"method": "interleaved"}), "host", "p50", wide=True)
    out = capsys.readouterr().out
    assert "~1" in out and "0.900-1.100" in out and "tie ~N" in out


@pytest.fixture(scope="module")
def tiny_sweeps(tmp_path_factory):
    from mnetctl.sweep import SweepSettings, plan_variants, run_sweep, write_outputs

    root = tmp_path_factory.mktemp("isweep")
    variants, _ = plan_variants(["v1"], [0.25], [96], ["fp32", "int8"], "random")
    docs = {}
    for method in ("interleaved", "sequential"):
        res = run_sweep(variants, SweepSettings(weights="random", limit=4, iterations=10, max_seconds=0,
                                                sequential=method == "sequential"), cache_dir=root / "cache")
        paths = write_outputs(res, root / method)
        docs[method] = (json.loads(paths["json"].read_text()), paths["report"].read_text())
    return docs


def test_interleaved_sweep_json_fields(tiny_sweeps):
    doc, report = tiny_sweeps["interleaved"]
    t = doc["timing"]
    assert t["method"] == "interleaved" and t["max_load"] == 0.2 and t["rounds"] >= 1 and t["runs_per_block"] == 10
    for key in ("retaken_rounds", "loaded_rounds", "other_load", "block_warmup", "warmup", "cached"):
        assert key in t
    assert t["retaken_rounds"] == 0  # max_seconds 0: nothing is taken again
    assert doc["settings"]["sequential"] is False and doc["settings"]["max_load"] == 0.2
    for v in doc["variants"]:
        lo, hi = v["p50_ci95_ms"]
        assert lo <= v["p50_ms"] <= hi and isinstance(v["ties_with"], list)
        assert v["other_load"] is None or v["other_load"] >= 0
        assert v["loaded_rounds"] == t["loaded_rounds"]
    int8 = next(v for v in doc["variants"] if v["precision"] == "int8")
    fp32 = next(v for v in doc["variants"] if v["precision"] == "fp32")
    assert int8["speedup"] == pytest.approx(fp32["p50_ms"] / int8["p50_ms"], rel=1e-3)
    assert "p50 95% CI" in report and "interleaved rounds" in report


def test_sequential_sweep_keeps_the_old_method(tiny_sweeps):
    doc, report = tiny_sweeps["sequential"]
    assert doc["timing"]["method"] == "sequential"
    for v in doc["variants"]:
        assert v["p50_ci95_ms"] is None and v["ties_with"] == [] and v["p50_ms"] > 0
    assert "sequential" in report
