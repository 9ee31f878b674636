"""A/B regression gate in one run: a new model timed against an old one, interleaved, on one device profile.

Both models run one real image each (the first of the shipped val sample, through each model's own
preprocessing, so models at different input sizes compare as they would be deployed) in rounds
(`mnetctl.interleave`: a short block of runs of each model per round, the order alternating), with idle pool
threads not spinning between runs. The statistic is the ratio of medians NEW/OLD: per round, the median of
NEW's block over the median of OLD's block in the same round; the estimate is the median of those per-round
ratios and its 95% interval a seeded bootstrap over rounds (`stats.median_ci`). Host drift and other processes'
load then hit both models alike, which is what makes the gate usable on a shared CI runner.

Verdict against `1 + tolerance`: `regression` when the whole interval lies above it, `ok` when the whole
interval lies below it, else `inconclusive`; an inconclusive gate takes more rounds until `max_seconds`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .errors import BadInput
from .progress import ProgressFn, report

if TYPE_CHECKING:
    from .profiles import Profile

SCHEMA = "mnetctl.bench-ab/1"
DEFAULT_TOLERANCE = "5%"
DEFAULT_MAX_SECONDS = 120.0
MAX_SECONDS_LIMIT = 86_400.0  # a day
CONFIDENCE = 0.95
# Short blocks pair the two models closely in time: on a loaded 2-core host, blocks of 20 runs let a load change
# land on one model's block and not the other's (a model against itself read 1.21x, 95% CI 1.04-1.41, in 10 rounds)
RUNS_PER_BLOCK = 5  # timed runs of one model before the other's turn
BLOCK_WARMUP = 1  # untimed runs at the start of each block (the model's caches after the other ran)
DEFAULT_WARMUP = 10
MIN_ROUNDS = 30  # rounds before the first verdict
STEP_ROUNDS = 6  # rounds added at a time while the verdict is inconclusive (even: the order keeps alternating)
NEW, OLD = "new", "old"
VERDICTS = ("ok", "regression", "inconclusive")


@dataclass(frozen=True)
class GateStats:
    """The gate's statistic over rounds: ratio NEW/OLD, its interval and the verdict against 1 + tolerance."""

    ratio: float
    ci_low: float
    ci_high: float
    verdict: str
    rounds: int
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return {"ratio": round(self.ratio, 4), "ci_low": round(self.ci_low, 4), "ci_high": round(self.ci_high, 4),
                "verdict": self.verdict, "rounds": self.rounds, "tolerance": self.tolerance}


def verdict(ci_low: float, ci_high: float, tolerance: float) -> str:
    """regression (interval above 1 + tolerance), ok (interval below it) or inconclusive (it holds 1 + tolerance)."""
    limit = 1.0 + tolerance
    if ci_low > limit:
        return "regression"
    if ci_high < limit:
        return "ok"
    return "inconclusive"


def round_ratios(rounds: Sequence[Mapping[str, Sequence[float]]], new: str = NEW, old: str = OLD) -> list[float]:
    """Per round: median of `new`'s block over median of `old`'s block."""
    out = []
    for r in rounds:
        a, b = np.median(r[new]), np.median(r[old])
        if not (a > 0 and b > 0):
            raise ValueError(f"block medians must be positive, got {a} and {b}")
        out.append(float(a / b))
    return out


def gate_stats(rounds: Sequence[Mapping[str, Sequence[float]]], tolerance: float, new: str = NEW, old: str = OLD,
               confidence: float = CONFIDENCE, seed: int = 0) -> GateStats:
    """The ratio of medians new/old over `rounds` (each: name -> that block's timings) and its verdict.

    The estimate is the median of the per-round ratios, the interval a seeded bootstrap of that median over
    rounds: the same samples give the same interval.
    """
    from .stats import median_ci

    if not rounds:
        raise ValueError("no rounds")
    ratios = round_ratios(rounds, new, old)
    lo, hi = median_ci(ratios, confidence, seed=seed)
    ratio = float(np.median(ratios))
    return GateStats(ratio, lo, hi, verdict(lo, hi, tolerance), len(ratios), float(tolerance))


