"""SSD MobileNetV1 (COCO): the spec against the real checkpoint, its float and int8 imports against LiteRT on the
10 shipped COCO images, in-graph vs host post-processing, COCO mAP, predict/draw, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from mnetctl.analysis import analyze
from mnetctl.builder import build_ssd_model, save_model
from mnetctl.cli import main
from mnetctl.errors import BadInput
from mnetctl.evaluate import evaluate, predict
from mnetctl.heads.ssd import decode_ssd
from mnetctl.model import Model
from mnetctl.tasks.detection import coco_map, decode_host, nms
from mnetctl.weights.tflite_reader import read_tflite

from .conftest import PRETRAINED, REPO

SSD = PRETRAINED / "tflite-support" / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
COCO = REPO / "data" / "coco-10"
IMAGES = sorted(COCO.glob("*.jpg"))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The checkpoint built four ways: fp32 / int8 (checkpoint layout), NMS in the graph / on the host."""
    root = tmp_path_factory.mktemp("ssd")
    out = {}
    for precision in ("fp32", "int8"):
        for post in ("graph", "host"):
            model = build_ssd_model("ssd-v1", weights="pretrained", precision=precision, int8_layout="checkpoint",
                                    postprocess=post)
            out[f"{precision}-{post}"] = save_model(model, root / f"ssd-{precision}-{post}.onnx")
    return out


def test_spec_matches_the_checkpoint_exactly():
    cfg = decode_ssd("ssd-v1")
    ck = read_tflite(SSD)
    assert cfg.num_anchors == 1917 and [m.size for m in cfg.maps] == [19, 10, 5, 3, 2, 1]
    # every weight layer: our shape, the checkpoint's shape
    assert [layer.weight_shape for layer in cfg.param_layers()] == [tuple(layer.weight.shape) for layer in ck.layers]
    # MACs / params: from the spec, from the checkpoint's own tensors, and from the graph we emit
    ck_params = sum(layer.weight.size + layer.bias.size for layer in ck.layers)
    ck_macs = 0
    for layer in ck.layers:
        _, h, w, c = ck.graph.shapes[ck.graph.ops[layer.op_index].outputs[0]]
        ck_macs += h * w * c * int(np.prod(layer.weight.shape[1:]))
    stats = analyze(build_ssd_model("ssd-v1", weights="pretrained"))
    assert cfg.count_macs_params() == (ck_macs, ck_params) == (stats.macs, stats.params)
    # the anchor generator gives the checkpoint's anchors (stored on an 8-bit grid: within half a step)
    det = ck.detection
    assert np.abs(cfg.anchors() - det["anchors"]).max() <= det["anchors_step"] / 2 + 1e-6
    assert (det["y_scale"], det["x_scale"], det["h_scale"], det["w_scale"]) == cfg.coder.scales
    assert det["max_detections"] == cfg.nms.max_detections and abs(det["nms_iou_threshold"] - cfg.nms.iou) < 1e-6


def _run_all(path: Path) -> list:
    return [p.detections for p in predict(path, IMAGES)]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_graph_and_host_postprocessing_give_identical_detections(models, precision):
    graph, host = _run_all(models[f"{precision}-graph"]), _run_all(models[f"{precision}-host"])
    for a, b in zip(graph, host):
        assert [d.index for d in a] == [d.index for d in b]
        assert [d.score for d in a] == [d.score for d in b]
        assert np.allclose([d.box for d in a], [d.box for d in b], atol=1e-6)
    assert sum(len(d) for d in graph) == 100  # 10 detections per image, as TFLite's max_detections


def test_host_nms_breaks_score_ties_in_anchor_order():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0.5, 0.5, 1, 1], [0, 0, 0.1, 0.1]], np.float32)
    scores = np.array([0.5, 0.5, 0.5, 0.0], np.float32)
    assert nms(boxes, scores, 0.6, 1e-8, 10).tolist() == [0, 2]  # 1 is suppressed by 0; a zero score is out
    assert nms(boxes, scores, 0.6, 1e-8, 1).tolist() == [0]


