"""Distillation on the coarse-class task (scripts/coarse_task.py): a V1 0.25/128 student trained from the labels
alone and with a teacher, in the same `train` run, for two teachers: V2 1.0/224 trained by `train` on the same
split, and the zero-shot V2 1.0 (ImageNet probabilities summed per group, `coarse_task.zero_shot_model`).

    python scripts/distill_task.py [--temperature 2 --alpha 0.5 --unlabeled DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--unlabeled", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="feature cache [default: a temporary folder]")
    args = ap.parse_args()

    import coarse_task
    from mnetctl.builder import save_model
    from mnetctl.train import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = args.cache or tmp / "cache"
        train_dir, val_dir = coarse_task.materialise(tmp / "task")
        trained = train(train_dir, "v2", 1.0, 224, val=val_dir, cache_dir=cache)
        teachers = {"V2 1.0/224 trained head": tmp / "teacher.onnx", "zero-shot V2 1.0/224": tmp / "zero_shot.onnx"}
        save_model(trained.model, teachers["V2 1.0/224 trained head"])
        save_model(coarse_task.zero_shot_model(), teachers["zero-shot V2 1.0/224"])
        for name, path in teachers.items():
            res = train(train_dir, "v1", 0.25, 128, val=val_dir, cache_dir=cache, teacher=path,
                        unlabeled=args.unlabeled, temperature=args.temperature, alpha=args.alpha)
            d = res.distill
            print(f"teacher {name} (val top-1 {100 * d['teacher_val_accuracy']:.1f}%) -> V1 0.25/128, T {args.temperature:g} "
                  f"alpha {args.alpha:g}, {d['unlabeled_images']} unlabeled: distilled {100 * d['distilled_val_accuracy']:.1f}% "
                  f"vs labels only {100 * d['labels_only_val_accuracy']:.1f}% ({res.val_images} val images)", flush=True)


if __name__ == "__main__":
    main()
