#!/usr/bin/env python
"""Wall-clock time of `mnetctl eval` of pretrained MobileNet V2 1.0/224 on the shipped 200 val images.

Target: under 15 s with 2 threads. Runs the real command line (process start, model load, decoding,
inference) and reports the best of --repeat runs. Exit 1 if the target is missed or top-1 is off.

    python scripts/eval_speed.py [--threads 2] [--repeat 3] [--batch 32]
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

TARGET_S = 15.0
EXPECTED_TOP1 = 0.845  # the same checkpoint in LiteRT with the same preprocessing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()

    exe = [sys.executable, "-m", "mnetctl"]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "v2-1.0-224.onnx"
        subprocess.run([*exe, "build", "v2", "--weights", "pretrained", "-q", "-o", str(model)], check=True,
                       stdout=subprocess.DEVNULL)
        walls, result = [], {}
        for _ in range(args.repeat):
            start = time.perf_counter()
            proc = subprocess.run(
                [*exe, "eval", str(model), "--threads", str(args.threads), "--batch", str(args.batch), "--json"],
                check=True, capture_output=True, text=True,
            )
            walls.append(time.perf_counter() - start)
            result = json.loads(proc.stdout)
    best = min(walls)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"eval v2-1.0-224 on {result['n']} images, threads {args.threads}, batch {args.batch}")
    print(f"  wall (whole command): best {best:.2f} s, runs {', '.join(f'{w:.2f}' for w in walls)}")
    print(f"  inside eval loop: {result['seconds']:.2f} s, {result['images_per_s']:.1f} images/s")
    print(f"  top-1 {100 * result['top1']:.1f}%  top-5 {100 * result['top5']:.1f}%  unreadable {len(result['failed'])}")
    ok = best < TARGET_S and abs(result["top1"] - EXPECTED_TOP1) <= 0.015
    print(f"target < {TARGET_S:.0f} s and top-1 within 1.5 points of {100 * EXPECTED_TOP1:.1f}%: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
