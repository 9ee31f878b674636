"""How long `train` takes for V2 1.0 / 224 on the shipped 300 images (coarse classes, scripts/coarse_task.py)
with 5 views per training image: cold (every feature computed) and warm (features from the cache), and how
much of it is feature extraction. Alternates cold and warm runs so both see the same machine load.

    python scripts/train_speed.py [--arch v2 --width 1.0 --resolution 224 --views 5 --rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="v2")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import coarse_task
    from mnetctl.train import HeadSettings, train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_dir, val_dir = coarse_task.materialise(tmp / "task")
        data = tmp / "all"  # all 300 images in class folders; train takes its own 20% validation split
        for split in (train_dir, val_dir):
            for link in split.rglob("*.JPEG"):
                dest = data / link.parent.name / link.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(link.resolve())
        cache = tmp / "cache"
        rows = []
        for r in range(args.rounds):
            for kind in ("cold", "warm"):
                if kind == "cold" and cache.exists():
                    shutil.rmtree(cache)
                start = time.perf_counter()
                res = train(data, args.arch, args.width, args.resolution, views=args.views, cache_dir=cache,
                            settings=HeadSettings())
                total = time.perf_counter() - start
                rows.append((kind, total, res.feature_seconds, res.head_seconds, res.extracted, res.cached,
                             res.train_images, res.val_images, res.val_accuracy))
                print(f"round {r + 1} {kind}: total {total:.1f} s, features {res.feature_seconds:.1f} s "
                      f"({res.extracted} views computed, {res.cached} cached), head {res.head_seconds:.2f} s; "
                      f"{res.train_images} train x {res.views} views + {res.val_images} val; "
                      f"val top-1 {100 * res.val_accuracy:.1f}%", flush=True)
        cold = [t for t in rows if t[0] == "cold"]
        warm = [t for t in rows if t[0] == "warm"]
        best_cold = min(cold, key=lambda t: t[1])
        best_warm = min(warm, key=lambda t: t[1])
        print(f"{args.arch} {args.width:g} {args.resolution}: cold {best_cold[1]:.1f} s "
              f"(feature extraction {best_cold[2]:.1f} s = {100 * best_cold[2] / best_cold[1]:.0f}%), "
              f"warm {best_warm[1]:.1f} s; cold/warm {best_cold[1] / best_warm[1]:.1f}x")


if __name__ == "__main__":
    main()