def check_max_seconds(value: float | str | None) -> float:
    """The time cap in seconds (default DEFAULT_MAX_SECONDS); BadInput naming max_seconds otherwise."""
    if value is None:
        return DEFAULT_MAX_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"max_seconds {value!r} is not a number of seconds", "e.g. 120") from None
    if not 0 < seconds <= MAX_SECONDS_LIMIT:  # NaN fails this too
        raise BadInput(f"max_seconds must be above 0 and at most {MAX_SECONDS_LIMIT:g}, got {value}", "e.g. 120")
    return seconds


@dataclass
class ABResult:
    """NEW against OLD on one device profile, from interleaved rounds."""

    new: str  # model paths
    old: str
    device: str  # the profile's name
    host: dict[str, Any]
    onnxruntime: str
    providers_new: list[str]
    providers_old: list[str]
    threads: int | None
    inputs: dict[str, dict[str, Any]]  # "new"/"old" -> shape, dtype, resolution of the image each ran
    stats: GateStats
    new_p50_ms: float
    old_p50_ms: float
    new_p90_ms: float
    old_p90_ms: float
    runs_per_block: int
    block_warmup: int
    warmup: int
    other_load: float | None  # other processes' CPU load while timing, in cores
    other_load_max_round: float | None
    elapsed_s: float
    max_seconds: float
    notes: list[str] = field(default_factory=list)
    timestamp: str = ""

    @property
    def verdict(self) -> str:
        return self.stats.verdict

    @property
    def capped(self) -> bool:
        """The time cap ended the measurement before a conclusive verdict."""
        return self.verdict == "inconclusive"

    def summary(self) -> str:
        """One line: 'regression: new/old p50 1.31x (95% CI 1.28-1.33, tolerance 5%, 10 rounds)'."""
        s = self.stats
        return (f"{s.verdict}: {Path(self.new).name} / {Path(self.old).name} p50 {s.ratio:.3f}x "
                f"(95% CI {s.ci_low:.3f}-{s.ci_high:.3f}, limit {1 + s.tolerance:.3f} = tolerance "
                f"{s.tolerance * 100:g}%, {s.rounds} rounds)")

    def warning(self) -> str | None:
        if not self.capped:
            return None
        return (f"inconclusive after {self.elapsed_s:.0f} s (--max-seconds {self.max_seconds:g}): the 95% interval "
                f"{self.stats.ci_low:.3f}-{self.stats.ci_high:.3f} holds the limit {1 + self.stats.tolerance:.3f}")

    def as_dict(self) -> dict[str, Any]:
        from . import __version__

        ab = self.stats.as_dict()
        ab.update({"other_load": self.other_load, "other_load_max_round": self.other_load_max_round,
                   "elapsed_s": round(self.elapsed_s, 3), "max_seconds": self.max_seconds,
                   "runs_per_block": self.runs_per_block, "block_warmup": self.block_warmup, "warmup": self.warmup,
                   "confidence": CONFIDENCE})
        return {
            "schema": SCHEMA, "mnetctl_version": __version__, "timestamp": self.timestamp,
            "profile": self.device, "host": dict(self.host), "onnxruntime": self.onnxruntime, "threads": self.threads,
            "new": {"model": self.new, "providers": list(self.providers_new), "input": dict(self.inputs[NEW]),
                    "p50_ms": round(self.new_p50_ms, 4), "p90_ms": round(self.new_p90_ms, 4)},
            "old": {"model": self.old, "providers": list(self.providers_old), "input": dict(self.inputs[OLD]),
                    "p50_ms": round(self.old_p50_ms, 4), "p90_ms": round(self.old_p90_ms, 4)},
            "ab": ab,
            "passed": self.verdict != "regression",
            "warning": self.warning(),
            "notes": list(self.notes),
        }


