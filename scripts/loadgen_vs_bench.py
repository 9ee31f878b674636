#!/usr/bin/env python
"""LoadGen's single-stream p90 against `bench`'s p90 for the same model, measured in one run, alternating.

Builds V2 1.0/224 int8 from the shipped checkpoint (`build --precision int8`, or give a model), then takes
`--rounds` rounds; each round runs `mnetctl.bench.bench` for `--seconds` and a LoadGen single-stream test of
the same length (`mnetctl.loadgen.run_loadgen`, shortened, so not an MLPerf-valid result), in alternating order
(ABAB with the first alternating), so a burst of other work on the machine lands on both alike. Both use the same session settings
(CPU execution provider, `--threads`). Reported: each round's two p90s and their ratio LoadGen/bench, the median
ratio (the acceptance: within 10%), the other processes' CPU load during each run (cores), and with --accuracy, LoadGen's accuracy-mode top-1 against `evaluate` on
the whole shipped val sample.

    python scripts/loadgen_vs_bench.py                     # V2 1.0/224 int8, 4 rounds of 5 s each way
    python scripts/loadgen_vs_bench.py --rounds 6 --seconds 10 --threads 1 --accuracy --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="ONNX model (default: V2 1.0/224 int8 built from the shipped checkpoint)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each bench and each LoadGen run")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="images in LoadGen's QSL (default: all 200)")
    ap.add_argument("--accuracy", action="store_true", help="also compare LoadGen accuracy-mode top-1 with evaluate")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from mnetctl.bench import bench
    from mnetctl.hostinfo import LoadMeter, host_info
    from mnetctl.loadgen import run_loadgen

    tmp = Path(tempfile.mkdtemp(prefix="loadgen-vs-bench-"))
    model = args.model
    if model is None:
        from mnetctl.builder import build_model, save_model

        model = tmp / "v2-1.0-224-int8.onnx"
        save_model(build_model("v2", 1.0, 224, weights="pretrained", precision="int8"), model)

    rows = []
    for r in range(args.rounds):
        order = ("bench", "loadgen") if r % 2 == 0 else ("loadgen", "bench")
        got = {}
        for who in order:
            meter = LoadMeter()
            if who == "bench":
                res = bench(model, eps="cpu", threads=args.threads, duration=args.seconds, warmup=20)
                got["bench"] = {"p90": res.latency_ms["p90"], "p50": res.latency_ms["p50"], "runs": res.iterations}
            else:
                res = run_loadgen(model, "single-stream", eps="cpu", threads=args.threads, min_duration=args.seconds,
                                  min_queries=64, limit=args.limit, out_dir=tmp / f"lg-{r}")
                got["loadgen"] = {"p90": res.p90_ms, "p50": res.latency_ms.get("p50"),
                                  "early_stopping_p90": res.early_stopping_ms.get("p90"), "result": res.result,
                                  "sut_p90": res.sut_ms.get("p90"), "sut_p50": res.sut_ms.get("p50")}
            got[who]["other_load"] = meter.other_load()
        ratio = got["loadgen"]["p90"] / got["bench"]["p90"]
        rows.append({"round": r + 1, "order": list(order), **got, "ratio_p90": ratio})
        print(f"round {r + 1} ({order[0]} first): bench p90 {got['bench']['p90']:.3f} ms (p50 {got['bench']['p50']:.3f}), "
              f"LoadGen p90 {got['loadgen']['p90']:.3f} ms (p50 {got['loadgen']['p50']:.3f}, early-stopping p90 "
              f"{got['loadgen']['early_stopping_p90']:.3f}; inside the SUT p90 {got['loadgen']['sut_p90']:.3f}), ratio {ratio:.3f}; other processes "
              f"{got['bench']['other_load']} / {got['loadgen']['other_load']} cores", flush=True)
    med = statistics.median(row["ratio_p90"] for row in rows)
    sut_med = statistics.median(row["loadgen"]["sut_p90"] / row["bench"]["p90"] for row in rows)
    out = {"model": str(model), "threads": args.threads, "seconds": args.seconds, "host": host_info().get("cpu"),
           "cores": host_info().get("cores_logical"), "rounds": rows, "median_ratio_p90": med, "median_ratio_sut_p90": sut_med,
           "within_10pct": abs(med - 1) <= 0.10}
    print(f"median LoadGen/bench p90 ratio over {len(rows)} rounds: {med:.3f} "
          f"({'within' if out['within_10pct'] else 'NOT within'} 10%); "
          f"the SUT's own time per query against bench: p90 ratio {sut_med:.3f}")

    if args.accuracy:
        from mnetctl.evaluate import evaluate

        acc = run_loadgen(model, "single-stream", "accuracy", eps="cpu", threads=args.threads, limit=args.limit,
                          out_dir=tmp / "lg-accuracy")
        ev = evaluate(model, limit=args.limit)
        same = sum(a == b for a, b in zip(acc.predictions, ev.predictions))
        out["accuracy"] = {"loadgen_top1": acc.top1, "eval_top1": ev.top1, "n": ev.n, "same_class": same}
        print(f"accuracy: LoadGen top-1 {100 * acc.top1:.2f}% ({acc.correct1}/{acc.scored}), eval top-1 "
              f"{100 * ev.top1:.2f}% ({ev.correct1}/{ev.n}); same class on {same}/{ev.n} images")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["within_10pct"] else 1


if __name__ == "__main__":
    sys.exit(main())
