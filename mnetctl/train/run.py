"""`train` as a library function: class folders -> frozen-backbone features (cached) -> numpy head -> an
exported model (the pretrained backbone with the new classifier)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import samples_digest
from ..data import Preprocessor, Sample
from ..errors import BadInput
from ..meta import read_meta
from ..progress import ProgressFn
from .dataset import class_folders, split
from .features import FeatureExtractor, FeatureSet, default_feature_cache, draw_views
from .head import HeadResult, HeadSettings, train_head


@dataclass
class TrainResult:
    model: object  # onnx.ModelProto
    classes: list[str]
    head: HeadResult
    train_images: int
    val_images: int
    views: int
    failed: list[tuple[str, str]]
    feature_seconds: float
    head_seconds: float
    extracted: int
    cached: int
    settings: dict = field(default_factory=dict)

    @property
    def val_accuracy(self) -> float:
        return self.head.best.val_acc

    def as_dict(self) -> dict:
        b = self.head.best
        return {
            "classes": self.classes, "train_images": self.train_images, "val_images": self.val_images,
            "views": self.views, "best_epoch": self.head.best_epoch, "epochs_run": len(self.head.history),
            "val_accuracy": round(b.val_acc, 6), "val_loss": round(b.val_loss, 6),
            "train_accuracy": round(b.train_acc, 6), "train_loss": round(b.train_loss, 6),
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "feature_seconds": round(self.feature_seconds, 3), "head_seconds": round(self.head_seconds, 3),
            "views_extracted": self.extracted, "views_cached": self.cached, "settings": self.settings,
            "history": [vars(e) for e in self.head.history],
        }


def _val_samples(val: Path, names: list[str]) -> list[Sample]:
    val_names, samples = class_folders(val, flag="--val")
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in val_names if n not in index]
    if unknown:
        raise BadInput(f"--val {val} has class {unknown[0]!r}, which the training data does not have",
                       f"training classes: {', '.join(names)}")
    return [Sample(s.path, index[val_names[s.label]]) for s in samples]


def _stack(fs: FeatureSet, all_views: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = [f if all_views else f[:1] for f in fs.features]
    labels = [np.full(len(r), s.label, np.int64) for r, s in zip(rows, fs.samples)]
    return np.concatenate(rows), np.concatenate(labels)


def _check_classes(fs: FeatureSet, names: list[str], where: str) -> None:
    have = {s.label for s in fs.samples}
    missing = [names[c] for c in range(len(names)) if c not in have]
    if missing:
        raise BadInput(f"{where} class {missing[0]!r} has no readable image", "see the unreadable images listed")


def train(data: Path | str, arch: str = "v2", width: float = 1.0, resolution: int = 224, *,
          val: Path | str | None = None, val_split: float = 0.2, views: int = 5, augment: bool = True,
          settings: HeadSettings = HeadSettings(), cache_dir: Path | str | None = "default",
          batch: int = 32, threads: int | None = None, on_progress: ProgressFn | None = None) -> TrainResult:
    """Train a new head on the pretrained `arch` backbone; returns the exported proto (not yet written)."""
    from ..builder import build_model
    from ..specs import resolve_arch, validate_resolution, validate_width
    from .export import export_model

    settings = settings.check()
    if views < 1:
        raise BadInput(f"views must be at least 1, got {views}")
    arch = resolve_arch(arch)
    validate_width(width)
    validate_resolution(resolution)
    names, samples = class_folders(data)
    if val is not None:
        train_samples, val_samples = samples, _val_samples(Path(val), names)
    else:
        train_samples, val_samples = split(samples, len(names), val_split, settings.seed)
    proto = build_model(arch, width, resolution, weights="pretrained")
    meta = read_meta(proto)
    pre = Preprocessor.from_meta(meta)
    cache = default_feature_cache() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
    ex = FeatureExtractor(proto, pre, cache, batch=batch, threads=threads)
    n_views = views if augment else 1
    tr = ex.extract(train_samples, lambda d: draw_views(settings.seed, d, n_views, augment), on_progress,
                    "features · train")
    va = ex.extract(val_samples, lambda d: draw_views(settings.seed, d, 1, False), on_progress, "features · val")
    failed = tr.failed + va.failed
    if not tr.samples:
        raise BadInput(f"none of the {len(train_samples)} training images could be read "
                       f"(first: {tr.failed[0][0]}: {tr.failed[0][1]})")
    _check_classes(tr, names, "training")
    if not va.samples:
        raise BadInput(f"none of the {len(val_samples)} validation images could be read "
                       f"(first: {va.failed[0][0]}: {va.failed[0][1]})")
    x_tr, y_tr = _stack(tr, True)
    x_va, y_va = _stack(va, False)
    start = time.perf_counter()
    head = train_head(x_tr, y_tr, x_va, y_va, len(names), settings, on_progress)
    head_seconds = time.perf_counter() - start
    recorded = {"arch": arch, "width": width, "resolution": resolution, "views": n_views, "augment": augment,
                "val": "folder" if val is not None else f"split {val_split:g}", **settings.as_dict()}
    extra = {
        "train.settings": json.dumps(recorded, sort_keys=True),
        "train.data": samples_digest(tr.samples),
        "train.data_dir": str(Path(data).resolve()),  # quantize calibrates on these images by default
        "train.val_data": samples_digest(va.samples),
        "train.backbone": f"{meta.weights} (frozen)",
        "train.val_accuracy": f"{head.best.val_acc:.6f}",
        "train.best_epoch": str(head.best_epoch),
    }
    model = export_model(proto, head.head, names, extra)
    return TrainResult(model, names, head, len(tr.samples), len(va.samples), n_views, failed,
                       tr.seconds + va.seconds, head_seconds, tr.extracted + va.extracted, tr.cached + va.cached,
                       recorded)
