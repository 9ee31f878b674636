"""SSD MobileNetV1 COCO: our float and int8 imports against LiteRT running the same checkpoint.

For each image of a COCO-style folder (default: the shipped data/coco-10 with its instances.json) it runs LiteRT
on the .tflite and our ONNX builds (fp32; int8 in the checkpoint and cpu layouts; NMS in the graph), then reports:
  * LiteRT detections with score >= 0.5, and how many of them ours match (same class, IoU >= 0.9, score within 0.05);
  * COCO mAP@[.5:.95] / mAP@.5 (pycocotools) of LiteRT and of each build against the ground truth.

    python scripts/ssd_vs_litert.py [--data data/coco-10] [--annotations data/coco-10/instances.json] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnetctl.builder import build_ssd_model, save_model  # noqa: E402
from mnetctl.data import Preprocessor, find_samples, load_image  # noqa: E402
from mnetctl.evaluate import evaluate, predict  # noqa: E402
from mnetctl.tasks.detection import coco_map  # noqa: E402
from mnetctl.weights.registry import DETECTORS, pretrained_dir  # noqa: E402


def iou(a, b) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


def litert_detections(tflite: Path, images: list[Path]) -> list[list[tuple]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite))
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    pre = Preprocessor(int(inp["shape"][1]), resize="full", crop_fraction=1.0, input_format="uint8-nhwc")
    out = []
    for path in images:
        it.set_tensor(inp["index"], pre(load_image(path))[None])
        it.invoke()
        boxes, classes, scores, count = (it.get_tensor(d["index"]) for d in it.get_output_details())
        out.append([(boxes[0, i], int(classes[0, i]), float(scores[0, i])) for i in range(int(count[0]))])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / "data" / "coco-10")
    ap.add_argument("--annotations", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    annotations = args.annotations or args.data / "instances.json"
    images = [s.path for s in find_samples(args.data, labels=False)]
    tflite = pretrained_dir() / DETECTORS[0].file
    instances = json.loads(annotations.read_text())
    ids = {Path(im["file_name"]).name: (im["id"], im["height"], im["width"]) for im in instances["images"]}

    ref = litert_detections(tflite, images)
    results = []
    for path, dets in zip(images, ref):
        image_id, h, w = ids[path.name]
        for box, cls, score in dets:
            y0, x0, y1, x1 = np.clip(box, 0, 1) * [h, w, h, w]
            results.append({"image_id": image_id, "category_id": cls + 1,
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": score})
    stats = coco_map(instances, results, [ids[p.name][0] for p in images])
    report = {"images": len(images), "litert": {"map": stats[0], "map50": stats[1]}, "builds": {}}
    confident = [(i, d) for i, dets in enumerate(ref) for d in dets if d[2] >= 0.5]
    print(f"{len(images)} images, {len(confident)} LiteRT detections with score >= 0.5")
    print(f"LiteRT             mAP@[.5:.95] {stats[0]:.4f}  mAP@.5 {stats[1]:.4f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in (("fp32", {}), ("int8 checkpoint", {"precision": "int8", "int8_layout": "checkpoint"}),
                             ("int8 cpu", {"precision": "int8", "int8_layout": "cpu"})):
            path = save_model(build_ssd_model("ssd-v1", weights="pretrained", **kwargs), Path(tmp) / "m.onnx")
            ours = [p.detections for p in predict(path, images)]
            missed = []
            for i, (box, cls, score) in confident:
                if not any(d.index == cls and iou(np.array(d.box), box) >= 0.9 and abs(d.score - score) <= 0.05
                           for d in ours[i]):
                    missed.append({"image": images[i].name, "class": cls, "score": score})
            m = evaluate(path, args.data, annotations=annotations).metrics
            report["builds"][name] = {"matched": len(confident) - len(missed), "of": len(confident), "missed": missed,
                                      "map": m["map"], "map50": m["map50"], "map_minus_litert": m["map"] - stats[0]}
            print(f"ours {name:<14} mAP@[.5:.95] {m['map']:.4f}  mAP@.5 {m['map50']:.4f}  (vs LiteRT {m['map'] - stats[0]:+.4f})"
                  f"  matched {len(confident) - len(missed)}/{len(confident)} confident LiteRT detections"
                  + (f"  missed: {missed}" if missed else ""))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
