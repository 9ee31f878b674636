#!/usr/bin/env python
"""Where an int8 model's time goes on ONNX Runtime's CPU EP, layer by layer, next to its float model.

Runs ORT's per-node profiler on the float model and on int8 variants (batch 1, one real val image),
maps the kernels ORT actually runs (fused QLinearConv, NCHWc Conv, inlined hard-swish pieces, the
QuantizeLinear/DequantizeLinear left unfused, layout Transposes/Reorders) back to our layer names, and
prints per layer the float and int8 kernel time in microseconds per run, then totals per kind of node.
Profiled times include the profiler's own overhead; compare columns, not absolute figures.

    python scripts/int8_profile.py v3-small-1.0-224                 # float vs default int8
    python scripts/int8_profile.py v1-0.25-128 --variant all='{"keep_float": [], "float_max_channels": 0}'
    python scripts/int8_profile.py v1-0.25-128 --threads 1 --runs 300 --kinds-only
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_int8 import MODELS, build, one_image  # noqa: E402

_SUFFIX = re.compile(r"(_token_\d+|_nchwc|\.quantize|\.dequantize|_QuantizeLinear|_DequantizeLinear)+$")


def layer_of(node: str) -> str:
    """Our layer name for an ORT kernel name: blocks.3.dw_token_12 / blocks.3.dw.act_nchwc -> blocks.3.dw."""
    name = _SUFFIX.sub("", node)
    if not name.startswith(("blocks.", "stem.", "head.")):
        return name
    name = re.sub(r"\.(act(\.hardsigmoid)?|add|scale|gate|pool)$", "", name)
    return "stem.conv" if name == "stem" else name  # the stem's activation is stem.act, not stem.conv.act


def kind_of(op: str, node: str) -> str:
    if op in ("QuantizeLinear", "DequantizeLinear"):
        return f"{op} (unfused)"
    if op in ("Transpose", "ReorderInput", "ReorderOutput"):
        return "layout (Transpose/Reorder)"
    if ".dw" in node and "Conv" in op:
        return f"{op} depthwise"
    return op


def profile(path: Path, threads: int, runs: int) -> list[dict]:
    from mnetctl.runtime.session import op_profile

    x = one_image(path)
    return op_profile(path, "cpu", {"input": x}, runs=runs, threads=threads, top=100_000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=list(MODELS))
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL=JSON quantize settings (repeatable) [default: default={}]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--kinds-only", action="store_true", help="print only the totals per kind of node")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from mnetctl.quant.pipeline import quantize_model

    tmp = tempfile.TemporaryDirectory(prefix="int8-profile-")
    folder = args.workdir or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = build(args.model, folder)
    paths = {"fp32": fp32}
    for spec in args.variant or ["default={}"]:
        label, _, settings = spec.partition("=")
        out = folder / f"{args.model}.{label}.onnx"
        quantize_model(fp32, out, json.loads(settings or "{}"))
        paths[label] = out

    per_layer: dict[str, dict[str, float]] = {}
    per_kind: dict[str, collections.Counter] = {}
    ops: dict[str, dict[str, set]] = {}
    for label, path in paths.items():
        layers, kinds = collections.Counter(), collections.Counter()
        for row in profile(path, args.threads, args.runs):
            us = 1000.0 * row["total_ms"] / args.runs
            layer = layer_of(row["node"])
            layers[layer] += us
            kinds[kind_of(row["op"], row["node"])] += us
            ops.setdefault(label, {}).setdefault(layer, set()).add(row["op"])
        per_layer[label], per_kind[label] = dict(layers), kinds
    labels = list(paths)
    print(f"{args.model}: ORT CPU EP, {args.threads} thread(s), {args.runs} profiled runs, us per run")
    if not args.kinds_only:
        order = sorted({k for v in per_layer.values() for k in v}, key=lambda k: -max(v.get(k, 0) for v in per_layer.values()))
        print(f"{'layer':34s}" + "".join(f"{lab:>12s}" for lab in labels) + "   int8 kernels (" + labels[-1] + ")")
        for layer in order:
            cells = "".join(f"{per_layer[lab].get(layer, 0.0):12.1f}" for lab in labels)
            print(f"{layer[:34]:34s}{cells}   {','.join(sorted(ops.get(labels[-1], {}).get(layer, ())))}")
    print(f"\n{'kind of node':34s}" + "".join(f"{lab:>12s}" for lab in labels))
    kinds = sorted({k for c in per_kind.values() for k in c}, key=lambda k: -max(c.get(k, 0) for c in per_kind.values()))
    for kind in kinds:
        print(f"{kind[:34]:34s}" + "".join(f"{per_kind[lab].get(kind, 0.0):12.1f}" for lab in labels))
    print(f"{'total':34s}" + "".join(f"{sum(per_kind[lab].values()):12.1f}" for lab in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
