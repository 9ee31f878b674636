#!/usr/bin/env python
"""int8 vs fp32 latency of the pretrained MobileNets on ONNX Runtime's CPU execution provider.

For each model: build the float model from the shipped checkpoint, quantize it with `mnetctl`'s
defaults and with the checkpoint's exact per-tensor grid (for V2 also QDQ/QOperator x uint8/int8
activations, and ORT's own scales), then time batch-1 inference of one real val image with every
variant side by side: each round runs every session once, in a rotating order, so machine load
drifts hit all variants alike. Reported per variant: the fastest run and its ratio to fp32's fastest
(the least disturbed by other processes on a shared machine), p50 and the median over rounds of
(variant time / fp32 time in the same round), p90, file size, top-1 on the shipped val sample and
top-1 agreement with the float model.

With --quant-time it also times `quantize_model` on V2 with each calibration method (100 images).

    python scripts/bench_int8.py                       # V2 1.0/224, all variants
    python scripts/bench_int8.py --models all          # every shipped checkpoint
    python scripts/bench_int8.py --quant-time --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

MODELS = {
    "v1-0.25-128": ("v1", 0.25, 128),
    "v1-0.5-160": ("v1", 0.5, 160),
    "v1-0.75-192": ("v1", 0.75, 192),
    "v1-1.0-224": ("v1", 1.0, 224),
    "v2-1.0-224": ("v2", 1.0, 224),
    "v3-small-1.0-224": ("v3-small", 1.0, 224),
}

# Variants timed for V2 (the first is mnetctl's default for the architecture: QDQ, uint8 activations,
# int8 weights on zero-point-0 per-channel multiples of the checkpoint's grid step).
V2_VARIANTS = {
    "int8 default (qdq u8s8)": {},
    "int8 all layers": {"keep_float": [], "float_max_channels": 0},
    "int8 qdq s8s8": {"activations": "int8"},
    "int8 qop u8s8": {"fmt": "qoperator"},
    "int8 qop s8s8": {"fmt": "qoperator", "activations": "int8"},
    # the checkpoint's own per-tensor grid: bit-exact weights, non-zero weight zero points
    "int8 qdq u8s8 exact-grid": {"weight_grid": "exact"},
    "int8 qop u8s8 exact-grid": {"weight_grid": "exact", "fmt": "qoperator"},
    # ORT's own per-channel scales (max |w| / 127), grid ignored
    "int8 qdq u8s8 grid-off": {"weight_grid": "off"},
}
# Variants timed for the other models (a variant equal to the model's default is skipped).
ALL_INT8 = {"keep_float": [], "float_max_channels": 0}  # every quantizable node in int8
OTHER_VARIANTS = {
    "int8 default": {},
    "int8 all layers": ALL_INT8,
    "int8 all layers exact-grid": {**ALL_INT8, "weight_grid": "exact"},
    "int8 float stem": {"keep_float": ["stem.*"], "float_max_channels": 0},
}


def cpu_info() -> str:
    from mnetctl.hostinfo import cpu_flags, cpu_model

    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in cpu_flags()]
    return f"{cpu_model()} ({', '.join(isa) or 'no AVX2'})"


def one_image(model_path: Path) -> np.ndarray:
    from mnetctl.data import Preprocessor, default_val_dir, find_samples, load_image
    from mnetctl.meta import read_meta_file

    pre = Preprocessor.from_meta(read_meta_file(model_path))
    return pre(load_image(find_samples(default_val_dir(), 1)[0].path))[None]


def interleaved(paths: dict[str, Path], threads: int, warmup: int, rounds: int) -> dict[str, dict]:
    """Time batch-1 runs of every model in rotating order; per-round ratios against the first model."""
    from mnetctl.compare import onnx_runnable
    from mnetctl.interleave import interleave

    runnables = [onnx_runnable(p, threads, name=n, inputs=[one_image(p)]) for n, p in paths.items()]
    timed = interleave(runnables, rounds=rounds, runs=1, warmup=warmup)
    out = {}
    for n in paths:
        s = timed.stats[n]
        out[n] = {"p50_ms": s.p50_ms, "mean_ms": s.mean_ms, "p90_ms": s.p90_ms, "min_ms": s.min_ms,
                  "ratio_vs_first": timed.paired_ratio(n)}  # paired: same round
    return out


def build(name: str, folder: Path) -> Path:
    from mnetctl.builder import build_model, save_model

    arch, width, res = MODELS[name]
    path = folder / f"{name}.onnx"
    if not path.exists():
        save_model(build_model(arch, width, res, weights="pretrained"), path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="v2-1.0-224", help="comma list of " + ", ".join(MODELS) + ", or 'all'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=300, help="timed runs per variant")
    ap.add_argument("--no-eval", action="store_true", help="skip top-1/agreement on the val sample")
    ap.add_argument("--quant-time", action="store_true", help="also time quantize_model on V2 per calibration method")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the built/quantized models here")
    ap.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    args = ap.parse_args()
    logging.disable(logging.WARNING)

    from mnetctl.data import default_val_dir
    from mnetctl.quant.pipeline import quantize_model
    from mnetctl.quant.settings import resolve_settings

    names = list(MODELS) if args.models == "all" else [m.strip() for m in args.models.split(",")]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        print(f"unknown model(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    import onnxruntime

    print(f"CPU: {cpu_info()}, ONNX Runtime {onnxruntime.__version__}, CPU EP, {args.threads} threads, batch 1, "
          f"{args.rounds} interleaved rounds after {args.warmup} warm-up runs")
    results: dict = {"cpu": cpu_info(), "onnxruntime": onnxruntime.__version__, "threads": args.threads,
                     "rounds": args.rounds, "models": {}, "quant_time": {}}
    tmp = tempfile.TemporaryDirectory(prefix="bench-int8-")
    folder = args.workdir or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        fp32 = build(name, folder)
        variants = V2_VARIANTS if name.startswith("v2") else OTHER_VARIANTS
        paths, info = {"fp32": fp32}, {"fp32": {"size": fp32.stat().st_size}}
        arch, width = MODELS[name][:2]
        for label, opts in variants.items():
            if opts and resolve_settings(arch, width, **opts) == resolve_settings(arch, width):
                continue  # the default again
            out = folder / f"{name}.{label.replace(' ', '-')}.onnx"
            rep = quantize_model(fp32, out, opts, eval_data=None if args.no_eval else default_val_dir())
            paths[label] = out
            info[label] = {"size": rep.size_after, "settings": rep.settings, "seconds_quantize": rep.seconds_quantize,
                           "top1_float": rep.top1_before, "top1_int8": rep.top1_after, "agreement": rep.agreement}
        timing = interleaved(paths, args.threads, args.warmup, args.rounds)
        print(f"\n{name}")
        print(f"  {'variant':28s} {'min ms':>7s} {'x fp32':>7s} {'p50 ms':>7s} {'x fp32':>7s} {'p90':>7s} {'MB':>6s} "
              f"{'top-1':>6s} {'agree':>6s} {'quant s':>8s}")
        for label in paths:
            t, i = timing[label], info[label]
            top1 = i.get("top1_int8") if label != "fp32" else info[next(iter(variants))].get("top1_float")
            agree = i.get("agreement")
            print(f"  {label:28s} {t['min_ms']:7.2f} {t['min_ms'] / timing['fp32']['min_ms']:7.2f} {t['p50_ms']:7.2f} "
                  f"{t['ratio_vs_first']:7.2f} {t['p90_ms']:7.2f} {i['size'] / 2**20:6.2f} {'' if top1 is None else f'{100 * top1:5.1f}%':>6s} "
                  f"{'' if agree is None else f'{100 * agree:5.1f}%':>6s} "
                  f"{'' if label == 'fp32' else format(i['seconds_quantize'], '8.1f'):>8s}")
        results["models"][name] = {label: {**timing[label], **info[label]} for label in paths}
    if args.quant_time:
        fp32 = build("v2-1.0-224", folder)
        print("\nquantize_model on v2-1.0-224, 100 calibration images, no evaluation")
        for method in ("minmax", "entropy", "percentile"):
            rep = quantize_model(fp32, folder / f"v2-time-{method}.onnx", {"method": method})
            results["quant_time"][method] = {"seconds_quantize": rep.seconds_quantize, "seconds_calibrate": rep.seconds_calibrate}
            print(f"  {method:11s} {rep.seconds_quantize:6.1f} s total ({rep.seconds_calibrate:.1f} s calibration)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
