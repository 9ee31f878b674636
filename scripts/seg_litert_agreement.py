"""Pixel agreement of mnetctl's DeepLabV3 imports with LiteRT on the same checkpoint, and the scores on the
shipped bird image (docs/segmentation.md). Run from the repository root:

    python scripts/seg_litert_agreement.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from mnetctl.builder import build_model, save_model
from mnetctl.data import Preprocessor, load_image
from mnetctl.evaluate import evaluate
from mnetctl.litert import LiteRTRunner
from mnetctl.model import Model
from mnetctl.weights.registry import pretrained_dir

SEG = Path("data/segmentation")
IMAGE = SEG / "images" / "bird_segmentation.bmp"
CASES = [  # width, output stride, precision, int8 layout, checkpoint
    (1.0, 16, "fp32", "cpu", "coral/deeplabv3_mnv2_pascal_quant.tflite"),
    (1.0, 16, "int8", "cpu", "coral/deeplabv3_mnv2_pascal_quant.tflite"),
    (1.0, 16, "int8", "checkpoint", "coral/deeplabv3_mnv2_pascal_quant.tflite"),
    (0.5, 16, "fp32", "cpu", "coral/deeplabv3_mnv2_dm05_pascal_quant.tflite"),
    (0.5, 16, "int8", "cpu", "coral/deeplabv3_mnv2_dm05_pascal_quant.tflite"),
    (0.5, 16, "int8", "checkpoint", "coral/deeplabv3_mnv2_dm05_pascal_quant.tflite"),
    (0.5, 8, "fp32", "cpu", "tflite-support/deeplabv3.tflite"),
]


def main() -> None:
    rgb = load_image(IMAGE)
    print("| checkpoint | precision | layout | pixels = LiteRT | pixel acc | pixel IoU | bird IoU | mIoU |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for width, stride, precision, layout, rel in CASES:
            path = Path(tmp) / "m.onnx"
            save_model(build_model("deeplabv3-v2", width, weights="pretrained", output_stride=stride,
                                   precision=precision, int8_layout=layout), path)
            m = Model.open(path)
            (ours,) = m.task.decode(m, m.session().run(None, {"input": m.preprocessor(rgb)[None]})[0], 1)
            lite = LiteRTRunner(pretrained_dir() / rel, threads=None)
            x = Preprocessor(lite.resolution, resize="full", crop_fraction=1.0).resize_crop(rgb)
            out = lite(lite.prepare(x, lambda c: (c.astype(np.float32) - 127.5) / 127.5))[0]
            theirs = out if out.ndim == 2 else out.argmax(-1)
            s = evaluate(path, SEG / "images", truth=SEG / "masks").metrics
            print(f"| {rel} | {precision} | {layout if precision == 'int8' else ''} | {100 * (ours == theirs).mean():.2f}% "
                  f"| {100 * s['pixel_accuracy']:.2f}% | {100 * s['pixel_iou']:.2f}% | {100 * s['iou']['bird']:.1f}% "
                  f"| {100 * s['miou']:.1f}% |")


if __name__ == "__main__":
    main()
