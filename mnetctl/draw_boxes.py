"""Pictures of predictions: a detector's boxes with label and score drawn over the image (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .data import _cv2, load_image
from .errors import BadInput
from .fsutil import write_bytes

# distinct colours (RGB) for class indices
_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)], np.uint8)


def draw_boxes(rgb: np.ndarray, boxes: Sequence[tuple[list[float], int, str, float]]) -> np.ndarray:
    """A copy of an RGB image with (pixel box [x0, y0, x1, y1], class index, label, score) drawn on it."""
    cv2 = _cv2()
    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 250))
    scale = max(0.4, min(h, w) / 700)
    for box, index, label, score in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        colour = tuple(int(c) for c in _PALETTE[index % len(_PALETTE)])
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        text = f"{label} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = y0 - th - base - 2 if y0 - th - base - 2 >= 0 else y0
        cv2.rectangle(out, (x0, top), (x0 + tw + 2, top + th + base + 2), colour, -1)
        dark = sum(colour) > 380
        cv2.putText(out, text, (x0 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0) if dark else (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_png(rgb: np.ndarray, path: Path | str) -> Path:
    cv2 = _cv2()
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise BadInput(f"draw {path}: cannot encode the picture as PNG")
    return write_bytes(path, data.tobytes())


def draw_prediction(image: Path | str, prediction, out: Path | str) -> Path:
    """The image with a detector's prediction (`tasks.detection.DetectionPrediction`) drawn, saved as PNG at `out`."""
    detections = getattr(prediction, "detections", None)
    if detections is None:
        raise BadInput("draw: pictures are drawn for detection models (boxes); this model is a classifier")
    rgb = load_image(image)
    h, w = rgb.shape[:2]
    return write_png(draw_boxes(rgb, [(d.pixels(h, w), d.index, d.label, d.score) for d in detections]), out)
