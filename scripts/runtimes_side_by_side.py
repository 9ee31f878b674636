"""ONNX Runtime, LiteRT and OpenVINO's own runtime side by side in one process, on the same weights.

  A. `bench --runtime litert` (mnetctl.bench) of the shipped tf2_mobilenet_v2_1.0_224_ptq.tflite against the LiteRT
     p50 of `compare` (mnetctl.compare) on the same file, the two alternated `--repeats` times; A2: the two timed
     calls themselves (bench's and compare's) interleaved in blocks;
  B. top-1 on the shipped val sample of mnetctl's int8 V2 (build v2 --weights pretrained, then quantize) under
     ONNX Runtime and under OpenVINO, and of quantize variants that change one choice each;
  C. timing in blocks (`--block` runs each, order rotating, `interleave`): ONNX Runtime and OpenVINO on the int8
     ONNX files, LiteRT on the checkpoint they were imported from (mobilenet_v2_1.0_224_quant.tflite: the same
     weights, uint8), on tf2_mobilenet_v2_1.0_224_ptq.tflite (int8) and, where mnetctl has the TFLite writer, on
     mnetctl's int8 model exported; ratios of p50s to LiteRT's and to OpenVINO on mnetctl's own quantize output.

Usage: PYTHONPATH=. python scripts/runtimes_side_by_side.py [--threads 2] [--rounds 20] [--block 40] [--json out.json]
The int8 files are made once in --work (default /tmp/mnetctl-runtimes).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORAL = REPO / "models" / "pretrained" / "coral"
# quantize variants: one choice changed from mnetctl's defaults each; "plain-qdq" is a plain per-channel QDQ model
VARIANTS = {
    "mnetctl": {},
    "no-int8-storage": {"int8_storage": False},
    "keep-zero-points": {"drop_zero_points": False},
    "all-layers-int8": {"keep_float": [], "float_max_channels": 0},
    "plain-qdq": {"keep_float": [], "float_max_channels": 0, "int8_storage": False, "drop_zero_points": False},
}


def make_models(work: Path) -> dict[str, Path]:
    from mnetctl.builder import build_model, save_model
    from mnetctl.quant.pipeline import quantize_model

    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "v2.onnx"
    if not fp32.is_file():
        save_model(build_model("v2", 1.0, 224, weights="pretrained"), fp32)
    out = {"fp32": fp32}
    for name, changes in VARIANTS.items():
        path = work / f"v2.{name}.int8.onnx"
        if not path.is_file():
            quantize_model(fp32, path, changes)
        out[name] = path
    try:  # the TFLite writer, where this mnetctl has it
        from mnetctl.export.tflite import export_tflite
    except ImportError:
        return out
    tfl = work / "v2.mnetctl.int8.tflite"
    if not tfl.is_file():
        export_tflite(out["mnetctl"], tfl)
    out["tflite"] = tfl
    return out


def part_a(onnx_model: Path, threads: int, repeats: int) -> dict:
    """bench and compare alternated: each pair back to back, so the per-pair ratio sees the same host state."""
    from mnetctl.bench import bench
    from mnetctl.compare import compare

    tfl = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
    bench_p50, compare_p50, pairs = [], [], []
    for k in range(repeats):
        def run_bench():
            return bench(tfl, runtime="litert", threads=threads, iterations=100, warmup=10).latency_ms["p50"]

        def run_compare():
            return compare(onnx_model, tfl, threads=threads, iterations=100, warmup=10, limit=4).litert.latency.p50_ms

        if k % 2 == 0:  # alternate which of the two goes first
            b, c = run_bench(), run_compare()
        else:
            c, b = run_compare(), run_bench()
        bench_p50.append(round(b, 4))
        compare_p50.append(round(c, 4))
        pairs.append(b / c)
    from mnetctl.stats import median_ci

    lo, hi = median_ci(pairs, 0.95)
    return {"file": str(tfl.relative_to(REPO)), "threads": threads, "repeats": repeats,
            "bench_p50_ms": bench_p50, "compare_litert_p50_ms": compare_p50,
            "ratio_median_of_pairs": round(statistics.median(pairs), 4), "ratio_ci95": [round(lo, 4), round(hi, 4)]}


def part_a2(threads: int, rounds: int, block: int) -> dict:
    """The two timed calls themselves interleaved in blocks: bench's (`engines.load(...).run`: invoke on the input
    set once) against compare's (`LiteRTRunner.__call__`: set the input, invoke, read the output), each on its own
    interpreter of the same file."""
    from mnetctl.engines import load, runnable
    from mnetctl.interleave import Runnable, interleave
    from mnetctl.litert import LiteRTRunner
    from mnetctl.tune import paired_ci

    tfl = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
    loaded = load("litert", tfl, threads=threads)
    runner = LiteRTRunner(tfl, threads)
    x = loaded.keep[1]
    timing = interleave([runnable("bench", loaded), Runnable("compare", runner, [x])], rounds=rounds, runs=block,
                        block_warmup=5, warmup=20, label="bench vs compare calls")
    return {"rounds": rounds, "runs_per_block": block, "other_load": timing.other_load,
            "bench_p50_ms": round(timing.stats["bench"].p50_ms, 4), "compare_p50_ms": round(timing.stats["compare"].p50_ms, 4),
            "ratio_paired": round(timing.paired_ratio("bench", "compare"), 4),
            "ratio_ci95": [round(v, 4) for v in paired_ci(timing, "bench", "compare")]}


def part_b(models: dict[str, Path], threads: int) -> dict:
    from mnetctl.evaluate import evaluate

    out = {}
    for name, path in models.items():
        if name in ("fp32", "tflite"):
            continue
        ort = evaluate(path, threads=threads)
        ov = evaluate(path, threads=threads, runtime="openvino")
        agree = sum(a == b for a, b in zip(ort.predictions, ov.predictions))
        out[name] = {"onnxruntime_top1": ort.top1, "openvino_top1": ov.top1,
                     "points": round(100 * (ov.top1 - ort.top1), 2), "agreement": agree / max(1, len(ort.predictions)),
                     "images": ort.n, "size_mb": round(path.stat().st_size / 1e6, 3)}
    return out


def part_c(models: dict[str, Path], threads: int, rounds: int, block: int) -> dict:
    from mnetctl.engines import load, runnable
    from mnetctl.interleave import interleave

    loaded = {"litert (checkpoint)": load("litert", CORAL / "mobilenet_v2_1.0_224_quant.tflite", threads=threads),
              # other weights (TF2 post-training quantization), int8 tensors: the path XNNPACK takes by default
              "litert tf2-ptq": load("litert", CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite", threads=threads)}
    exported = models.get("tflite")
    if exported is not None:  # mnetctl's own int8 model exported to TFLite: the same integers on LiteRT
        loaded["litert mnetctl export"] = load("litert", exported, threads=threads)
    for name in ("mnetctl", "plain-qdq"):
        loaded[f"onnxruntime {name}"] = load("onnxruntime", models[name], threads=threads, eps=["cpu"])
    for name in VARIANTS:
        loaded[f"openvino {name}"] = load("openvino", models[name], threads=threads)
    timing = interleave([runnable(n, m) for n, m in loaded.items()], rounds=rounds, runs=block, block_warmup=5,
                        warmup=20, label="runtimes")
    ref = "litert (checkpoint)"
    from mnetctl.tune import paired_ci

    rows = {}
    for n in timing.names:
        rows[n] = {"p50_ms": round(timing.stats[n].p50_ms, 4),
                   "p50_ci95_ms": [round(x, 4) for x in timing.p50_ci_ms(n)],
                   "ratio_to_litert_paired": round(timing.paired_ratio(n, ref), 4),
                   "ratio_to_litert_ci95": [round(x, 4) for x in paired_ci(timing, n, ref)],
                   "ratio_to_openvino_mnetctl_paired": round(timing.paired_ratio(n, "openvino mnetctl"), 4),
                   "ratio_to_openvino_mnetctl_ci95": [round(x, 4) for x in paired_ci(timing, n, "openvino mnetctl")]}
    return {"threads": threads, "rounds": rounds, "runs_per_block": block, "other_load": timing.other_load, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--block", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mnetctl-runtimes"))
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from mnetctl.engines import version
    from mnetctl.hostinfo import cpu_summary

    skip = set(args.skip.split(",")) - {""}
    models = make_models(args.work)
    doc = {"host": cpu_summary(), "versions": [version(e) for e in ("onnxruntime", "litert", "openvino")]}
    print(json.dumps(doc))
    if "a" not in skip:
        doc["bench_vs_compare"] = part_a(models["fp32"], args.threads, args.repeats)
        print(json.dumps({"bench_vs_compare": doc["bench_vs_compare"]}, indent=1))
    if "a2" not in skip:
        doc["bench_vs_compare_calls"] = part_a2(args.threads, args.rounds, args.block)
        print(json.dumps({"bench_vs_compare_calls": doc["bench_vs_compare_calls"]}, indent=1))
    if "b" not in skip:
        doc["accuracy"] = part_b(models, args.threads)
        print(json.dumps({"accuracy": doc["accuracy"]}, indent=1))
    if "c" not in skip:
        doc["timing"] = part_c(models, args.threads, args.rounds, args.block)
        print(json.dumps({"timing": doc["timing"]}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
