"""Time several runnables in alternating rounds, so drift of the host hits all of them alike.

A round runs a short block of every runnable in turn: `block_warmup` untimed runs, then `runs` timed ones.
The order rotates each round (A B C, B C A, C A B, ...; for two: A B, B A), so no runnable always
follows the same neighbour. Frequency changes, other processes and cache effects then spread over all
runnables, and ratios between them hold on a busy machine where absolute times do not. Other processes'
load is measured per round (`hostinfo.LoadMeter`, fraction of one core).

Runnables must not steal each other's cores between runs: an ONNX Runtime session for interleaving
needs its idle pool threads to stop spinning when a run returns (see `compare.onnx_runnable`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .hostinfo import LoadMeter
from .progress import ProgressFn, report
from .stats import LatencyStats, median_ci


@dataclass
class Runnable:
    """One thing to time: `fn(x)` for inputs cycled from `inputs` (picking the input is not timed)."""

    name: str
    fn: Callable[[Any], Any]
    inputs: Sequence[Any] = (None,)


@dataclass
class Interleaved:
    """Samples (seconds) per runnable, by round, and other processes' load per round."""

    names: list[str]
    rounds: list[dict[str, list[float]]]  # per round: name -> that block's timed runs
    round_load: list[float | None]
    other_load: float | None  # over the whole timed part
    runs: int
    block_warmup: int
    warmup: int
    stats: dict[str, LatencyStats] = field(init=False)

    def __post_init__(self) -> None:
        self.stats = {n: LatencyStats.of(self.samples(n)) for n in self.names}

    def samples(self, name: str) -> list[float]:
        return [t for r in self.rounds for t in r[name]]

    def ratio(self, name: str, stat: str = "p50", ref: str | None = None) -> float:
        """`stat` of `name` over `stat` of the reference (default: the first runnable)."""
        return self.stats[name].get(stat) / self.stats[ref or self.names[0]].get(stat)

    def paired_ratio(self, name: str, ref: str | None = None) -> float:
        """Median over rounds of (median of `name`'s block / median of the reference's block in the same round)."""
        ref = ref or self.names[0]
        return float(np.median([np.median(r[name]) / np.median(r[ref]) for r in self.rounds]))

    def p50_ci_ms(self, name: str, confidence: float = 0.95) -> tuple[float, float]:
        lo, hi = median_ci(self.samples(name), confidence)
        return lo * 1e3, hi * 1e3

    def as_dict(self) -> dict[str, Any]:
        models = []
        for n in self.names:
            lo, hi = self.p50_ci_ms(n)
            models.append({
                "name": n,
                **self.stats[n].as_dict(suffix="_ms", digits=4),
                "p50_ci95_ms": [round(lo, 4), round(hi, 4)],
                "ratio_p50": round(self.ratio(n, "p50"), 4),
                "ratio_mean": round(self.ratio(n, "mean"), 4),
                "ratio_p50_paired": round(self.paired_ratio(n), 4),
            })
        loads = [x for x in self.round_load if x is not None]
        return {
            "rounds": len(self.rounds),
            "runs_per_block": self.runs,
            "block_warmup": self.block_warmup,
            "warmup": self.warmup,
            "other_load": self.other_load,
            "other_load_max_round": max(loads) if loads else None,
            "models": models,
        }


def rounds_for(iterations: int, runs: int) -> int:
    """Rounds needed for at least `iterations` timed runs per runnable with `runs` per block."""
    return max(1, math.ceil(iterations / runs))


def interleave(
    runnables: Sequence[Runnable],
    rounds: int,
    runs: int = 1,
    block_warmup: int = 0,
    warmup: int = 0,
    on_progress: ProgressFn | None = None,
    label: str = "time (interleaved)",
) -> Interleaved:
    """Time `runnables` in `rounds` rotating rounds of `runs` timed runs each (after `warmup` untimed runs each)."""
    names = [r.name for r in runnables]
    if not runnables:
        raise ValueError("no runnables to time")
    if len(set(names)) != len(names):
        raise ValueError(f"runnable names must be unique, got {names}")
    for what, value, low in (("rounds", rounds, 1), ("runs", runs, 1), ("block_warmup", block_warmup, 0), ("warmup", warmup, 0)):
        if int(value) < low:
            raise ValueError(f"{what} must be >= {low}, got {value}")
    count = {r.name: 0 for r in runnables}

    def next_input(r: Runnable) -> Any:
        x = r.inputs[count[r.name] % len(r.inputs)]
        count[r.name] += 1
        return x

    for r in runnables:
        for _ in range(warmup):
            r.fn(next_input(r))
    total_meter, round_meter = LoadMeter(), LoadMeter()
    per_round: list[dict[str, list[float]]] = []
    loads: list[float | None] = []
    for k in range(rounds):
        shift = k % len(runnables)
        block: dict[str, list[float]] = {}
        for r in list(runnables[shift:]) + list(runnables[:shift]):
            for _ in range(block_warmup):
                r.fn(next_input(r))
            times = []
            for _ in range(runs):
                x = next_input(r)
                start = time.perf_counter()
                r.fn(x)
                times.append(time.perf_counter() - start)
            block[r.name] = times
        per_round.append(block)
        loads.append(round_meter.lap())
        report(on_progress, k + 1, rounds, label)
    return Interleaved(names, per_round, loads, total_meter.other_load(), int(runs), int(block_warmup), int(warmup))
