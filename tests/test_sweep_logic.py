"""Sweep planning, Pareto flags and budget selection (pure logic, no models)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnetctl.errors import BadInput
from mnetctl.sweep import VariantResult, pareto_flags, plan_variants, select_best


def _dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def test_pareto_hand_cases():
    pts = [(0.70, 1.0), (0.75, 2.0), (0.72, 2.5), (0.75, 2.0), (0.60, 0.5), (0.60, 0.9)]
    assert pareto_flags(pts) == [True, True, False, True, True, False]
    assert pareto_flags([(0.5, 1.0)]) == [True]
    assert pareto_flags([]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20).map(lambda v: v / 20), st.integers(1, 20).map(float)), min_size=1, max_size=12))
def test_pareto_matches_definition(points):
    flags = pareto_flags(points)
    for i, p in enumerate(points):
        dominated = any(_dominates(q, p) for j, q in enumerate(points) if j != i)
        assert flags[i] == (not dominated)
    front = [p for p, f in zip(points, flags) if f]
    assert front  # a non-empty set always has a non-dominated point


def _result(name_width, top1, p50, p90):
    return VariantResult(arch="v1", width=name_width, resolution=128, precision="fp32", weights="random", macs=1, params=1,
                         size_mb=1.0, top1=top1, top5=top1, n_images=10, p50_ms=p50, p90_ms=p90, mean_ms=p50,
                         latency_ms={"p50": p50, "p90": p90, "mean": p50}, providers=["CPUExecutionProvider"], model="m")


def test_select_obeys_budget_and_metric():
    rs = [_result(0.25, 0.50, 0.3, 0.5), _result(0.5, 0.69, 0.9, 1.4), _result(0.75, 0.77, 2.0, 2.6), _result(1.0, 0.875, 4.0, 5.0)]
    assert select_best(rs, 1.0, "p50").width == 0.5
    assert select_best(rs, 1.0, "p90").width == 0.25
    assert select_best(rs, 100, "p90").width == 1.0
    assert select_best(rs, 0.1, "p50") is None
    for budget in (0.3, 0.6, 1.5, 2.5, 4.5):
        chosen = select_best(rs, budget, "p90")
        fitting = [r for r in rs if r.p90_ms <= budget]
        assert (chosen is None) == (not fitting)
        if chosen:
            assert chosen.p90_ms <= budget and chosen.top1 == max(r.top1 for r in fitting)


def test_plan_default_is_every_checkpoint_at_trained_resolution():
    variants, skipped = plan_variants()
    names = {v.name for v in variants}
    assert "v1-0.25-128-fp32" in names and "v1-0.25-128-int8" in names
    assert "v2-1.0-224-int8" in names and "v3-small-1.0-224-fp32" in names
    assert "mobilenet-edgetpu-1.0-224-int8" in names
    assert len(variants) == 14 and not skipped  # 7 shipped checkpoints x fp32/int8


def test_plan_grid_skips_widths_without_weights():
    variants, skipped = plan_variants(["v1", "v2"], [0.5, 1.0], [128, 160], ["fp32"], "pretrained")
    assert {v.name for v in variants} == {"v1-0.5-128-fp32", "v1-0.5-160-fp32", "v1-1.0-128-fp32", "v1-1.0-160-fp32",
                                          "v2-1.0-128-fp32", "v2-1.0-160-fp32"}
    assert skipped == ["v2 width 0.5: no pretrained checkpoint"]
    random_variants, _ = plan_variants(["v3-large"], None, None, ["fp32", "int8"], "random")
    assert [v.name for v in random_variants] == ["v3-large-1.0-224-fp32", "v3-large-1.0-224-int8"]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(archs=["v5"]), "unknown architecture"),
    (dict(precisions=["fp16"]), "precision"),
    (dict(weights="imagenet"), "^weights"),
    (dict(archs=["v3-large"], weights="pretrained"), "empty"),
    (dict(widths=[0.0]), "^width"),
])
def test_plan_rejects_bad_grids(kwargs, needle):
    with pytest.raises(BadInput, match=needle):
        plan_variants(**kwargs)


def test_opset_follows_the_device_runtime():
    from mnetctl.profiles import load_profile
    from mnetctl.sweep import opset_for_profile

    assert opset_for_profile(load_profile("host")) == 17
    assert opset_for_profile(load_profile("jetson-nano")) == 13  # max_opset 13, IR 7
    assert opset_for_profile(load_profile("intel-ncs2")) == 15  # max_opset 15, IR 8


P90_PROFILE = """
name = "p90-board"
description = "a board whose latency budget is on p90"
[[eps]]
name = "cpu"
[budgets]
latency_ms = 1.0
percentile = "p90"
"""


def test_select_honours_the_profiles_percentile(tmp_path):
    """The profile's 1 ms budget is on p90: the accurate variant fits on p50 (0.5 ms) but not on p90 (1.5 ms)."""
    from mnetctl.metrics import Metric
    from mnetctl.profiles import load_profile
    from mnetctl.sweep import selection_budget

    path = tmp_path / "p90-board.toml"
    path.write_text(P90_PROFILE)
    profile = load_profile(path)
    accurate, fast = _result(1.0, 0.80, 0.5, 1.5), _result(0.25, 0.60, 0.4, 0.8)
    budget = selection_budget(profile, None, "p50")  # the sweep's --metric p50 does not move the profile's budget
    assert budget == (1.0, Metric.P90)
    assert select_best([accurate, fast], *budget) is fast
    # An explicit budget applies to the sweep's metric.
    assert selection_budget(profile, 1.0, "p50") == (1.0, Metric.P50)
    assert select_best([accurate, fast], *selection_budget(profile, 1.0, "p50")) is accurate
    assert selection_budget(load_profile(path), None) == profile.latency_budget()
    no_budget = tmp_path / "free.toml"
    no_budget.write_text(P90_PROFILE.replace("latency_ms = 1.0\n", ""))
    assert selection_budget(load_profile(no_budget), None, "p50") is None
    with pytest.raises(BadInput, match="^metric must be one of p50, p90, p95, p99, mean, got 'max'"):
        selection_budget(profile, 1.0, "max")
