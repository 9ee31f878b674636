"""Object detection (SSD): decoded boxes with class and score; COCO mAP through pycocotools.

A detector built by mnetctl ends either in TFLite's four outputs (box decoding and NonMaxSuppression in the
graph) or, built with `--postprocess host`, at `box_encodings` [1, N, 4] and `class_scores` [1, N, classes];
then `decode_host` does here, in numpy, what the graph does: the same anchors and box coder (from the model's
`mnetctl.detection` metadata), each anchor's best class, class-agnostic greedy NMS (score > threshold, IoU >
threshold suppresses, ties in score kept in anchor order, as ONNX Runtime's NonMaxSuppression).

Boxes are normalised [ymin, xmin, ymax, xmax] of the whole (resized) image; `predict` reports pixels of the
original image as [x0, y0, x1, y1]. Class indices leave out background (index i is label i; COCO category
id i + 1 for the 90-id COCO label map, or the annotation category of the same name).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BadInput
from ..heads.ssd import BOX_ENCODINGS, CLASS_SCORES, DETECTION_OUTPUTS, Postprocess, read_postprocess
from .base import Metric, Task

COCO_HINT = "pip install 'mnetctl[coco]' (pycocotools)"
MAX_ANNOTATION_BYTES = 512 << 20


@dataclass(frozen=True)
class DetectorHead:
    """What decoding a detector's outputs needs."""

    output_names: tuple[str, ...]
    post: Postprocess
    classes: int  # class outputs including background
    label_offset: int = 1

    @property
    def num_labels(self) -> int:
        return self.classes - self.label_offset

    @property
    def output_name(self) -> str:
        return self.output_names[0]


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # normalised ymin, xmin, ymax, xmax
    index: int  # class index, background left out
    label: str
    score: float

    def pixels(self, height: int, width: int) -> list[float]:
        """[x0, y0, x1, y1] in pixels of an image of this size, clipped to it."""
        y0, x0, y1, x1 = self.box
        return [float(np.clip(x0, 0, 1) * width), float(np.clip(y0, 0, 1) * height),
                float(np.clip(x1, 0, 1) * width), float(np.clip(y1, 0, 1) * height)]


@dataclass
class DetectionPrediction:
    path: str
    detections: list[Detection]
    size: tuple[int, int]  # original image height, width
    error: str | None = None
    top: list = field(default_factory=list)  # (the classification field; a detector lists `detections`)

    warning = None

    def as_dict(self) -> dict[str, Any]:
        h, w = self.size
        return {"path": self.path, "width": w, "height": h, "detections": [
            {"box": [round(v, 2) for v in d.pixels(h, w)], "index": d.index, "label": d.label, "score": round(d.score, 6)}
            for d in self.detections]}


# --------------------------------------------------------------------------------------------
# decoding


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    """[.., N, 4] box encodings (t_y, t_x, t_h, t_w) -> [.., N, 4] ymin, xmin, ymax, xmax (float32, as the graph)."""
    t = np.asarray(encodings, np.float32) / np.asarray(scales, np.float32)
    a = np.asarray(anchors, np.float32)
    centre = t[..., :2] * a[:, 2:] + a[:, :2]
    half = (np.float32(0.5) * np.exp(t[..., 2:])) * a[:, 2:]
    return np.concatenate([centre - half, centre + half], axis=-1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, score_threshold: float, max_out: int) -> np.ndarray:
    """Greedy class-agnostic NMS: indices kept, best first."""
    cand = np.flatnonzero(scores > np.float32(score_threshold))
    order = cand[np.argsort(-scores[cand], kind="stable")]
    keep: list[int] = []
    alive = np.ones(order.size, bool)
    for i in range(order.size):
        if not alive[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) == max_out:
            break
        rest = np.flatnonzero(alive[i + 1:]) + i + 1
        if rest.size:
            alive[rest[_iou(boxes[order[i]], boxes[order[rest]]) > np.float32(iou)]] = False
    return np.array(keep, np.int64)


