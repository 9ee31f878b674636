#!/usr/bin/env python
"""Latency of a checkpoint imported as float (fp32) vs with its own int8 quantization (QDQ), CPU EP.

Builds `mnetctl build ARCH --weights pretrained` with `--precision fp32` and `--precision int8`, opens
both on ONNX Runtime's CPU execution provider with the same thread count, and times batch-1 runs of
one real val image in interleaved rounds (`mnetctl.interleave`: a block of fp32 runs, a block of int8
runs, then the other way round, ...) so that machine load drifts hit both alike. Prints per-model p50/mean/p90 over all runs, the median over rounds of the
per-round p50 ratio, file sizes, and the integer kernels ONNX Runtime actually runs (from the
optimized graph it saves).

    python scripts/checkpoint_int8_latency.py [--arch v2] [--width 1.0] [--resolution 224]
                                              [--threads 2] [--rounds 10] [--iterations 100] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from mnetctl.builder import build_model, save_model
from mnetctl.compare import onnx_runnable
from mnetctl.data import Preprocessor, default_val_dir, find_samples, load_image
from mnetctl.hostinfo import cpu_summary
from mnetctl.interleave import interleave
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

    sample = find_samples(default_val_dir(), 1)[0]
    meta = read_meta(build_model(args.arch, args.width, args.resolution, weights=args.weights))
    x = Preprocessor.from_meta(meta)(load_image(sample.path))[None]
    with tempfile.TemporaryDirectory() as tmp:
        runnables, sizes, kernels = [], {}, {}
        for precision in ("fp32", "int8"):
            model = build_model(args.arch, args.width, args.resolution, weights=args.weights, precision=precision)
            path = save_model(model, Path(tmp) / f"{precision}.onnx")
            sizes[precision] = path.stat().st_size
            kernels[precision] = optimized_op_counts(path, args.threads)
            runnables.append(onnx_runnable(path, args.threads, name=precision, inputs=[x]))
        outputs = {r.name: r.fn(r.inputs[0])[0] for r in runnables}
        timed = interleave(runnables, rounds=args.rounds, runs=args.iterations, warmup=args.warmup)

    def stats(precision: str) -> dict[str, float]:
        doc = timed.stats[precision].as_dict(suffix="_ms", digits=3)
        return {k: doc[k] for k in ("p50_ms", "mean_ms", "p90_ms", "min_ms")}

    integer_ops = {k: v for k, v in kernels["int8"].items() if k.startswith(("QLinear", "QGemm", "ConvInteger", "MatMulInteger"))}
    report = {
        "model": f"{args.arch} {args.width:g} {args.resolution} weights={args.weights}",
        "machine": cpu_summary(),
        "threads": args.threads, "batch": 1, "rounds": args.rounds, "iterations_per_round": args.iterations,
        "fp32": {**stats("fp32"), "size_bytes": sizes["fp32"]},
        "int8": {**stats("int8"), "size_bytes": sizes["int8"], "integer_kernels": integer_ops},
        "speedup_p50_median_over_rounds": round(timed.paired_ratio("fp32", ref="int8"), 3),
        "other_load": timed.other_load,
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
