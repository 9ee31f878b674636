"""Semantic segmentation: a class per pixel; mean IoU and pixel accuracy against ground-truth masks.

A segmentation model (`mnetctl.task` = segmentation, e.g. `heads.deeplab`) outputs either the class map
itself (int64 [N, R, R], ArgMax in the graph) or logits [N, K, R, R] (the class is their argmax here).
The image is resized whole to R x R (`resize` = full), so the class map is resized back to the image's
own size (nearest neighbour) before it is scored or written.

Ground truth: one mask per image, class indices as a grey image (or the Pascal VOC colour map), 255 =
ignore, the image's own size. For an image `DIR/NAME.ext` the mask is `MASKS/NAME.*` or `MASKS/NAME_mask.*`
with `--masks MASKS`; without it `DIR/NAME_mask.*` beside the image, or `DIR/../masks/NAME[_mask].*`.

Metrics over all scored pixels (a confusion matrix summed over the images):
  miou            mean over the classes present in the ground truth or the prediction of TP / (TP + FP + FN)
  pixel_accuracy  pixels whose class is right / pixels scored
  pixel_iou       right / (2 x scored - right): the whole-mask IoU the Coral segmentation tests threshold
                  (`ComputeIntersectionOverUnion` of two label maps)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BadInput
from .base import Metric, Task

IGNORE = 255
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")  # jpg/webp: lossy, read all the same


@dataclass(frozen=True)
class SegmenterHead:
    """What decoding a segmentation model's output needs."""

    output_name: str
    kind: str  # "classes" (a class map) | "logits" (per-class scores)
    classes: int
    resolution: int
    label_offset: int = 0

    @property
    def num_labels(self) -> int:
        return self.classes


def class_maps(head: SegmenterHead, outputs: np.ndarray) -> np.ndarray:
    """Raw outputs (any shape with the batch first) -> class maps [N, R, R] (uint8 below 256 classes)."""
    n, r = outputs.shape[0], head.resolution
    if head.kind == "classes":
        maps = np.asarray(outputs).reshape(n, r, r)
    else:
        maps = np.asarray(outputs).reshape(n, head.classes, r, r).argmax(axis=1)
    return maps.astype(np.uint8 if head.classes <= 256 else np.int32)


# --------------------------------------------------------------------------------------------
# ground truth


def mask_candidates(image: Path, masks: Path | None) -> list[Path]:
    stems = (image.stem, image.stem + "_mask")
    folders = [masks] if masks is not None else [image.parent, image.parent.parent / "masks"]
    out = []
    for folder in folders:
        for stem in stems:
            if folder == image.parent and stem == image.stem:
                continue  # the image itself
            out.extend(folder / (stem + s) for s in MASK_SUFFIXES)
    return out


def find_mask(image: Path, masks: Path | None) -> Path | None:
    return next((p for p in mask_candidates(image, masks) if p.is_file()), None)


def drop_mask_files(samples: Sequence) -> list:
    """Samples without the files that are another sample's mask (NAME_mask.* beside NAME.*)."""
    stems = {(s.path.parent, s.path.stem) for s in samples}
    return [s for s in samples if not (s.path.stem.endswith("_mask") and (s.path.parent, s.path.stem[:-5]) in stems)]


@dataclass
class Truth:
    """The mask of every sample, checked against its image's size before any inference."""

    masks: dict[str, Path]


def check_masks(samples: Sequence, masks: Path | None) -> Truth:
    from ..data import image_size

    if masks is not None:
        masks = Path(masks)
        if not masks.is_dir():
            raise BadInput(f"masks {masks} is not a folder", "give the folder of the ground-truth masks (NAME.png per image NAME)")
    found: dict[str, Path] = {}
    for s in samples:
        m = find_mask(s.path, masks)
        if m is None:
            where = masks if masks is not None else f"{s.path.parent} ({s.path.stem}_mask.*) or {s.path.parent.parent / 'masks'}"
            raise BadInput(f"masks: no mask for {s.path} in {where}",
                           "name each mask after its image (NAME.png or NAME_mask.png); --masks gives their folder")
        try:
            iw, ih = image_size(s.path)
            mw, mh = image_size(m)
        except BadInput:
            continue  # an unreadable image or mask is reported (and counted) when it is scored
        if (mw, mh) != (iw, ih):
            raise BadInput(f"masks: {m} is {mw}x{mh} but its image {s.path} is {iw}x{ih}",
                           "a mask has its image's size (one class index per pixel)")
        found[str(s.path)] = m
    return Truth(found)


# --------------------------------------------------------------------------------------------
# metric