def decode_host(encodings: np.ndarray, class_scores: np.ndarray, post: Postprocess) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs ([N, 4], [N, classes]) -> kept boxes [K, 4], class indices [K], scores [K]."""
    boxes = decode_boxes(encodings, post.anchors, post.coder.scales)
    real = np.asarray(class_scores, np.float32)[:, 1:]
    best = real.max(axis=1)
    label = real.argmax(axis=1)
    keep = nms(boxes, best, post.nms.iou, post.nms.score_threshold, post.nms.max_detections)
    return boxes[keep], label[keep], best[keep]


# --------------------------------------------------------------------------------------------
# COCO ground truth and mAP


@dataclass
class CocoGroundTruth:
    path: Path
    data: dict  # the instances JSON
    image_ids: dict[str, int]  # sample path -> COCO image id
    sizes: dict[int, tuple[int, int]]  # image id -> (height, width)
    categories: dict[int, str]


def load_ground_truth(path: Path | str, samples: Sequence, where: str = "annotations") -> CocoGroundTruth:
    """COCO instances JSON matched to the images to score: each image must be listed (by file name) with its
    real size; otherwise a BadInput naming the file."""
    from ..imagesize import dimensions

    path = Path(path)
    try:
        if path.stat().st_size > MAX_ANNOTATION_BYTES:
            raise BadInput(f"{where} {path}: larger than {MAX_ANNOTATION_BYTES >> 20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"{where} {path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{where} {path}: not a JSON file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise BadInput(f"{where} {path}: not COCO instances (needs lists 'images', 'annotations' and 'categories')")
    try:
        by_name = {Path(str(im["file_name"])).name: im for im in data["images"]}
        sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in data["images"]}
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        for a in data["annotations"]:
            if int(a["image_id"]) not in sizes or int(a["category_id"]) not in categories or len(a["bbox"]) != 4:
                raise ValueError(f"annotation {a.get('id')}")
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{where} {path}: malformed COCO instances ({exc})") from None
    image_ids: dict[str, int] = {}
    for s in samples:
        im = by_name.get(Path(s.path).name)
        if im is None:
            raise BadInput(f"{where} {path} does not list the image {s.path} (by file name)",
                           "give the annotations of these images (COCO instances JSON)")
        try:
            with open(s.path, "rb") as fh:
                size = dimensions(fh.read(1 << 16))
        except OSError:
            size = None  # unreadable images are reported by eval
        if size is not None and (size[1], size[0]) != sizes[int(im["id"])]:
            h, w = sizes[int(im["id"])]
            raise BadInput(f"{where} {path}: image {s.path} is {size[0]}x{size[1]} pixels, but the annotations say {w}x{h}")
        image_ids[str(s.path)] = int(im["id"])
    return CocoGroundTruth(path, data, image_ids, sizes, categories)


def _category_map(model, gt: CocoGroundTruth) -> dict[int, int]:
    """Model class index -> COCO category id: by name when the model's labels name every category, else index + 1."""
    names = model.label_names
    if names:
        from ..data import LabelNames

        lookup = {LabelNames.key(n): i for i, n in reversed(list(enumerate(names)))}
        if all(LabelNames.key(n) in lookup for n in gt.categories.values()):
            return {lookup[LabelNames.key(n)]: cid for cid, n in gt.categories.items()}
    return {i: i + 1 for i in range(model.head.num_labels) if i + 1 in gt.categories}


def _pycocotools():
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        from ..errors import EnvironmentMissing

        raise EnvironmentMissing(f"COCO mAP needs pycocotools, which is not installed here ({exc})", COCO_HINT) from None
    return COCO, COCOeval


