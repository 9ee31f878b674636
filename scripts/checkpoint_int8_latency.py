#!/usr/bin/env python
"""Latency of a checkpoint imported as float (fp32) vs with its own int8 quantization (QDQ), CPU EP.

Builds `mnetctl build ARCH --weights pretrained` with `--precision fp32` and `--precision int8`, opens
both on ONNX Runtime's CPU execution provider with the same thread count, and times batch-1 runs of
one real val image in interleaved rounds (fp32 round, int8 round, fp32 round, ...) so that machine
load drifts hit both alike. Prints per-model p50/mean/p90 over all runs, the median over rounds of the
per-round p50 ratio, file sizes, and the integer kernels ONNX Runtime actually runs (from the
optimized graph it saves).

    python scripts/checkpoint_int8_latency.py [--arch v2] [--width 1.0] [--resolution 224]
                                              [--threads 2] [--rounds 10] [--iterations 100] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mnetctl.builder import build_model, save_model
from mnetctl.data import Preprocessor, default_val_dir, find_samples, load_image
from mnetctl.meta import read_meta


def optimized_op_counts(path: Path, threads: int) -> dict[str, int]:
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(opts.optimized_model_filepath).graph
    return dict(collections.Counter(n.op_type for n in graph.node).most_common())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="v2")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--weights", default="pretrained")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=100, help="timed runs per model per round")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from mnetctl.runtime import cpu_session

    sample = find_samples(default_val_dir(), 1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        models, sessions, sizes, kernels = {}, {}, {}, {}
        for precision in ("fp32", "int8"):
            model = build_model(args.arch, args.width, args.resolution, weights=args.weights, precision=precision)
            path = save_model(model, Path(tmp) / f"{precision}.onnx")
            models[precision] = path
            sizes[precision] = path.stat().st_size
            kernels[precision] = optimized_op_counts(path, args.threads)
            sessions[precision] = cpu_session(path, threads=args.threads)
        meta = read_meta(build_model(args.arch, args.width, args.resolution, weights=args.weights))
        x = Preprocessor.from_meta(meta)(load_image(sample.path))[None]
        name = sessions["fp32"].get_inputs()[0].name
        outputs = {}
        for precision, sess in sessions.items():
            for _ in range(args.warmup):
                outputs[precision] = sess.run(None, {name: x})[0]
        runs: dict[str, list[float]] = {"fp32": [], "int8": []}
        ratios = []
        for _ in range(args.rounds):
            p50 = {}
            for precision, sess in sessions.items():
                times = []
                for _ in range(args.iterations):
                    start = time.perf_counter()
                    sess.run(None, {name: x})
                    times.append((time.perf_counter() - start) * 1e3)
                runs[precision] += times
                p50[precision] = statistics.median(times)
            ratios.append(p50["fp32"] / p50["int8"])

    def stats(ms: list[float]) -> dict[str, float]:
        return {"p50_ms": round(statistics.median(ms), 3), "mean_ms": round(statistics.fmean(ms), 3),
                "p90_ms": round(float(np.percentile(ms, 90)), 3), "min_ms": round(min(ms), 3)}

    integer_ops = {k: v for k, v in kernels["int8"].items() if k.startswith(("QLinear", "QGemm", "ConvInteger", "MatMulInteger"))}
    report = {
        "model": f"{args.arch} {args.width:g} {args.resolution} weights={args.weights}",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs",
        "threads": args.threads, "batch": 1, "rounds": args.rounds, "iterations_per_round": args.iterations,
        "fp32": {**stats(runs["fp32"]), "size_bytes": sizes["fp32"]},
        "int8": {**stats(runs["int8"]), "size_bytes": sizes["int8"], "integer_kernels": integer_ops},
        "speedup_p50_median_over_rounds": round(statistics.median(ratios), 3),
        "size_ratio": round(sizes["fp32"] / sizes["int8"], 2),
        "same_top1": bool(np.argmax(outputs["fp32"]) == np.argmax(outputs["int8"])),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['model']} | {report['machine']} | CPU EP, {args.threads} threads, batch 1, "
          f"{args.rounds} interleaved rounds x {args.iterations} runs")
    print("| precision | size (MB) | p50 (ms) | mean (ms) | p90 (ms) | min (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for precision in ("fp32", "int8"):
        r = report[precision]
        print(f"| {precision} | {r['size_bytes'] / 1e6:.2f} | {r['p50_ms']:.2f} | {r['mean_ms']:.2f} | {r['p90_ms']:.2f} | {r['min_ms']:.2f} |")
    print(f"\nint8 speed-up (median over rounds of p50 fp32 / p50 int8): {report['speedup_p50_median_over_rounds']:.2f}x; "
          f"size {report['size_ratio']:.2f}x smaller")
    print("integer kernels in the optimized int8 graph: " + ", ".join(f"{k} {v}" for k, v in integer_ops.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