def ab_bench(
    new_model: Path | str,
    old_model: Path | str,
    *,
    device: "str | Profile | None" = None,
    profile: Path | str | None = None,
    threads: int | None = None,
    tolerance: float | str = DEFAULT_TOLERANCE,
    max_seconds: float | str | None = None,
    warmup: int = DEFAULT_WARMUP,
    min_rounds: int | None = None,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
) -> ABResult:
    """Time `new_model` against `old_model` interleaved on a device profile's providers and decide the gate.

    device: a shipped profile's name or a Profile (default: "host"); profile: a TOML file instead. threads:
    intra-op threads (default: the profile's, else onnxruntime's). tolerance: allowed slowdown ("5%" or 0.05).
    max_seconds: time cap for the rounds added while the verdict is inconclusive (the first `min_rounds` rounds,
    default MIN_ROUNDS, always run). seed: the bootstrap's seed.
    """
    from datetime import datetime, timezone

    from .bench import check_runs
    from .budgets import parse_tolerance
    from .hostinfo import LoadMeter, host_info
    from .interleave import Interleaved, interleave
    from .model import Model
    from .profiles import host_matches_profile
    from .targets import check_providers, profile_runnable, resolve_target
    from .runtime import onnxruntime_info

    tol = parse_tolerance(tolerance) if isinstance(tolerance, str) else float(tolerance)
    if not (math.isfinite(tol) and 0 <= tol <= 10):
        raise BadInput(f"tolerance {tolerance} is out of range", "e.g. 5% (or 0.05)")
    cap = check_max_seconds(max_seconds)
    warmup = check_runs(warmup, "warmup", 0)
    min_rounds = check_runs(MIN_ROUNDS if min_rounds is None else min_rounds, "min_rounds", 2)
    prof, threads = resolve_target(device, profile, threads)
    check_providers(prof)
    new, old = Model.open(new_model), Model.open(old_model)

    a, a_info = profile_runnable(NEW, new, prof, threads)
    b, b_info = profile_runnable(OLD, old, prof, threads)
    inputs = {}
    for key, model, runnable in ((NEW, new, a), (OLD, old, b)):
        x = next(iter(runnable.inputs[0].values()))
        inputs[key] = {"shape": list(x.shape), "dtype": str(x.dtype), "resolution": model.preprocessor.resolution}
    notes = list(dict.fromkeys(a_info.notes + b_info.notes))
    if inputs[NEW]["shape"] != inputs[OLD]["shape"]:
        notes.append(f"the models take different inputs ({inputs[NEW]['shape']} and {inputs[OLD]['shape']}): "
                     "each runs the same image through its own preprocessing")
    matches, mismatch = host_matches_profile(prof)
    if not matches:
        notes.append(f"this host is not a {prof.name}: {'; '.join(mismatch)} (the ratio may not transfer)")

    rounds: list[dict[str, list[float]]] = []
    loads: list[float | None] = []
    meter = LoadMeter()
    start = time.monotonic()
    label = f"A/B {Path(str(new_model)).name} vs {Path(str(old_model)).name}"

    def take(n: int, first: bool) -> None:
        done = len(rounds)
        part = interleave([a, b], rounds=n, runs=RUNS_PER_BLOCK, block_warmup=BLOCK_WARMUP,
                          warmup=warmup if first else 0, label=label,
                          on_progress=(lambda k, _n, lab: report(on_progress, done + k, None, lab)) if on_progress else None)
        rounds.extend(part.rounds)
        loads.extend(part.round_load)

    take(min_rounds, True)
    stats = gate_stats(rounds, tol, seed=seed)
    while stats.verdict == "inconclusive":
        elapsed = time.monotonic() - start
        per_round = elapsed / len(rounds)
        if elapsed + STEP_ROUNDS * per_round > cap:
            break
        take(STEP_ROUNDS, False)
        stats = gate_stats(rounds, tol, seed=seed)
    elapsed = time.monotonic() - start
    timed = Interleaved([NEW, OLD], rounds, loads, meter.other_load(), RUNS_PER_BLOCK, BLOCK_WARMUP, warmup)
    round_loads = [x for x in loads if x is not None]
    onnx_info = onnxruntime_info()
    return ABResult(
        new=str(new_model), old=str(old_model), device=prof.name, host=host_info(),
        onnxruntime=str(onnx_info.get("version")), providers_new=list(a_info.used), providers_old=list(b_info.used),
        threads=threads, inputs=inputs, stats=stats,
        new_p50_ms=timed.stats[NEW].p50_ms, old_p50_ms=timed.stats[OLD].p50_ms,
        new_p90_ms=timed.stats[NEW].p90_ms, old_p90_ms=timed.stats[OLD].p90_ms,
        runs_per_block=RUNS_PER_BLOCK, block_warmup=BLOCK_WARMUP, warmup=warmup,
        other_load=timed.other_load, other_load_max_round=max(round_loads) if round_loads else None,
        elapsed_s=elapsed, max_seconds=cap, notes=notes,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
