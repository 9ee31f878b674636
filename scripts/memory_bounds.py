#!/usr/bin/env python
"""Peak memory of `mnetctl eval` and `mnetctl sweep` against the number of images: it must stay flat.

Both commands stream images (one batch decoded at a time), so evaluating the shipped 200 val images
and the same images repeated N times (a temporary ImageFolder of symlinks, 200*N images) should
peak at about the same resident set size. Each measurement is a fresh `python -m mnetctl` process;
its peak RSS comes from the kernel (wait4 rusage), so it counts everything: Python, onnxruntime,
the model, the decoded batch.

    python scripts/memory_bounds.py [--repeat 4] [--batch 32] [--arch v2 --width 1.0 --weights pretrained]

Prints a table (and --json for a machine-readable copy). Exit 1 if the larger set peaks more than
--tolerance-mb above the 200-image run (default 64 MiB): that would mean memory grows with the data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VAL = REPO / "data" / "imagenet-sample" / "val"


def repeated_val(dest: Path, times: int) -> int:
    """DIR/<wnid>/<k>_<name> symlinks to every val image, `times` times over; returns the image count."""
    n = 0
    for cls in sorted(p for p in VAL.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True)
        for img in sorted(cls.iterdir()):
            for k in range(times):
                (dest / cls.name / f"{k}_{img.name}").symlink_to(img)
                n += 1
    return n


def peak_rss(argv: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall seconds, stdout) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err}")
    return usage.ru_maxrss / 1024, wall, out  # ru_maxrss is in KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=4, help="how many times the 200 val images are repeated")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="v2")
    ap.add_argument("--width", default="1.0")
    ap.add_argument("--weights", default="pretrained")
    ap.add_argument("--no-sweep", action="store_true", help="measure eval only")
    ap.add_argument("--tolerance-mb", type=float, default=64.0)
    ap.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = ap.parse_args()

    exe = [sys.executable, "-m", "mnetctl"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mnetctl-mem-") as tmp:
        tmp = Path(tmp)
        big = tmp / f"val-x{args.repeat}"
        n_big = repeated_val(big, args.repeat)
        model = tmp / "model.onnx"
        subprocess.run([*exe, "build", args.arch, "-w", args.width, "--weights", args.weights, "-q", "-o", str(model)],
                       check=True, stdout=subprocess.DEVNULL)
        for label, data, n in (("val", VAL, 200), (f"val x{args.repeat}", big, n_big)):
            rss, wall, out = peak_rss([*exe, "eval", str(model), "--data", str(data), "--batch", str(args.batch),
                                       "--threads", str(args.threads), "--json"])
            doc = json.loads(out)
            assert doc["n"] == n, (doc["n"], n)
            rows.append({"command": "eval", "data": label, "images": n, "peak_rss_mib": round(rss, 1),
                         "seconds": round(wall, 1), "top1": doc["top1"]})
        if not args.no_sweep:
            for label, data, n in (("val", VAL, 200), (f"val x{args.repeat}", big, n_big)):
                out_dir = tmp / f"sweep-{n}"
                rss, wall, _ = peak_rss([*exe, "sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "128",
                                         "--precisions", "fp32", "--weights", "random", "--data", str(data),
                                         "--iterations", "20", "--threads", str(args.threads), "--fresh",
                                         "-o", str(out_dir), "--cache", str(tmp / "cache")])
                doc = json.loads((out_dir / "sweep.json").read_text())
                assert doc["variants"][0]["n_images"] == n
                rows.append({"command": "sweep (v1 0.25/128 fp32)", "data": label, "images": n,
                             "peak_rss_mib": round(rss, 1), "seconds": round(wall, 1), "top1": doc["variants"][0]["top1"]})

    print(f"host: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"eval model: {args.arch} {args.width} weights {args.weights}, batch {args.batch}, threads {args.threads}")
    print(f"{'command':<26} {'data':<10} {'images':>7} {'peak RSS':>10} {'seconds':>8}")
    failed = False
    for i, r in enumerate(rows):
        line = f"{r['command']:<26} {r['data']:<10} {r['images']:>7} {r['peak_rss_mib']:>7.1f} MiB {r['seconds']:>8.1f}"
        if i % 2 == 1:
            growth = r["peak_rss_mib"] - rows[i - 1]["peak_rss_mib"]
            line += f"   {growth:+.1f} MiB for {r['images'] - rows[i - 1]['images']} more images"
            failed |= growth > args.tolerance_mb
        print(line)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"rows": rows, "repeat": args.repeat, "batch": args.batch}, indent=2) + "\n")
    if failed:
        print(f"FAIL: peak memory grew by more than {args.tolerance_mb:g} MiB with the number of images")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
