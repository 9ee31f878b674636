"""The latency statistics a budget, a regression gate or a sweep frontier can be judged on (one vocabulary)."""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable

from .errors import BadInput


class Metric(StrEnum):
    """A statistic of the measured latencies; the value is its key in `BenchResult.latency_ms`."""

    MIN = "min"
    MEAN = "mean"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    MAX = "max"


ALL_METRICS: tuple[Metric, ...] = tuple(Metric)
# A sweep ranks variants by a typical or tail latency; min and max are one run each, too noisy to rank by.
SWEEP_METRICS: tuple[Metric, ...] = (Metric.P50, Metric.P90, Metric.P95, Metric.P99, Metric.MEAN)


def parse_metric(value: str | Metric, name: str = "metric", allowed: Iterable[Metric] = ALL_METRICS) -> Metric:
    """`value` as a Metric among `allowed`; otherwise BadInput naming `name` (a parameter, or the CLI's flag)."""
    allowed = tuple(allowed)
    try:
        metric = Metric(str(value).strip().lower())
    except ValueError:
        metric = None
    if metric not in allowed:
        raise BadInput(f"{name} must be one of {', '.join(allowed)}, got {str(value)!r}")
    return metric
