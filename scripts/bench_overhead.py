#!/usr/bin/env python
"""How much does `mnetctl bench`'s timing loop itself cost, relative to a MobileNet V1-0.25-128 run?

Three measurements on the CPU execution provider (the fastest model/EP pair we ship, so the worst case):

  A. instrumentation cost: the same loop `mnetctl.bench.timed_runs` uses, around a call that does nothing.
     Per-iteration cost (two clock reads, one list store, loop bookkeeping) divided by the model's mean latency.
  B. loop bookkeeping: wall time of a real measured loop minus the sum of its per-run times, over the wall time
     (what bench reports as `loop_overhead_pct`).
  C. against a bare loop: mean time per iteration of the instrumented loop vs a loop that only calls
     `run_with_iobinding`, rounds interleaved, medians compared (noisy on a busy machine; can come out negative).

Exit 0 when A and B are below the 2% target, 1 otherwise.

    python scripts/bench_overhead.py [--iterations 2000] [--rounds 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_PCT = 2.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from mnetctl.bench import timed_runs
    from mnetctl.builder import build_model, save_model
    from mnetctl.hostinfo import host_info
    from mnetctl.runtime import bind_io, create_session, random_feeds

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v1-0.25-128.onnx"
        save_model(build_model("v1", 0.25, 128), path)
        sinfo = create_session(path, "cpu", threads=args.threads, batch=1)
    sess = sinfo.session
    feeds = random_feeds(sess, batch=1)
    io = bind_io(sess, feeds)
    run = sess.run_with_iobinding
    run(io)
    for out, value in zip(sess.get_outputs(), io.get_outputs()):
        io.bind_ortvalue_output(out.name, value)
    timed_runs(run, io, 200, None)  # warm-up

    n = args.iterations
    bare_means, inst_means, book_pcts, model_means = [], [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            run(io)
        bare_means.append((time.perf_counter_ns() - t0) / n)
        samples, wall = timed_runs(run, io, n, None)
        inst_means.append(wall / n)
        model_means.append(sum(samples) / n)
        book_pcts.append((wall - sum(samples)) / wall * 100)

    def noop(_):
        return None

    noop_costs = []
    for _ in range(args.rounds):
        _, wall = timed_runs(noop, None, 200_000, None)
        noop_costs.append(wall / 200_000)

    model_ns = statistics.median(model_means)
    noop_ns = statistics.median(noop_costs)
    a_pct = noop_ns / model_ns * 100
    b_pct = statistics.median(book_pcts)
    c_pct = (statistics.median(inst_means) - statistics.median(bare_means)) / statistics.median(bare_means) * 100

    host = host_info()
    print(f"host: {host['cpu']} ({host['cores_logical']} cores), model V1-0.25-128 fp32 on CPU, threads {args.threads or 'default'}")
    print(f"median per-run latency (timed region): {model_ns / 1e6:.4f} ms over {args.rounds} x {n} runs")
    print(f"A. instrumentation cost per iteration: {noop_ns:.0f} ns = {a_pct:.3f}% of a run")
    print(f"B. loop wall time not inside timed runs: {b_pct:.3f}% (median of rounds)")
    print(f"C. instrumented vs bare loop, per iteration: {statistics.median(inst_means) / 1e6:.4f} ms vs "
          f"{statistics.median(bare_means) / 1e6:.4f} ms = {c_pct:+.2f}% (noise included)")
    ok = a_pct < TARGET_PCT and b_pct < TARGET_PCT
    print(f"target < {TARGET_PCT}% (A and B): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