def _iou(a, b) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(hi - lo, 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


def _litert_detections():
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    from mnetctl.data import Preprocessor, load_image

    it = litert.Interpreter(model_path=str(SSD))
    it.allocate_tensors()
    pre = Preprocessor(300, resize="full", crop_fraction=1.0, input_format="uint8-nhwc")
    out = []
    for path in IMAGES:
        it.set_tensor(it.get_input_details()[0]["index"], pre(load_image(path))[None])
        it.invoke()
        boxes, classes, scores, count = (it.get_tensor(d["index"]) for d in it.get_output_details())
        n = int(count[0])
        out.append([(boxes[0, i], int(classes[0, i]), float(scores[0, i])) for i in range(n)])
    return out


def _raw_outputs(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(decoded boxes [N, 4], class scores [N, classes]) per image of a `--postprocess host` model."""
    from mnetctl.data import load_image
    from mnetctl.tasks.detection import decode_boxes

    model = Model.open(path)
    session = model.session()
    out = []
    for image in IMAGES:
        enc, scores = session.run(["box_encodings", "class_scores"], {"input": model.preprocessor(load_image(image))[None]})
        out.append((decode_boxes(enc[0], model.head.post.anchors, model.head.post.coder.scales), scores[0]))
    return out


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_every_confident_litert_detection_is_ours(models, precision):
    """Same class, IoU >= 0.9, score within 0.05. The int8 import (the checkpoint's integers) matches every one;
    the float import computes in float what LiteRT computes in integers, and where two classes of one box score
    within 0.01 of each other the best class can flip: such a miss is allowed only when our score of LiteRT's
    class on that very box is within 0.05 of LiteRT's (one such box on these images)."""
    ours = _run_all(models[f"{precision}-graph"])
    raw = _raw_outputs(models[f"{precision}-host"])
    theirs = _litert_detections()
    confident, flipped = 0, []
    for mine, ref, (boxes, scores) in zip(ours, theirs, raw):
        for box, cls, score in ref:
            if score < 0.5:
                continue
            confident += 1
            if any(d.index == cls and _iou(np.array(d.box), box) >= 0.9 and abs(d.score - score) <= 0.05 for d in mine):
                continue
            same_box = [a for a in range(len(boxes)) if _iou(boxes[a], box) >= 0.9]
            near_tie = [a for a in same_box if abs(scores[a, cls + 1] - score) <= 0.05
                        and scores[a, 1:].max() - scores[a, cls + 1] <= 0.02]
            assert precision == "fp32" and near_tie, (cls, score)
            flipped.append((cls, score))
    assert confident >= 10
    assert len(flipped) <= 1, flipped


def test_map_agrees_with_litert(models):
    instances = json.loads((COCO / "instances.json").read_text())
    ids = {im["file_name"]: im["id"] for im in instances["images"]}
    results = []
    for path, dets in zip(IMAGES, _litert_detections()):
        for box, cls, score in dets:
            y0, x0, y1, x1 = np.clip(box, 0, 1) * 300
            results.append({"image_id": ids[path.name], "category_id": cls + 1, "bbox": [float(x0), float(y0), float(x1 - x0),
                            float(y1 - y0)], "score": score})
    reference = coco_map(instances, results, list(ids.values()))[0]
    for key in ("fp32-graph", "int8-graph"):
        ours = evaluate(models[key]).metrics
        assert ours["n"] == 10 and ours["map"] > 0.5
        assert abs(ours["map"] - reference) <= 0.02, (key, ours["map"], reference)


def test_decode_host_matches_the_graph_outputs(models):
    """decode_host on the host model's raw outputs equals what the in-graph model returns for one image."""
    host, graph = Model.open(models["fp32-host"]), Model.open(models["fp32-graph"])
    x = host.preprocessor(__import__("mnetctl.data", fromlist=["load_image"]).load_image(IMAGES[0]))[None]
    enc, scores = host.session().run(["box_encodings", "class_scores"], {"input": x})
    boxes, classes, best = decode_host(enc[0], scores[0], host.head.post)
    g_boxes, g_classes, g_scores, count = graph.session().run(None, {"input": x})
    assert int(count[0]) == len(classes) == 10
    assert classes.tolist() == g_classes[0].astype(int).tolist() and np.array_equal(best, g_scores[0])
    assert np.allclose(boxes, g_boxes[0], atol=1e-6)


def test_inspect_build_and_predict_cli(models, tmp_path, capsys):
    out = tmp_path / "ssd.onnx"
    assert main(["build", "ssd-v1", "--weights", "pretrained", "-o", str(out), "-q"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta["mnetctl.task"] == "detection" and meta["mnetctl.width"] == "0.75"
    capsys.readouterr()
    picture = tmp_path / "boxes.png"
    assert main(["predict", str(out), str(IMAGES[6]), "--json", "--draw", str(picture)]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    labels = [d["label"] for d in pred["detections"]]
    assert labels[:2] == ["wine glass", "bottle"] and all(d["score"] >= 0.5 for d in pred["detections"])
    x0, y0, x1, y1 = pred["detections"][0]["box"]
    assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 300  # pixels of the 300x300 image
    from mnetctl.data import load_image

    drawn = load_image(picture)
    assert drawn.shape == (300, 300, 3) and not np.array_equal(drawn, load_image(IMAGES[6]))
    assert main(["inspect", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["macs"] == decode_ssd("ssd-v1").count_macs_params()[0]


def test_random_weights_build_from_the_spec():
    model = build_ssd_model("ssd-v1", width=1.0, weights="random")
    cfg = decode_ssd("ssd-v1", 1.0)
    assert (analyze(model).macs, analyze(model).params) == cfg.count_macs_params()
    assert cfg.backbone.stem_ch == 32 and cfg.maps[1].channels == 1024


def test_bad_input_is_one_line_exit_2(models, tmp_path, capsys, pretrained_small):
    ssd = str(models["fp32-graph"])
    cases = []
    # a detector in classification-style eval: no annotations for the given images
    cases.append((["eval", ssd, "--data", str(COCO)], "--annotations"))
    # annotations that do not list the images
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(IMAGES[0], other / "not_in_coco.jpg")
    cases.append((["eval", ssd, "--data", str(other), "--annotations", str(COCO / "instances.json")], "does not list"))
    # annotations whose image sizes are not the images'
    wrong = json.loads((COCO / "instances.json").read_text())
    for im in wrong["images"]:
        im["width"] = 640
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    cases.append((["eval", ssd, "--data", str(COCO), "--annotations", str(tmp_path / "wrong.json")], "annotations say"))
    (tmp_path / "junk.json").write_text("{not json")
    cases.append((["eval", ssd, "--data", str(COCO), "--annotations", str(tmp_path / "junk.json")], "not a JSON"))
    # a classifier given annotations
    cases.append((["eval", str(pretrained_small), "--annotations", str(COCO / "instances.json")], "detection models"))
    # commands that score or screen classifiers only
    cases.append((["compare", ssd, "--tflite", str(SSD)], "compare runs classifiers"))
    cases.append((["tune", ssd], "tune screens classifiers"))
    for argv, words in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err


def test_a_classifier_checkpoint_is_no_ssd():
    with pytest.raises(BadInput, match="expects"):
        build_ssd_model("ssd-v1", weights=str(PRETRAINED / "coral" / "mobilenet_v1_0.75_192_quant.tflite"))


@pytest.mark.parametrize("arch", ["ssdlite-v2", "ssdlite-v3-large", "ssdlite-v3-small"])
def test_ssdlite_from_the_spec(arch, tmp_path):
    """SSDLite (random weights): the graph's MACs/params are the spec's, it runs, both post-processing forms agree."""
    import onnxruntime as ort

    cfg = decode_ssd(arch)
    assert cfg.lite and cfg.resolution == 320 and cfg.num_anchors == 2034
    assert cfg.maps[0].source.endswith(".expand") and cfg.maps[1].source == "head.conv"
    model = build_ssd_model(arch, weights="random")
    stats = analyze(model)
    assert (stats.macs, stats.params) == cfg.count_macs_params()
    assert stats.op_counts["Conv"] == len(cfg.param_layers())
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 320, 320)).astype(np.float32)
    boxes, classes, scores, count = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert boxes.shape == (1, 10, 4) and 0 <= int(count[0]) <= 10


def test_ssdlite_v2_parameters_match_open_model_zoo():
    # Open Model Zoo's ssdlite_mobilenet_v2 (TF Object Detection API, COCO, 300x300) lists 4.475 M parameters
    _, params = decode_ssd("ssdlite-v2", resolution=300).count_macs_params()
    assert round(params / 1e6, 3) == 4.475


def test_bench_json_names_the_postprocessing(models):
    from mnetctl.bench import _model_facts

    facts, _, _ = _model_facts(models["fp32-host"])
    assert facts["task"] == "detection" and facts["postprocess"] == "host"
