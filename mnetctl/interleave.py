"""Time several runnables in alternating rounds, so drift of the host hits all of them alike.

A round runs a short block of every runnable in turn: `block_warmup` untimed runs, then `runs` timed ones.
The order rotates each round (A B C, B C A, C A B, ...; for two: A B, B A), so no runnable always
follows the same neighbour. Frequency changes, other processes and cache effects then spread over all
runnables, and ratios between them hold on a busy machine where absolute times do not. Other processes'
load is measured per round (`hostinfo.LoadMeter`, fraction of one core).

`interleave_quiet` also takes again the rounds during which other processes were busy (more than `max_load`
of a core), up to a time cap; after the cap a loaded round is kept and counted (`Interleaved.loaded_rounds`).

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
    # interleave_quiet only: the load limit, rounds taken again / kept although loaded, each runnable's own load
    max_load: float | None = None
    retaken_rounds: int = 0
    loaded_rounds: int = 0
    model_load: dict[str, float | None] = field(default_factory=dict)

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
        quiet = {} if self.max_load is None else {
            "max_load": self.max_load, "retaken_rounds": self.retaken_rounds, "loaded_rounds": self.loaded_rounds}
        return {
            **quiet,
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
    names = _check(runnables, rounds, runs, block_warmup, warmup)
    next_input = _input_picker(runnables)
    for r in runnables:
        for _ in range(warmup):
            r.fn(next_input(r))
    total_meter, round_meter = LoadMeter(), LoadMeter()
    per_round: list[dict[str, list[float]]] = []
    loads: list[float | None] = []
    for k in range(rounds):
        block, _ = _round(_rotated(runnables, k), runs, block_warmup, next_input)
        per_round.append(block)
        loads.append(round_meter.lap())
        report(on_progress, k + 1, rounds, label)
    return Interleaved(names, per_round, loads, total_meter.other_load(), int(runs), int(block_warmup), int(warmup))


MIN_WINDOW_S = 0.25  # interleave_quiet judges load over at least this long (the kernel counts CPU time in 10 ms ticks)


def interleave_quiet(
    runnables: Sequence[Runnable],
    rounds: int,
    runs: int = 1,
    block_warmup: int = 0,
    warmup: int = 0,
    max_load: float = 0.2,
    max_seconds: float = 60.0,
    on_progress: ProgressFn | None = None,
    label: str = "time (interleaved)",
    meter: Callable[[], Any] = LoadMeter,
    clock: Callable[[], float] = time.monotonic,
    min_window_s: float = MIN_WINDOW_S,
) -> Interleaved:
    """`interleave`, keeping at least `rounds` rounds taken while other processes used at most `max_load` of a core.

    Load is judged per window: consecutive rounds lasting `min_window_s` together (a single round when rounds are
    longer), since a shorter window reads the kernel's 10 ms ticks as 0 or as a spike; a whole window is kept, so
    short rounds can make more than `rounds`. A window above `max_load`
    is taken again while less than `max_seconds` have passed since timing began; after that it is kept and its
    rounds are counted in `loaded_rounds`. A window whose load cannot be read (None) is kept. `retaken_rounds`
    counts the rounds thrown away. Each runnable's `model_load` is other processes' load during its blocks of the
    kept rounds (time-weighted); `other_load` the same over the kept windows. `meter` makes load meters
    (`hostinfo.LoadMeter`), `clock` reads seconds for the cap (both replaceable in tests).
    """
    names = _check(runnables, rounds, runs, block_warmup, warmup)
    if not max_load >= 0:
        raise ValueError(f"max_load must be >= 0, got {max_load}")
    if not max_seconds >= 0:
        raise ValueError(f"max_seconds must be >= 0, got {max_seconds}")
    next_input = _input_picker(runnables)
    for r in runnables:
        for _ in range(warmup):
            r.fn(next_input(r))
    start = clock()
    kept: list[dict[str, list[float]]] = []
    loads: list[float | None] = []  # per kept round: its window's load
    busy_total = wall_total = 0.0
    unread_total = False
    busy = {n: 0.0 for n in names}  # other processes' CPU seconds during each runnable's kept blocks
    spent = {n: 0.0 for n in names}  # wall seconds of those blocks
    unread: set[str] = set()
    retaken = loaded = attempt = 0
    while len(kept) < rounds:
        window_meter, t0 = meter(), time.perf_counter()
        window: list[tuple[dict[str, list[float]], dict[str, tuple[float | None, float]]]] = []
        while not window or time.perf_counter() - t0 < min_window_s:
            window.append(_round(_rotated(runnables, attempt), runs, block_warmup, next_input, meter))
            attempt += 1
        load, wall = window_meter.other_load(), time.perf_counter() - t0
        if load is not None and load > max_load:
            if clock() - start < max_seconds:
                retaken += len(window)
                report(on_progress, len(kept), rounds, f"{label}, retaking loaded rounds")
                continue
            loaded += len(window)
        for block, block_load in window:
            kept.append(block)
            loads.append(load)
            for n, (b_load, b_wall) in block_load.items():
                if b_load is None:
                    unread.add(n)
                else:
                    busy[n] += b_load * b_wall
                    spent[n] += b_wall
        if load is None:
            unread_total = True
        else:
            busy_total += load * wall
            wall_total += wall
        report(on_progress, len(kept), rounds, label)
    total = None if unread_total or wall_total <= 0 else round(busy_total / wall_total, 3)
    model_load = {n: (None if n in unread or spent[n] <= 0 else round(busy[n] / spent[n], 3)) for n in names}
    return Interleaved(names, kept, loads, total, int(runs), int(block_warmup), int(warmup), max_load=float(max_load),
                       retaken_rounds=retaken, loaded_rounds=loaded, model_load=model_load)


def _check(runnables: Sequence[Runnable], rounds: int, runs: int, block_warmup: int, warmup: int) -> list[str]:
    names = [r.name for r in runnables]
    if not runnables:
        raise ValueError("no runnables to time")
    if len(set(names)) != len(names):
        raise ValueError(f"runnable names must be unique, got {names}")
    for what, value, low in (("rounds", rounds, 1), ("runs", runs, 1), ("block_warmup", block_warmup, 0), ("warmup", warmup, 0)):
        if int(value) < low:
            raise ValueError(f"{what} must be >= {low}, got {value}")
    return names


def _input_picker(runnables: Sequence[Runnable]) -> Callable[[Runnable], Any]:
    """A function giving each runnable its inputs in turn, cycling."""
    count = {r.name: 0 for r in runnables}

    def next_input(r: Runnable) -> Any:
        x = r.inputs[count[r.name] % len(r.inputs)]
        count[r.name] += 1
        return x

    return next_input


def _rotated(runnables: Sequence[Runnable], k: int) -> list[Runnable]:
    """Round k's order: the list rotated by k."""
    shift = k % len(runnables)
    return list(runnables[shift:]) + list(runnables[:shift])


def _round(order: Sequence[Runnable], runs: int, block_warmup: int, next_input: Callable[[Runnable], Any],
           meter: Callable[[], Any] | None = None) -> tuple[dict[str, list[float]], dict[str, tuple[float | None, float]]]:
    """One round: a block of each runnable in `order` -> (name -> timed runs in s, name -> (block load, block wall s));
    loads only with `meter`."""
    block: dict[str, list[float]] = {}
    block_load: dict[str, tuple[float | None, float]] = {}
    for r in order:
        m, b0 = (meter() if meter is not None else None), time.perf_counter()
        for _ in range(block_warmup):
            r.fn(next_input(r))
        times = []
        for _ in range(runs):
            x = next_input(r)
            start = time.perf_counter()
            r.fn(x)
            times.append(time.perf_counter() - start)
        block[r.name] = times
        if m is not None:
            block_load[r.name] = (m.other_load(), time.perf_counter() - b0)
    return block, block_load
