"""Does the interleaved sweep measure what each model costs, and does its ranking survive a busy host?

(a) Own time kept: each of a few variants timed alone and timed interleaved in blocks with the others (the sweep's
    method, `stages.run_bench_group`'s runnables), alternating alone / interleaved several times; the ratio
    interleaved p50 / alone p50 per variant should be close to 1.
(b) Stability: one sweep grid timed quiet and with a CPU hog running (`python -c 'while True: pass'`, ended by its
    pid), once interleaved (the default) and once sequential (`--sequential`, each variant benched alone); the
    Kendall tau of the p50 ranking between quiet and hogged, per method.

    PYTHONPATH=$PWD python scripts/sweep_stability.py [--only NAME,...] [--iterations 100] [--max-seconds 20]

By default six pretrained variants whose latencies lie close together (where a sequential sweep's ranking flips).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two score lists over the same items (no ties expected in float latencies)."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
    return float(s / len(pairs))


def hog() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def sweep(variants, args, cache: Path, sequential: bool) -> dict[str, float]:
    from mnetctl.sweep import SweepSettings, run_sweep

    settings = SweepSettings(weights="pretrained", limit=args.limit, iterations=args.iterations, sequential=sequential,
                             max_load=args.max_load, max_seconds=args.max_seconds, fresh=False)
    res = run_sweep(variants, settings, cache_dir=cache)
    return res, {r.name: r.p50_ms for r in res.variants}


def own_time(models: dict[str, str], repeats: int, rounds: int, runs: int) -> dict[str, float]:
    """Median over `repeats` of (p50 interleaved with the others / p50 alone), per model."""
    from mnetctl.interleave import interleave
    from mnetctl.profiles import load_profile
    from mnetctl.stages import BLOCK_WARMUP, _bench_runnable

    prof = load_profile("host")
    runnables = [_bench_runnable(Path(m), n, prof, prof.threads)[0] for n, m in models.items()]
    ratios: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(repeats):
        alone = {}
        for r in runnables:
            alone[r.name] = interleave([r], rounds=rounds, runs=runs, block_warmup=BLOCK_WARMUP, warmup=10).stats[r.name].p50_ms
        both = interleave(runnables, rounds=rounds, runs=runs, block_warmup=BLOCK_WARMUP, warmup=10)
        for n in models:
            ratios[n].append(both.stats[n].p50_ms / alone[n])
    return {n: round(float(np.median(v)), 3) for n, v in ratios.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="v1-0.25-128-fp32,v1-0.25-128-int8,v1-0.5-160-int8,v3-small-1.0-224-fp32,"
                                      "v3-small-1.0-224-int8,v2-1.0-224-int8",
                    help="variant names from the pretrained grid (every checkpoint x fp32,int8)")
    ap.add_argument("--limit", type=int, default=8, help="images evaluated per variant (accuracy is not the point)")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--max-load", type=float, default=0.2)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--own-repeats", type=int, default=3)
    ap.add_argument("--own-rounds", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mnetctl-sweep-stability")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from mnetctl.hostinfo import cpu_summary
    from mnetctl.sweep import plan_variants

    grid, _ = plan_variants(None, None, None, ["fp32", "int8"], "pretrained")
    wanted = args.only.split(",")
    variants = [v for v in grid if v.name in wanted]
    missing = set(wanted) - {v.name for v in variants}
    if missing:
        raise SystemExit(f"not in the pretrained grid: {', '.join(sorted(missing))}")
    out: dict = {"host": cpu_summary(), "variants": [v.name for v in variants],
                 "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    # build, quantize and eval once (cached), so the timed sweeps below only time
    quiet_res, _ = sweep(variants, args, args.cache, sequential=True)
    models = {r.name: r.model for r in quiet_res.variants}

    picks = [variants[0].name, variants[len(variants) // 2].name, variants[-1].name]
    for runs in (10, 40):
        key = f"own_time_ratio_runs{runs}"
        out[key] = own_time({n: models[n] for n in picks}, args.own_repeats, max(1, args.own_rounds * 10 // runs), runs)
        print(f"own time, interleaved in blocks of {runs} / alone, p50:", out[key], flush=True)

    for method, sequential in (("interleaved", False), ("sequential", True)):
        res_q, quiet = _fresh_bench(variants, args, sequential)
        p = hog()
        try:
            res_h, loaded = _fresh_bench(variants, args, sequential)
        finally:
            p.kill()
            p.wait()
        names = list(quiet)
        tau = kendall_tau([quiet[n] for n in names], [loaded[n] for n in names])
        out[method] = {"tau": round(tau, 3), "quiet_p50_ms": {n: round(v, 4) for n, v in quiet.items()},
                       "hog_p50_ms": {n: round(v, 4) for n, v in loaded.items()},
                       "quiet_timing": res_q.timing, "hog_timing": res_h.timing,
                       "hog_other_load": {r.name: r.other_load for r in res_h.variants},
                       "quiet_ties": {r.name: r.ties_with for r in res_q.variants}}
        print(f"{method}: Kendall tau quiet vs hog = {tau:.3f}", flush=True)
        for n in names:
            print(f"  {n:<18} quiet {quiet[n]:7.3f} ms   hog {loaded[n]:7.3f} ms", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _fresh_bench(variants, args, sequential: bool):
    """A sweep whose timing is measured now: the earlier stages from the cache, the bench not (a fresh cache
    folder for bench entries would lose the built models, so the bench caches are cleared instead)."""
    import shutil

    for stage in ("bench", "bench_group"):
        shutil.rmtree(args.cache / stage, ignore_errors=True)
    return sweep(variants, args, args.cache, sequential)


if __name__ == "__main__":
    raise SystemExit(main())
