"""`train` as a library function: class folders -> frozen-backbone features (cached) -> numpy head -> an
exported model (the pretrained backbone with the new classifier)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cache import file_digest, samples_digest
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
    distill: dict | None = None  # with a teacher: its settings and the labels-only comparison

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
            "distillation": self.distill,
            "history": [vars(e) for e in self.head.history],
        }


def val_samples(val: Path, names: list[str], flag: str = "--val") -> list[Sample]:
    """`flag`'s images labelled by the training classes; every training class must have a folder there."""
    val_names, samples = class_folders(val, flag=flag)
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in val_names if n not in index]
    if unknown:
        raise BadInput(f"{flag} {val} has class {unknown[0]!r}, which the training data does not have",
                       f"training classes: {', '.join(names)}")
    missing = [n for n in names if n not in val_names]
    if missing:
        raise BadInput(f"{flag} {val} has no folder for training class {missing[0]!r}",
                       "every class needs validation images" + ("; or leave out --val to split DATA" if flag == "--val" else ""))
    return [Sample(s.path, index[val_names[s.label]]) for s in samples]


def _stack(fs: FeatureSet, all_views: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = [f if all_views else f[:1] for f in fs.features]
    labels = [np.full(len(r), s.label, np.int64) for r, s in zip(rows, fs.samples)]
    return np.concatenate(rows), np.concatenate(labels)


def _aligned(fs: FeatureSet, other: FeatureSet, all_views: bool) -> np.ndarray:
    """`other`'s rows for the samples of `fs`, in `fs`'s order (both read the same files)."""
    by_path = {str(s.path): f for s, f in zip(other.samples, other.features)}
    return np.concatenate([by_path[str(s.path)] if all_views else by_path[str(s.path)][:1] for s in fs.samples])


def _check_classes(fs: FeatureSet, names: list[str], where: str) -> None:
    have = {s.label for s in fs.samples}
    missing = [names[c] for c in range(len(names)) if c not in have]
    if missing:
        raise BadInput(f"{where} class {missing[0]!r} has no readable image", "see the unreadable images listed")


def train(data: Path | str, arch: str = "v2", width: float = 1.0, resolution: int = 224, *,
          val: Path | str | None = None, val_split: float = 0.2, views: int = 5, augment: bool = True,
          settings: HeadSettings = HeadSettings(), cache_dir: Path | str | None = "default",
          batch: int = 32, threads: int | None = None, teacher: Path | str | None = None,
          unlabeled: Path | str | None = None, temperature: float = 2.0, alpha: float = 0.5,
          opset: int | None = None, on_progress: ProgressFn | None = None) -> TrainResult:
    """Train a new head on the pretrained `arch` backbone; returns the exported proto (not yet written).

    `teacher`: distil from that classifier (its label names must be the classes); the head is also trained
    without it on the same rows, and both validation accuracies are reported. `unlabeled`: images only the
    teacher labels. Every input is checked before any feature is computed."""
    from ..builder import build_model
    from ..data import find_samples
    from ..graph import DEFAULT_OPSET
    from ..specs import resolve_arch, validate_resolution, validate_width
    from .export import export_model
    from .head import Distill
    from .teacher import TeacherOutputs, open_teacher

    settings = settings.check()
    if views < 1:
        raise BadInput(f"views must be at least 1, got {views}")
    arch = resolve_arch(arch)
    validate_width(width)
    validate_resolution(resolution)
    names, samples = class_folders(data)
    if val is not None:
        train_samples, val_list = samples, val_samples(Path(val), names)
    else:
        train_samples, val_list = split(samples, len(names), val_split, settings.seed)
    if unlabeled is not None and teacher is None:
        raise BadInput("--unlabeled needs --teacher: only the teacher labels those images")
    teacher_model = order = None
    extra_samples: list[Sample] = []
    if teacher is not None:
        Distill(np.zeros((0, 0)), temperature, alpha).check()
        teacher_model, order = open_teacher(teacher, names)
        if unlabeled is not None:
            extra_samples = [Sample(s.path, -1) for s in find_samples(unlabeled, flag="--unlabeled", labels=False)]
    proto = build_model(arch, width, resolution, weights="pretrained", opset=opset or DEFAULT_OPSET)
    meta = read_meta(proto)
    pre = Preprocessor.from_meta(meta)
    cache = default_feature_cache() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
    ex = FeatureExtractor(proto, pre, cache, batch=batch, threads=threads)
    n_views = views if augment else 1
    train_views = lambda d: draw_views(settings.seed, d, n_views, augment)  # noqa: E731
    plain = lambda d: draw_views(settings.seed, d, 1, False)  # noqa: E731
    tr = ex.extract(train_samples + extra_samples, train_views, on_progress, "features · train")
    va = ex.extract(val_list, plain, on_progress, "features · val")
    failed = tr.failed + va.failed
    labelled = [s for s in tr.samples if s.label >= 0]
    if not labelled:
        first = next(f for f in tr.failed if f[0] in {str(s.path) for s in train_samples})
        raise BadInput(f"none of the {len(train_samples)} training images could be read (first: {first[0]}: {first[1]})")
    _check_classes(tr, names, "training")
    if not va.samples:
        raise BadInput(f"none of the {len(val_list)} validation images could be read "
                       f"(first: {va.failed[0][0]}: {va.failed[0][1]})")
    _check_classes(va, names, "validation")
    x_tr, y_tr = _stack(tr, True)
    x_va, y_va = _stack(va, False)
    feature_seconds = tr.seconds + va.seconds
    extracted, cached = tr.extracted + va.extracted, tr.cached + va.cached
    distill = None
    recorded = {"arch": arch, "width": width, "resolution": resolution, "views": n_views, "augment": augment,
                "val": "folder" if val is not None else f"split {val_split:g}", **settings.as_dict()}
    extra = {}
    start = time.perf_counter()
    if teacher_model is None:
        head = train_head(x_tr, y_tr, x_va, y_va, len(names), settings, on_progress)
    else:
        tx = TeacherOutputs(teacher_model, order, cache, batch=batch, threads=threads)
        t_tr = tx.extract(tr.samples, train_views, on_progress, "teacher · train")
        t_va = tx.extract(va.samples, plain, on_progress, "teacher · val")
        feature_seconds += t_tr.seconds + t_va.seconds
        extracted, cached = extracted + t_tr.extracted + t_va.extracted, cached + t_tr.cached + t_va.cached
        start = time.perf_counter()
        head = train_head(x_tr, y_tr, x_va, y_va, len(names), settings, on_progress,
                          distill=Distill(_aligned(tr, t_tr, True), temperature, alpha), label="train · distilled")
        keep = y_tr >= 0
        alone = train_head(x_tr[keep], y_tr[keep], x_va, y_va, len(names), settings, on_progress,
                           label="train · labels only")
        teacher_acc = float((_aligned(va, t_va, False).argmax(axis=1) == y_va).mean())
        distill = {
            "teacher": str(teacher), "teacher_sha256": file_digest(teacher), "temperature": temperature,
            "alpha": alpha, "unlabeled_images": sum(s.label < 0 for s in tr.samples),
            "teacher_val_accuracy": round(teacher_acc, 6),
            "labels_only_val_accuracy": round(alone.best.val_acc, 6), "labels_only_best_epoch": alone.best_epoch,
            "distilled_val_accuracy": round(head.best.val_acc, 6),
        }
        recorded.update(teacher=Path(teacher).name, temperature=temperature, alpha=alpha)
        extra["train.distill"] = json.dumps({k: v for k, v in distill.items() if k != "teacher"}, sort_keys=True)
        if extra_samples:
            extra["train.unlabeled_data"] = samples_digest([s for s in tr.samples if s.label < 0])
    head_seconds = time.perf_counter() - start
    extra.update({
        "train.settings": json.dumps(recorded, sort_keys=True),
        "train.data": samples_digest(labelled),
        "train.data_dir": str(Path(data).resolve()),  # quantize calibrates on these images by default
        "train.val_data": samples_digest(va.samples),
        "train.backbone": f"{meta.weights} (frozen)",
        "train.val_accuracy": f"{head.best.val_acc:.6f}",
        "train.best_epoch": str(head.best_epoch),
    })
    model = export_model(proto, head.head, names, extra)
    return TrainResult(model, names, head, len(labelled), len(va.samples), n_views, failed,
                       feature_seconds, head_seconds, extracted, cached, recorded, distill)
