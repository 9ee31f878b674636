#!/usr/bin/env python
"""Top-1 of every shipped checkpoint imported into our ONNX graphs vs the same .tflite run in LiteRT.

Builds each model the way `mnetctl build ... --weights pretrained|PATH [--precision fp32|int8]` does
(fp32: dequantized weights; int8: the checkpoint's own quantization as a QDQ model), evaluates it
with the product's eval path on the shipped 200-image val sample, runs the original .tflite in LiteRT
(optimized and reference kernels) on the same crops, and prints a Markdown table with top-1 figures
and the per-image top-1 agreement. LiteRT columns are left out when ai-edge-litert is not installed.

    python scripts/pretrained_accuracy.py [--data DIR] [--limit N] [--precisions fp32,int8] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mnetctl.builder import build_model, save_model
from mnetctl.data import Preprocessor, default_val_dir, find_samples, load_image
from mnetctl.errors import EnvironmentMissing
from mnetctl.evaluate import evaluate
from mnetctl.hostinfo import cpu_summary
from mnetctl.litert import load_litert
from mnetctl.meta import read_meta
from mnetctl.weights.registry import pretrained_dir

CASES = [  # (label, arch, width, resolution, --weights, .tflite files run in LiteRT)
    ("v1 0.25/128", "v1", 0.25, 128, "pretrained", ["coral/mobilenet_v1_0.25_128_quant.tflite"]),
    ("v1 0.5/160", "v1", 0.5, 160, "pretrained", ["coral/mobilenet_v1_0.5_160_quant.tflite"]),
    ("v1 0.75/192", "v1", 0.75, 192, "pretrained", ["coral/mobilenet_v1_0.75_192_quant.tflite"]),
    ("v1 1.0/224", "v1", 1.0, 224, "pretrained",
     ["coral/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite", "coral/mobilenet_quant_v1_224_head_layers.tflite"]),
    ("v2 1.0/224 quant", "v2", 1.0, 224, "pretrained", ["coral/mobilenet_v2_1.0_224_quant.tflite"]),
    ("v2 1.0/224 tf2 ptq", "v2", 1.0, 224, "coral/tf2_mobilenet_v2_1.0_224_ptq.tflite",
     ["coral/tf2_mobilenet_v2_1.0_224_ptq.tflite"]),
    ("v3-small 1.0/224", "v3-small", 1.0, 224, "pretrained", ["atu/v3-small_224_1.0_uint8.tflite"]),
]


def litert_top1(files: list[Path], crops: list[np.ndarray], meta, kernels: str) -> list[set[int]]:
    """Per crop, the classes tied for LiteRT's highest score (the uint8 softmax has steps of 1/256)."""
    from mnetctl.litert import LiteRTRunner

    lite = LiteRTRunner(files, threads=None, kernels=kernels)
    mean, std = np.asarray(meta.mean, np.float32), np.asarray(meta.std, np.float32)

    def normalise(crop: np.ndarray) -> np.ndarray:
        return (crop.astype(np.float32) - mean) / std

    tops = []
    for crop in crops:
        s = lite.scores(lite(lite.prepare(crop, normalise)))
        tops.append({int(i) for i in np.flatnonzero(s == s.max())})
    return tops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_val_dir())
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--precisions", default="fp32,int8", help="comma list of fp32,int8 (build --precision)")
    ap.add_argument("--json", action="store_true", help="one JSON object per model instead of the table")
    args = ap.parse_args()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    try:
        load_litert()
        have_litert = True
    except EnvironmentMissing:
        have_litert = False
    samples = find_samples(args.data, args.limit)
    labels = [s.label for s in samples]
    images = [load_image(s.path) for s in samples]
    root = pretrained_dir()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch, width, res, weights, files in CASES:
            w = weights if weights == "pretrained" else str(root / weights)
            row = {"model": label}
            tops = {}
            for prec in precisions:
                model = build_model(arch, width, res, weights=w, precision=prec)
                path = Path(tmp) / f"m.{prec}.onnx"
                save_model(model, path)
                start = time.perf_counter()
                result = evaluate(path, samples, batch=50)
                meta = read_meta(model)
                row.update({"weights": meta.weights, "n": result.n, f"{prec}_top1": round(100 * result.top1, 2),
                            f"{prec}_top5": round(100 * result.top5, 2), f"{prec}_size_mb": round(path.stat().st_size / 1e6, 3),
                            f"{prec}_eval_s": round(time.perf_counter() - start, 2)})
                tops[prec] = result.predictions
            if have_litert:
                crops = [Preprocessor.from_meta(meta).resize_crop(im) for im in images]
                for kernels, key in (("AUTO", "litert"), ("BUILTIN_REF", "litert_ref")):
                    lite = litert_top1([root / f for f in files], crops, meta, kernels)
                    row[f"{key}_top1"] = round(100 * float(np.mean([min(t) == y for t, y in zip(lite, labels)])), 2)
                    for prec in precisions:
                        row[f"{key}_agree_{prec}"] = round(100 * float(np.mean([p in t for p, t in zip(tops[prec], lite)])), 2)
            rows.append(row)
            if args.json:
                print(json.dumps(row))
    if args.json:
        return 0
    print(f"machine: {cpu_summary()}, "
          f"python {platform.python_version()}; data {args.data} ({len(samples)} images)\n")
    head, rule = "| model | weights |", "|---|---|"
    for prec in precisions:
        head += f" {prec} top-1 % | {prec} top-5 % |"
        rule += "---:|---:|"
    if have_litert:
        for key, what in (("litert", "LiteRT"), ("litert_ref", "LiteRT ref kernels")):
            head += f" {what} top-1 % |" + "".join(f" agree {prec} % |" for prec in precisions)
            rule += "---:|" * (1 + len(precisions))
    print(head)
    print(rule)
    for r in rows:
        line = f"| {r['model']} | `{r['weights'].split(':', 1)[1].split('+')[0].split('/')[-1]}` |"
        for prec in precisions:
            line += f" {r[f'{prec}_top1']:.1f} | {r[f'{prec}_top5']:.1f} |"
        if have_litert:
            for key in ("litert", "litert_ref"):
                line += f" {r[f'{key}_top1']:.1f} |" + "".join(f" {r[f'{key}_agree_{prec}']:.1f} |" for prec in precisions)
        print(line)
    if not have_litert:
        print("\n(ai-edge-litert not installed: LiteRT columns left out; pip install 'mnetctl[litert]')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
