"""Exported TFLite files in LiteRT against mnetctl's ONNX models in ONNX Runtime, on the shipped val images.

For every pretrained classifier (or those given with --only): build (pretrained) -> quantize -> export
int8 (full integer), mixed and fp32 TFLite; then top-1 of each on the same preprocessed images, and
agreement of int8/mixed TFLite with the int8 ONNX model, fp32 TFLite with the fp32 ONNX model.
Also exports and runs a random-weight V3-Large and a width-0.35 V2 (`--extra`).

  python scripts/tflite_export_agreement.py --work /tmp/tfl-agree [--only v2-1-224] [--limit 200] [--json out.json]
  python scripts/tflite_export_agreement.py --work /tmp/tfl-agree --speed   # after a V2 run: LiteRT p50 of the
      V2 exports and the shipped TF2 PTQ checkpoint, interleaved (30 rounds of 10 runs each, 2 threads)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnetctl.builder import build_model, save_model  # noqa: E402
from mnetctl.data import default_val_dir, find_samples, iter_batches  # noqa: E402
from mnetctl.export.tflite import export_tflite  # noqa: E402
from mnetctl.litert import LiteRTRunner  # noqa: E402
from mnetctl.model import Model, fit_batches  # noqa: E402
from mnetctl.quant.pipeline import quantize_model  # noqa: E402

PRETRAINED = [("v1", 0.25, 128), ("v1", 0.5, 160), ("v1", 0.75, 192), ("v1", 1.0, 224), ("v2", 1.0, 224),
              ("v3-small", 1.0, 224)]
EXTRA = [("v3-large", 1.0, 224, "random"), ("v2", 0.35, 224, "random")]


def onnx_logits(path: Path, array: np.ndarray) -> np.ndarray:
    m = Model.open(path)
    sess = m.session(threads=2)
    outs = [sess.run([m.output_name], {m.input_name: chunk})[0][:n] for chunk, n in fit_batches(array, m.input)]
    return np.concatenate(outs)


def tflite_logits(path: Path, array: np.ndarray) -> np.ndarray:
    """LiteRT on NCHW float inputs: transposed to NHWC, quantized with the input tensor's parameters."""
    r = LiteRTRunner(path, threads=2)
    rows = []
    for x in array:
        x = np.ascontiguousarray(x.transpose(1, 2, 0)[None])
        if r.input_dtype == np.int8:
            scale, zero = r.input_quant
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        out = r(x).reshape(-1)
        scale, zero = r.output_quant
        rows.append((out.astype(np.float32) - zero) * scale if out.dtype != np.float32 else out)
    return np.stack(rows)


def top1(logits: np.ndarray, offset: int) -> np.ndarray:
    return np.argmax(logits[:, offset:], axis=1)


def images(model: Path, limit: int | None):
    m = Model.open(model)
    samples = find_samples(default_val_dir(), limit=limit)
    arrays, labels = [], []
    for batch in iter_batches(samples, m.preprocessor, 50):
        arrays.append(batch.array.copy())
        labels.extend(s.label for s in batch.samples_ok)
    return np.concatenate(arrays), np.array(labels), m.label_offset


def one(work: Path, arch: str, width: float, res: int, weights: str, limit: int | None) -> dict:
    stem = f"{arch}-{width:g}-{res}" + ("" if weights == "pretrained" else f"-{weights}")
    fp32 = work / f"{stem}.onnx"
    int8 = work / f"{stem}.int8.onnx"
    if not fp32.exists():
        save_model(build_model(arch, width, res, weights=weights), fp32)
    if not int8.exists():
        quantize_model(fp32, int8)
    files = {}
    for precision, src in (("int8", int8), ("mixed", int8), ("fp32", fp32)):
        files[precision] = export_tflite(src, work / f"{stem}.{precision}.tflite", precision)
    x, labels, offset = images(fp32, limit)
    ref = {"fp32": top1(onnx_logits(fp32, x), offset), "int8": top1(onnx_logits(int8, x), offset)}
    row = {"model": stem, "images": int(len(labels)),
           "onnx_fp32_top1": float(np.mean(ref["fp32"] == labels) * 100),
           "onnx_int8_top1": float(np.mean(ref["int8"] == labels) * 100),
           "onnx_fp32_bytes": fp32.stat().st_size, "onnx_int8_bytes": int8.stat().st_size}
    for precision, path in files.items():
        pred = top1(tflite_logits(path, x), offset)
        against = ref["fp32" if precision == "fp32" else "int8"]
        row[f"tflite_{precision}_top1"] = float(np.mean(pred == labels) * 100)
        row[f"tflite_{precision}_agreement"] = float(np.mean(pred == against) * 100)
        row[f"tflite_{precision}_bytes"] = path.stat().st_size
    return row


def speed(work: Path, rounds: int = 30, runs: int = 10) -> list[tuple[str, float]]:
    """LiteRT p50 (ms) of the V2 exports and the shipped TF2 PTQ V2, timed in alternating rounds."""
    import time

    from mnetctl.weights.registry import pretrained_dir

    files = [work / f"v2-1-224.{p}.tflite" for p in ("int8", "mixed", "fp32")]
    files.append(pretrained_dir() / "coral" / "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    runners = [LiteRTRunner(f, threads=2) for f in files]
    feeds = [np.zeros(r.chain[0].get_input_details()[0]["shape"], r.input_dtype) for r in runners]
    for r, x in zip(runners, feeds):
        for _ in range(20):
            r(x)
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, (r, x) in enumerate(zip(runners, feeds)):
            for _ in range(runs):
                t = time.perf_counter()
                r(x)
                times[i].append(time.perf_counter() - t)
    return [(f.name, float(np.median(t)) * 1e3) for f, t in zip(files, times)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--only", action="append", help="e.g. v2-1-224 (arch-width-res)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--extra", action="store_true", help="also the random-weight V3-Large and V2 0.35")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--speed", action="store_true", help="only time the V2 exports against the shipped TF2 PTQ V2")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.speed:
        rows = speed(args.work)
        base = rows[-1][1]
        for name, p50 in rows:
            print(f"{name:>40}  p50 {p50:7.3f} ms  {p50 / base:5.2f}x the TF2 PTQ checkpoint")
        return 0
    plan = [(a, w, r, "pretrained") for a, w, r in PRETRAINED] + (list(EXTRA) if args.extra else [])
    if args.only:
        plan = [p for p in plan if f"{p[0]}-{p[1]:g}-{p[2]}" in args.only]
    rows = []
    for arch, width, res, weights in plan:
        row = one(args.work, arch, width, res, weights, args.limit)
        rows.append(row)
        print(f"{row['model']:>22}  onnx fp32 {row['onnx_fp32_top1']:5.1f}  int8 {row['onnx_int8_top1']:5.1f} | tflite "
              + "  ".join(f"{p} {row[f'tflite_{p}_top1']:5.1f} (agree {row[f'tflite_{p}_agreement']:5.1f}%, "
                          f"{row[f'tflite_{p}_bytes'] / 1e6:.2f} MB)" for p in ("int8", "mixed", "fp32")), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
