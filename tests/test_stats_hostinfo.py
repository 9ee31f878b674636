"""One statistics computation (stats.py) and one host/load module (hostinfo.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mnetctl.hostinfo import LoadMeter, cpu_model, cpu_summary, usable_cpus
from mnetctl.stats import LatencyStats, median_ci


def test_latency_stats_match_numpy():
    rng = np.random.default_rng(3)
    ms = rng.lognormal(1.0, 0.4, 501)
    s = LatencyStats.of(ms / 1e3, unit="s")
    assert s.runs == 501
    assert s.min_ms == pytest.approx(ms.min()) and s.max_ms == pytest.approx(ms.max())
    assert s.mean_ms == pytest.approx(ms.mean()) and s.std_ms == pytest.approx(ms.std(ddof=1))
    for q in (50, 90, 95, 99):
        assert s.get(f"p{q}") == pytest.approx(np.percentile(ms, q))
    assert LatencyStats.of(ms * 1e6, unit="ns").as_dict() == pytest.approx(LatencyStats.of(ms, unit="ms").as_dict())
    assert LatencyStats.of([2.0], unit="ms").std_ms == 0.0
    with pytest.raises(ValueError):
        LatencyStats.of([])
    with pytest.raises(ValueError):
        LatencyStats.of([1.0], unit="min")


def test_latency_stats_dict_shapes():
    s = LatencyStats.of([1.0, 2.0, 3.0, 4.0], unit="ms")
    bench_keys = s.as_dict(suffix="", runs=False)
    assert list(bench_keys) == ["min", "mean", "std", "p50", "p90", "p95", "p99", "max"]
    assert bench_keys["p50"] == 2.5
    compare_keys = s.as_dict(suffix="_ms", digits=4)
    assert compare_keys["runs"] == 4 and compare_keys["p50_ms"] == 2.5 and "p90_ms" in compare_keys


def test_median_ci_brackets_the_median_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 1.0, 400)
    lo, hi = median_ci(x)
    assert lo < np.median(x) < hi and hi - lo < 0.5
    assert median_ci(x) == (lo, hi)  # seeded
    wide = median_ci(x[:20])
    assert wide[1] - wide[0] > hi - lo  # fewer samples, wider interval
    assert median_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)


def test_host_facts():
    assert cpu_model() and cpu_summary().endswith(f"{usable_cpus()} CPUs")
    assert usable_cpus() >= 1


def test_load_meter_is_a_sane_fraction():
    meter = LoadMeter()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:  # this process's own busy loop must not count as "other" load
        pass
    load = meter.lap()
    assert load is not None
    assert 0.0 <= load <= usable_cpus() + 0.5  # fraction of one core, at most every CPU busy
    time.sleep(0.2)
    again = meter.other_load()
    assert again is not None and 0.0 <= again <= usable_cpus() + 0.5
