"""Map an SSD TFLite checkpoint onto an `heads.ssd.SSDConfig`: weights, anchors, post-processing, metadata.

The weight layers are mapped by order onto `SSDConfig.param_layers()` (backbone, extra layers, then box and
class predictor per feature map) with the same per-layer checks as the classifiers (`tflite_import.map_layers`:
shape, stride, SAME padding, activation). The checkpoint's TFLite_Detection_PostProcess must agree with the
spec: classes, box coder scales, IoU threshold, detections; its anchors must be the spec's anchors (on the
checkpoint's 8-bit grid where it stores them quantized, within half a step). The model then uses the
checkpoint's own anchor values, so its boxes are the checkpoint's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, EnvironmentMissing
from ..heads.ssd import SSDConfig
from ..meta import ModelMeta
from ..specs import format_width
from . import registry
from .tflite_import import SHA_CHARS, ImportedCheckpoint, _preprocessing, map_layers
from .tflite_reader import read_tflite


@dataclass(frozen=True)
class ImportedDetector(ImportedCheckpoint):
    anchors: np.ndarray | None = None  # [N, 4] y, x, h, w as the checkpoint stores them
    labels: Path | None = None  # the shipped label file of a pretrained checkpoint


def _resolve(cfg: SSDConfig, weights: str) -> tuple[Path, str, Path | None]:
    if weights == "pretrained":
        ck = registry.find_detector(cfg.arch, cfg.width)
        if ck is None:
            have = ", ".join(f"{c.arch} width {format_width(c.width)}" for c in registry.DETECTORS)
            raise BadInput(f"no pretrained checkpoint ships for {cfg.arch} width {format_width(cfg.width)}",
                           f"pretrained detectors: {have}; use random weights or the path of a .tflite checkpoint")
        root = registry.pretrained_dir()
        path, labels = root / ck.file, root / ck.labels
        for p in (path, labels):
            if not p.is_file():
                raise EnvironmentMissing(f"the shipped checkpoint file {p} is missing",
                                         "restore models/pretrained/ from the repository or set MNETCTL_PRETRAINED_DIR")
        return path, "pretrained:" + ck.file, labels
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BadInput(f"weights {weights}: no such file", "give 'random', 'pretrained' or the path of a .tflite checkpoint")
    return path, f"tflite:{path.name}", None


def _check_postprocess(cfg: SSDConfig, det: dict | None, name: str) -> np.ndarray:
    if det is None:
        raise BadInput(f"checkpoint {name} has no TFLite_Detection_PostProcess op: it is not an SSD checkpoint")
    want = {
        "num_classes": cfg.classes - 1,
        "y_scale": cfg.coder.y_scale, "x_scale": cfg.coder.x_scale, "h_scale": cfg.coder.h_scale, "w_scale": cfg.coder.w_scale,
        "nms_iou_threshold": cfg.nms.iou, "max_detections": cfg.nms.max_detections,
        "max_classes_per_detection": 1,
    }
    for key, value in want.items():
        have = det.get(key)
        if have is None or not math.isclose(float(have), float(value), rel_tol=1e-6):
            raise BadInput(f"checkpoint {name}: TFLite_Detection_PostProcess has {key} = {have}, but {cfg.arch} expects {value}")
    if det.get("use_regular_nms"):
        raise BadInput(f"checkpoint {name} uses per-class (regular) NMS; mnetctl reproduces the fast class-agnostic NMS")
    anchors = np.asarray(det.get("anchors"), np.float32)
    if anchors.shape != (cfg.num_anchors, 4):
        raise BadInput(f"checkpoint {name} has anchors {list(anchors.shape)} but {cfg.arch} at {cfg.resolution} px "
                       f"has {cfg.num_anchors} anchors of 4 numbers")
    generated = cfg.anchors()
    step = float(det.get("anchors_step") or 0.0)
    off = np.abs(generated - anchors)
    worst = int(off.max(axis=1).argmax())
    if off.max() > step / 2 + 1e-5:
        raise BadInput(f"checkpoint {name}: anchor {worst} is {anchors[worst].round(4).tolist()} but the anchor generator "
                       f"of {cfg.arch} gives {generated[worst].round(4).tolist()}")
    return anchors


def load_ssd_checkpoint(cfg: SSDConfig, weights: str) -> ImportedDetector:
    """Read and map an SSD TFLite checkpoint ("pretrained" or a path) onto `cfg`, with the metadata it implies."""
    path, source, labels = _resolve(cfg, weights)
    ck = read_tflite(path)
    params = map_layers(cfg, list(ck.layers), path.name)
    anchors = _check_postprocess(cfg, ck.detection, path.name)
    res = ck.input_shape[1] if len(ck.input_shape) == 4 else 0
    if res and res != cfg.resolution:
        raise BadInput(f"checkpoint {path.name} takes {res} px images; its anchors fit that resolution only",
                       f"build at --resolution {res}")
    mean, std = _preprocessing(ck)
    meta = ModelMeta(
        task="detection", classes=cfg.classes, label_offset=1, mean=mean, std=std, color_order="RGB",
        resize="full", crop_fraction=1.0, interpolation="bilinear", weights=source, seed=None,
    ).with_extra(
        checkpoint_sha256=ck.sha256[:SHA_CHARS],
        checkpoint_resolution=res,
        checkpoint_dtype=",".join(sorted({layer.dtype for layer in ck.layers})),
    )
    return ImportedDetector(cfg=cfg, files=(ck,), params=params, meta=meta, source=path.name, anchors=anchors, labels=labels)
