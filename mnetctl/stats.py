"""Latency statistics: one computation behind bench, compare and interleaved timing.

Percentiles are numpy's linear interpolation, the standard deviation is the sample one (ddof=1). Samples come
in seconds, milliseconds or nanoseconds; the statistics are always in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

_TO_MS = {"s": 1e3, "ms": 1.0, "ns": 1e-6}
STAT_NAMES = ("min", "mean", "std", "p50", "p90", "p95", "p99", "max")


def _as_ms(samples: Sequence[float], unit: str) -> np.ndarray:
    if unit not in _TO_MS:
        raise ValueError(f"unit must be one of {', '.join(_TO_MS)}, got {unit!r}")
    if not len(samples):
        raise ValueError("no samples")
    return np.asarray(samples, dtype=np.float64) * _TO_MS[unit]


@dataclass(frozen=True)
class LatencyStats:
    """min / mean / std / p50 / p90 / p95 / p99 / max of a set of timings, in ms, and how many there were."""

    runs: int
    min_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples: Sequence[float], unit: str = "s") -> "LatencyStats":
        """Statistics of `samples` given in `unit` ("s", "ms" or "ns")."""
        ms = _as_ms(samples, unit)
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return cls(
            runs=int(ms.size),
            min_ms=float(ms.min()),
            mean_ms=float(ms.mean()),
            std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            p50_ms=float(p50),
            p90_ms=float(p90),
            p95_ms=float(p95),
            p99_ms=float(p99),
            max_ms=float(ms.max()),
        )

    def get(self, name: str) -> float:
        """One statistic by its short name ("p50", "mean", ...)."""
        if name not in STAT_NAMES:
            raise ValueError(f"statistic must be one of {', '.join(STAT_NAMES)}, got {name!r}")
        return getattr(self, f"{name}_ms")

    def as_dict(self, suffix: str = "_ms", digits: int | None = None, runs: bool = True) -> dict[str, Any]:
        """{"runs", "min<suffix>", ...}: bench uses suffix "" without runs, compare "_ms" rounded to 4 digits."""
        out: dict[str, Any] = {"runs": self.runs} if runs else {}
        for f in fields(self):
            if f.name == "runs":
                continue
            value = getattr(self, f.name)
            out[f.name[: -len("_ms")] + suffix] = round(value, digits) if digits is not None else value
        return out


def median_ci(
    samples: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A bootstrap (percentile) confidence interval of the median of `samples`, in their own unit.

    Seeded, so the same samples give the same interval. Resampling is done in chunks to bound memory.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    arr = np.asarray(samples, dtype=np.float64)
    if not arr.size:
        raise ValueError("no samples")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // arr.size))
    medians = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, arr.size, size=(min(chunk, resamples - start), arr.size))
        medians.append(np.median(arr[idx], axis=1))
    meds = np.concatenate(medians)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(meds, [tail, 100 - tail])
    return float(lo), float(hi)