@dataclass
class CocoMAP(Metric):
    model: Any
    gt: CocoGroundTruth
    results: list[dict] = field(default_factory=list)
    scored: list[int] = field(default_factory=list)
    nonfinite: int = 0

    def update(self, outputs, batch) -> None:
        cats = _category_map(self.model, self.gt)
        for s, dets in zip(batch.samples_ok, self.model.task.decode(self.model, outputs, 0)):
            image_id = self.gt.image_ids[str(s.path)]
            h, w = self.gt.sizes[image_id]
            self.scored.append(image_id)
            for d in dets:
                if not np.isfinite(d.score) or not np.all(np.isfinite(d.box)):
                    self.nonfinite += 1
                    continue
                if d.index not in cats:
                    continue
                x0, y0, x1, y1 = d.pixels(h, w)
                self.results.append({"image_id": image_id, "category_id": cats[d.index],
                                     "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(d.score)})

    def result(self) -> dict[str, Any]:
        out = {"map": 0.0, "map50": 0.0, "map75": 0.0, "n": len(self.scored), "detections": len(self.results),
               "nonfinite": self.nonfinite}
        if not self.scored:
            return out
        stats = coco_map(self.gt.data, self.results, self.scored)
        out.update(map=stats[0], map50=stats[1], map75=stats[2])
        return out


def coco_map(instances: dict, results: list[dict], image_ids: list[int]) -> list[float]:
    """pycocotools' 12 bbox statistics (AP@[.5:.95], AP@.5, AP@.75, ...) over these images; -1 (no ground truth
    of a kind) reads as 0."""
    COCO, COCOeval = _pycocotools()
    if not results:
        return [0.0] * 12
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = json.loads(json.dumps(instances))
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = sorted(set(image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [max(0.0, float(v)) for v in ev.stats]


# --------------------------------------------------------------------------------------------
# the task


class DetectionTask(Task):
    name = "detection"
    headline = "map"
    needs_annotations = True

    def inspect_outputs(self, proto, meta, inp, path: str) -> DetectorHead:
        post = read_postprocess(meta.extra, path)
        names = [o.name for o in proto.graph.output]
        want = DETECTION_OUTPUTS if post.where == "graph" else (BOX_ENCODINGS, CLASS_SCORES)
        missing = [n for n in want if n not in names]
        if missing:
            raise BadInput(f"{path}: a detector with post-processing {post.where!r} needs the outputs "
                           f"{', '.join(want)}; {', '.join(missing)} missing")
        return DetectorHead(tuple(want), post, meta.classes, meta.label_offset)

    def metric(self, model, ground_truth: CocoGroundTruth | None = None) -> CocoMAP:
        if ground_truth is None:
            raise BadInput(f"annotations: {model.name} is a detection model; eval needs COCO ground truth",
                           "give --annotations instances.json (COCO instances format)")
        return CocoMAP(model, ground_truth)

    def needs_labels(self) -> bool:
        return False

    def check_labels(self, model, labels: list[int]) -> None:
        return None

    def decode(self, model, outputs, top: int) -> list[list[Detection]]:
        """Per image: the detections, best first (all the model gives; `top` > 0 keeps the best `top`)."""
        head: DetectorHead = model.head
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        per_image = []
        for i in range(outputs[0].shape[0]):
            if head.post.where == "host":
                boxes, labels, scores = decode_host(outputs[0][i], outputs[1][i], head.post)
            else:
                count = int(np.clip(np.nan_to_num(outputs[3][i].reshape(-1)[0]), 0, outputs[0].shape[1]))
                boxes, labels, scores = outputs[0][i][:count], outputs[1][i][:count].astype(np.int64), outputs[2][i][:count]
            dets = [Detection(tuple(float(v) for v in b), int(c), self._label(model, int(c)), float(s))
                    for b, c, s in zip(boxes, labels, scores)]
            per_image.append(dets[:top] if top and top > 0 else dets)
        return per_image

    @staticmethod
    def _label(model, index: int) -> str:
        names = model.label_names
        return names[index] if names is not None and 0 <= index < len(names) else f"class {index}"

    def prediction(self, path: str, decoded: list[Detection], image, model=None, min_score: float = 0.0):
        return DetectionPrediction(path, [d for d in decoded if d.score >= min_score], tuple(image.shape[:2]))

    def calibration_dir(self) -> Path:
        return coco_sample_dir()

    def default_eval_dir(self) -> Path:
        return coco_sample_dir()

    def default_annotations(self) -> Path:
        return coco_sample_dir() / "instances.json"


def coco_sample_dir() -> Path:
    """The shipped 10 COCO val images with their instances.json (data/coco-10)."""
    from ..data import data_dir

    return data_dir() / "coco-10"
