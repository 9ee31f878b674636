"""How often does `mnetctl bench NEW --against OLD` cry wolf, and how often does it catch a real slowdown?

  false alarms  `bench X --against X` N times while a CPU hog (`python -c 'while True: pass'`) runs: regressions
                counted (want 0)
  power         V2-1.0 at 236 px (~11% more MACs) against the same at 224 px, N times quiet and N times under
                the hog: runs flagged as regressions counted (want >= 9 of 10 each)

Models: MobileNet V2 1.0 with random weights (timing does not depend on the weights). Every run is the CLI as a
CI job calls it, in its own process, with a short --max-seconds; the script prints one line per run and a
summary, and writes every run's `ab` section to --out.

    python scripts/ab_gate.py [--runs 10] [--max-seconds 20] [--tolerance 5%] [--threads N] [--out ab_gate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(folder: Path) -> dict[int, Path]:
    from mnetctl.builder import build_model, save_model

    paths = {}
    for res in (224, 236):
        paths[res] = save_model(build_model("v2", 1.0, res), folder / f"v2-1.0-{res}.onnx")
    return paths


def gate(new: Path, old: Path, args) -> dict:
    cmd = [sys.executable, "-m", "mnetctl", "bench", str(new), "--against", str(old), "--tolerance", args.tolerance,
           "--max-seconds", str(args.max_seconds), "--json", "-"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    doc = json.loads(proc.stdout)
    return {"rc": proc.returncode, **doc["ab"], "new_p50_ms": doc["new"]["p50_ms"], "old_p50_ms": doc["old"]["p50_ms"]}


class Hog:
    """One busy-looping process (one core's worth of other load), ended by its pid."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def series(name: str, new: Path, old: Path, args, hog: bool) -> list[dict]:
    runs = []
    ctx = Hog() if hog else None
    if ctx:
        ctx.__enter__()
    try:
        for i in range(args.runs):
            r = gate(new, old, args)
            runs.append(r)
            print(f"{name} {i + 1:2d}/{args.runs}: {r['verdict']:12s} ratio {r['ratio']:.3f} "
                  f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] {r['rounds']:3d} rounds {r['elapsed_s']:5.1f} s "
                  f"other load {r['other_load']} cores", flush=True)
    finally:
        if ctx:
            ctx.__exit__(None, None, None)
    return runs


def summary(runs: list[dict]) -> dict:
    verdicts = [r["verdict"] for r in runs]
    loads = [r["other_load"] for r in runs if r["other_load"] is not None]
    return {"runs": len(runs), **{v: verdicts.count(v) for v in ("ok", "regression", "inconclusive")},
            "ratio_median": sorted(r["ratio"] for r in runs)[len(runs) // 2],
            "seconds_median": sorted(r["elapsed_s"] for r in runs)[len(runs) // 2],
            "other_load_median": sorted(loads)[len(loads) // 2] if loads else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--tolerance", default="5%")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("ab_gate.json"))
    ap.add_argument("--only", choices=("false-alarms", "power-quiet", "power-hog"), action="append")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from mnetctl.hostinfo import cpu_summary

    plan = {
        "false-alarms": (224, 224, True),
        "power-quiet": (236, 224, False),
        "power-hog": (236, 224, True),
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = build(Path(tmp))
        out = {"host": cpu_summary(), "runs_per_series": args.runs, "max_seconds": args.max_seconds,
               "tolerance": args.tolerance, "threads": args.threads, "series": {}}
        for name, (new, old, hog) in plan.items():
            if args.only and name not in args.only:
                continue
            runs = series(name, paths[new], paths[old], args, hog)
            out["series"][name] = {"new": f"v2-1.0-{new}", "old": f"v2-1.0-{old}", "hog": hog,
                                   "summary": summary(runs), "runs": runs}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n{out['host']}, --tolerance {args.tolerance}, --max-seconds {args.max_seconds:g}, "
          f"threads {args.threads or 'default'}")
    for name, s in out["series"].items():
        t = s["summary"]
        print(f"{name:13s} {s['new']} vs {s['old']}{' + hog' if s['hog'] else ''}: regression {t['regression']}/"
              f"{t['runs']}, ok {t['ok']}, inconclusive {t['inconclusive']}; median ratio {t['ratio_median']:.3f}, "
              f"median {t['seconds_median']:.1f} s, other load {t['other_load_median']} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