@dataclass
class MeanIoU(Metric):
    head: SegmenterHead
    truth: Truth
    names: list[str] | None = None
    confusion: np.ndarray = field(init=False, repr=False)  # [truth, predicted] pixel counts
    n: int = 0
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = self.head.classes
        self.confusion = np.zeros((k, k), np.int64)

    def update(self, outputs: np.ndarray, batch) -> None:
        from ..data import load_mask, resize_nearest

        k = self.head.classes
        for sample, pred in zip(batch.samples_ok, class_maps(self.head, outputs)):
            mask_path = self.truth.masks.get(str(sample.path))
            if mask_path is None:
                raise BadInput(f"masks: no checked mask for {sample.path}")
            gt = load_mask(mask_path)
            pred = resize_nearest(pred, gt.shape[1], gt.shape[0])
            valid = gt != IGNORE
            bad = gt[valid] >= k
            if bad.any():
                raise BadInput(f"masks: {mask_path} has class {int(gt[valid][bad][0])}, but the model predicts "
                               f"{k} classes (0..{k - 1}; 255 = ignore)")
            idx = gt[valid].astype(np.int64) * k + pred[valid].astype(np.int64)
            self.confusion += np.bincount(idx, minlength=k * k).reshape(k, k)
            self.n += 1
            self.paths.append(str(sample.path))

    def result(self) -> dict[str, Any]:
        c = self.confusion
        tp = np.diag(c).astype(np.float64)
        union = c.sum(0) + c.sum(1) - tp
        present = union > 0
        iou = np.where(present, tp / np.maximum(union, 1), 0.0)
        total = int(c.sum())
        right = int(tp.sum())
        name = (lambda i: self.names[i]) if self.names and len(self.names) == len(tp) else (lambda i: f"class {i}")
        return {
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "pixel_accuracy": right / total if total else 0.0,
            "pixel_iou": right / (2 * total - right) if total else 0.0,
            "iou": {name(i): round(float(iou[i]), 6) for i in np.flatnonzero(present)},
            "pixels": total,
            "n": self.n,
        }


# --------------------------------------------------------------------------------------------
# predict


@dataclass
class SegmentationPrediction:
    path: str
    classes: np.ndarray  # HxW class map at the image's own size
    names: list[str]
    image: np.ndarray | None = field(default=None, repr=False)  # the RGB image, for --draw
    error: str | None = None
    warning: str | None = None

    @property
    def top(self) -> list:
        return []

    def summary(self) -> list[tuple[int, str, int, float]]:
        """(class, label, pixels, fraction) of each class present, most pixels first."""
        counts = np.bincount(self.classes.reshape(-1), minlength=len(self.names))
        total = int(counts.sum())
        order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
        return [(i, self.names[i] if i < len(self.names) else f"class {i}", int(counts[i]), counts[i] / total)
                for i in order]

    def as_dict(self) -> dict[str, Any]:
        h, w = self.classes.shape
        return {"path": self.path, "width": int(w), "height": int(h),
                "classes": [{"index": i, "label": lab, "pixels": p, "fraction": round(float(f), 6)}
                            for i, lab, p, f in self.summary()]}

    def write(self, mask: Path | None = None, draw: Path | None = None) -> list[Path]:
        """The class-index PNG mask and/or the mask drawn over the image, written atomically."""
        from ..data import encode_image, overlay
        from ..fsutil import write_bytes

        written = []
        if mask is not None:
            if Path(mask).suffix.lower() not in (".png", ".bmp"):
                raise BadInput(f"mask {mask}: a class-index mask must be lossless: .png or .bmp")
            written.append(write_bytes(mask, encode_image(self.classes.astype(np.uint8), Path(mask).suffix)))
        if draw is not None:
            if self.image is None:
                raise BadInput(f"draw {draw}: no image to draw on")
            written.append(write_bytes(draw, encode_image(overlay(self.image, self.classes), Path(draw).suffix)))
        return written


class SegmentationTask(Task):
    name = "segmentation"
    headline = "miou"
    max_batch = 4  # [N, K, R, R] outputs at R = 513 are large

    def inspect_outputs(self, proto, meta, inp, path: str) -> SegmenterHead:
        out = proto.graph.output[0]
        ttype = out.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
        res = meta.resolution
        if len(dims) == 3 and ttype.elem_type in (6, 7):  # int32 / int64 class map
            if dims[1:] not in ([res, res], [None, None]):
                raise BadInput(f"{path}: class map {out.name!r} {dims} is not {res}x{res} (the input size)")
            return SegmenterHead(out.name, "classes", meta.classes, res)
        if len(dims) == 4 and dims[2:] in ([res, res], [None, None]):
            classes = dims[1] or meta.classes
            return SegmenterHead(out.name, "logits", int(classes), res)
        shown = [d if d is not None else "?" for d in dims]
        raise BadInput(f"{path}: output {out.name!r} {shown} is neither a class map [N, {res}, {res}] nor logits "
                       f"[N, K, {res}, {res}]; mnetctl needs a segmentation model at its input size")

    def prepare(self, model, samples, truth=None):
        samples = drop_mask_files(samples)
        if not samples:
            raise BadInput("data: no images besides masks")
        return samples, check_masks(samples, truth)

    def metric(self, model, truth: Truth | None = None) -> MeanIoU:
        if truth is None:
            raise BadInput("segmentation eval needs masks (--masks)")
        return MeanIoU(model.head, truth, model.label_names)

    def needs_labels(self) -> bool:
        return False

    def check_labels(self, model, labels: list[int]) -> None:
        return None

    def decode(self, model, outputs: np.ndarray, top: int) -> list[np.ndarray]:
        return list(class_maps(model.head, outputs))

    def prediction(self, path: str, decoded: np.ndarray, rgb: np.ndarray, model=None,
                   min_score: float = 0.0) -> SegmentationPrediction:
        from ..data import resize_nearest

        names = (model.label_names if model is not None else None) or [f"class {i}" for i in range(int(decoded.max()) + 1)]
        return SegmentationPrediction(path, resize_nearest(decoded, rgb.shape[1], rgb.shape[0]), list(names), rgb)

    def calibration_dir(self) -> Path:
        from ..data import data_dir

        return data_dir() / "segmentation" / "images"

    def default_eval_dir(self) -> Path:
        return self.calibration_dir()
