#!/usr/bin/env python
"""Latency of checkpoints imported as float (fp32) vs with their own int8 quantization (QDQ), CPU EP.

For each model: `build --weights pretrained` as fp32, as int8 in the default CPU layout and as int8 in the
checkpoint layout (`--int8-layout checkpoint`: the file's integers on every layer), each opened on ONNX
Runtime's CPU execution provider with the same thread count, timed on one real val image in interleaved
rounds (`mnetctl.interleave`: short blocks of runs per model, rotating, so load drifts hit all alike).
Prints per variant the p50, the median over rounds of the per-round ratio to fp32, the file size ratio,
the integer kernels ONNX Runtime actually runs and, unless --no-eval, top-1 on the shipped val sample
and agreement with the fp32 import.

    python scripts/checkpoint_int8_latency.py                         # every shipped ImageNet checkpoint
    python scripts/checkpoint_int8_latency.py --models v2-1.0-224 --threads 2 --rounds 40 --json out.json
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_int8 import MODELS, one_image  # noqa: E402

VARIANTS = {"fp32": {"precision": "fp32"}, "int8 cpu": {"precision": "int8", "int8_layout": "cpu"},
            "int8 checkpoint": {"precision": "int8", "int8_layout": "checkpoint"}}
INTEGER_OPS = ("QLinear", "QGemm", "ConvInteger", "MatMulInteger")


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
    ap.add_argument("--models", default="all", help="comma list of " + ", ".join(MODELS) + ", or 'all'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--iterations", type=int, default=10, help="timed runs per model per round")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from mnetctl.builder import build_model, save_model
    from mnetctl.compare import onnx_runnable
    from mnetctl.data import default_val_dir
    from mnetctl.evaluate import evaluate
    from mnetctl.hostinfo import cpu_summary
    from mnetctl.interleave import interleave

    names = list(MODELS) if args.models == "all" else args.models.split(",")
    print(f"{cpu_summary()} | CPU EP, {args.threads} threads, batch 1, {args.rounds} interleaved rounds x {args.iterations} runs")
    print("| model | variant | p50 ms | x fp32 time | smaller | top-1 | agreement | integer kernels |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    results: dict = {"machine": cpu_summary(), "threads": args.threads, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            arch, width, res = MODELS[name]
            paths = {label: save_model(build_model(arch, width, res, weights="pretrained", **kw), Path(tmp) / f"{name}.{i}.onnx")
                     for i, (label, kw) in enumerate(VARIANTS.items())}
            runnables = [onnx_runnable(p, args.threads, name=label, inputs=[one_image(p)]) for label, p in paths.items()]
            timed = interleave(runnables, rounds=args.rounds, runs=args.iterations, warmup=args.warmup)
            evals = {} if args.no_eval else {label: evaluate(p, default_val_dir()) for label, p in paths.items()}
            rows = {}
            for label, p in paths.items():
                ops = optimized_op_counts(p, args.threads)
                row = {"p50_ms": timed.stats[label].p50_ms, "ratio_vs_fp32": timed.paired_ratio(label, ref="fp32"),
                       "size_bytes": p.stat().st_size, "size_ratio": paths["fp32"].stat().st_size / p.stat().st_size,
                       "integer_kernels": {k: v for k, v in ops.items() if k.startswith(INTEGER_OPS)}}
                if evals:
                    ev, ref = evals[label], evals["fp32"]
                    row["top1"] = ev.top1
                    row["agreement"] = sum(a == b for a, b in zip(ev.predictions, ref.predictions)) / ref.n
                rows[label] = row
                kernels = ", ".join(f"{k} {v}" for k, v in row["integer_kernels"].items()) or "-"
                top1 = f"{100 * row['top1']:.1f}" if "top1" in row else ""
                agree = f"{100 * row['agreement']:.1f}%" if "agreement" in row and label != "fp32" else ""
                print(f"| {name} | {label} | {row['p50_ms']:.2f} | {row['ratio_vs_fp32']:.2f} | {row['size_ratio']:.2f}x | "
                      f"{top1} | {agree} | {kernels} |")
            results["models"][name] = {"variants": rows, "other_load": timed.other_load}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
