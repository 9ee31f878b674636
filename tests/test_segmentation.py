"""DeepLabV3 + MobileNetV2: the spec against the shipped checkpoints (MACs, params, layer by layer), the
segmentation task (mIoU, pixel accuracy, masks), agreement with LiteRT on the bird image, and bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from mnetctl.analysis import analyze
from mnetctl.builder import build_model, save_model
from mnetctl.cli import main
from mnetctl.data import encode_image, load_image, load_mask, voc_palette
from mnetctl.errors import BadInput
from mnetctl.evaluate import evaluate, predict
from mnetctl.heads.deeplab import decode_deeplab
from mnetctl.weights.registry import SEGMENTATION, pretrained_dir
from mnetctl.weights.tflite_reader import read_tflite

from .conftest import REPO

SEG = REPO / "data" / "segmentation"
BIRD = SEG / "images" / "bird_segmentation.bmp"
BIRD_MASK = SEG / "masks" / "bird_segmentation.bmp"
CHECKPOINTS = {  # tag -> (width, output stride, file)
    "1.0": (1.0, 16, "coral/deeplabv3_mnv2_pascal_quant.tflite"),
    "0.5": (0.5, 16, "coral/deeplabv3_mnv2_dm05_pascal_quant.tflite"),
    "float-257": (0.5, 8, "tflite-support/deeplabv3.tflite"),
}


@pytest.fixture(scope="session")
def seg_models(tmp_path_factory):
    """The three shipped checkpoints built once (fp32), keyed like CHECKPOINTS."""
    root = tmp_path_factory.mktemp("seg")
    out = {}
    for tag, (width, stride, _) in CHECKPOINTS.items():
        path = root / f"deeplab-{tag}.onnx"
        save_model(build_model("deeplabv3-v2", width, weights="pretrained", output_stride=stride), path)
        out[tag] = path
    return out


def _litert_classes(tflite, rgb):
    pytest.importorskip("ai_edge_litert")
    from mnetctl.litert import LiteRTRunner
    from mnetctl.data import Preprocessor

    runner = LiteRTRunner(tflite, threads=None)
    x = Preprocessor(runner.resolution, resize="full", crop_fraction=1.0).resize_crop(rgb)
    out = runner(runner.prepare(x, lambda c: (c.astype(np.float32) - 127.5) / 127.5))[0]
    return out if out.ndim == 2 else out.argmax(-1)


def _ours(model, rgb):
    from mnetctl.model import Model

    m = Model.open(model)
    (classes,) = m.task.decode(m, m.session().run(None, {"input": m.preprocessor(rgb)[None]})[0], 1)
    return classes


# ------------------------------------------------------------------------------------------------
# the spec


def test_output_stride_dilates_the_last_rows_as_the_checkpoints():
    os16 = decode_deeplab(1.0, 513, 16)
    assert [b.stride for b in os16.blocks if b.stride == 2] == [2, 2, 2]  # blocks 1, 3, 6; block 13 gives it up
    assert os16.dilations == (1,) * 14 + (2,) * 3
    os8 = decode_deeplab(0.5, 257, 8)
    assert os8.dilations == (1,) * 7 + (2,) * 7 + (4,) * 3
    assert os16.feature_size() == 33 and os8.feature_size() == 33


def test_width_half_keeps_deeplabs_unrounded_channels():
    cfg = decode_deeplab(0.5)
    assert [b.out_ch for b in cfg.blocks][:4] == [8, 12, 12, 16]  # a 0.5 classifier has 8, 16, 16, 16
    assert cfg.blocks[1].exp_ch == 48 and cfg.blocks[2].exp_ch == 72


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_macs_and_params_equal_the_checkpoint(seg_models, tag):
    width, stride, rel = CHECKPOINTS[tag]
    ckpt = read_tflite(pretrained_dir() / rel)
    stats = analyze(onnx.load(str(seg_models[tag])))
    res = ckpt.input_shape[1]
    assert (stats.macs, stats.params) == ckpt.macs_params()
    assert (stats.macs, stats.params) == decode_deeplab(width, res, stride).count_macs_params()


def test_registry_lists_each_segmentation_checkpoint_with_its_licence_and_labels():
    for ck in SEGMENTATION:
        for rel in ck.files + (ck.labels,):
            assert (pretrained_dir() / rel).is_file()
        assert (pretrained_dir() / ck.files[0]).parent.joinpath("LICENSE").is_file()


def test_random_weights_build_and_run():
    model = build_model("deeplabv3-v2", 0.5, 129, classes=5, postprocess="host")
    out = model.graph.output[0]
    assert [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim] == ["batch", 5, 129, 129]
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": np.zeros((1, 3, 129, 129), np.float32)})
    assert y.shape == (1, 5, 129, 129) and np.isfinite(y).all()


# ------------------------------------------------------------------------------------------------
# checkpoint mismatches are errors naming the layer


def test_wrong_output_stride_is_refused():
    with pytest.raises(BadInput, match="output stride 16, not 8"):
        build_model("deeplabv3-v2", 1.0, weights=str(pretrained_dir() / CHECKPOINTS["1.0"][2]), output_stride=8)


def test_wrong_width_names_the_layer():
    with pytest.raises(BadInput, match="blocks.0.dw|weight layers|expects"):
        build_model("deeplabv3-v2", 0.75, weights=str(pretrained_dir() / CHECKPOINTS["1.0"][2]))


def test_a_classifier_refuses_a_dilated_checkpoint():
    with pytest.raises(BadInput):
        build_model("v2", 1.0, 513, classes=21, weights=str(pretrained_dir() / CHECKPOINTS["1.0"][2]))


def test_float_checkpoint_has_no_int8_to_import():
    with pytest.raises(BadInput, match="float32 weights|integer"):
        build_model("deeplabv3-v2", 0.5, output_stride=8, weights="pretrained", precision="int8")


# ------------------------------------------------------------------------------------------------
# accuracy: the authors' threshold and LiteRT


def test_width_1_meets_the_authors_iou_on_the_bird(seg_models):
    r = evaluate(seg_models["1.0"], SEG / "images", truth=SEG / "masks")
    m = r.metrics
    assert m["n"] == 1 and m["pixels"] == 513 * 513
    assert m["pixel_iou"] > 0.9  # segmentation_models_test.cc: IoU > 0.9
    assert m["iou"]["bird"] > 0.85 and m["iou"]["background"] > 0.95
    assert 0 < m["miou"] <= m["pixel_accuracy"]


@pytest.mark.parametrize("tag", list(CHECKPOINTS))
def test_pixels_agree_with_litert(seg_models, tag):
    rgb = load_image(BIRD)
    theirs = _litert_classes(pretrained_dir() / CHECKPOINTS[tag][2], rgb)
    ours = _ours(seg_models[tag], rgb)
    assert ours.shape == theirs.shape
    assert (ours == theirs).mean() >= 0.98


@pytest.mark.parametrize("width,layout,floor", [(1.0, "cpu", 0.98), (1.0, "checkpoint", 0.99),
                                                 (0.5, "cpu", 0.97), (0.5, "checkpoint", 0.99)])
def test_int8_imports_agree_with_litert(tmp_path, width, layout, floor):
    path = tmp_path / "int8.onnx"
    save_model(build_model("deeplabv3-v2", width, weights="pretrained", precision="int8", int8_layout=layout), path)
    rgb = load_image(BIRD)
    theirs = _litert_classes(pretrained_dir() / CHECKPOINTS["1.0" if width == 1.0 else "0.5"][2], rgb)
    assert (_ours(path, rgb) == theirs).mean() >= floor


# ------------------------------------------------------------------------------------------------
# masks, predict


def test_voc_colour_masks_read_as_indices(tmp_path):
    gt = load_mask(BIRD_MASK)
    assert set(np.unique(gt)) <= {0, 1, 2, 3}
    colour = tmp_path / "voc.png"
    colour.write_bytes(encode_image(voc_palette()[gt], ".png"))
    assert np.array_equal(load_mask(colour), gt)


def test_predict_writes_the_class_mask_and_a_picture(seg_models, tmp_path, capsys):
    mask, draw = tmp_path / "mask.png", tmp_path / "out.png"
    rc = main(["predict", str(seg_models["float-257"]), str(BIRD), "--mask", str(mask), "--draw", str(draw), "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    written = load_mask(mask)
    assert written.shape == (513, 513)  # the image's size, not the model's 257
    (pred,) = predict(seg_models["float-257"], [BIRD])
    assert np.array_equal(written, pred.classes)
    assert {c["label"] for c in doc[0]["classes"]} >= {"background", "bird"}
    assert load_image(draw).shape == (513, 513, 3)


def test_eval_finds_masks_beside_the_images(seg_models, tmp_path, capsys):
    import shutil

    shutil.copy(BIRD, tmp_path / "bird.bmp")
    shutil.copy(BIRD_MASK, tmp_path / "bird_mask.bmp")
    assert main(["eval", str(seg_models["float-257"]), "--data", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "segmentation" and doc["n"] == 1  # the mask file is not scored as an image


# ------------------------------------------------------------------------------------------------
# bad input: one line, exit 2


def _one_line_exit_2(argv, capsys, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and match in err, err


def test_mask_of_the_wrong_size(seg_models, tmp_path, capsys):
    import cv2

    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "bird_segmentation.png"), np.zeros((100, 120), np.uint8))
    _one_line_exit_2(["eval", str(seg_models["float-257"]), "--data", str(SEG / "images"), "--masks",
                      str(tmp_path / "masks")], capsys, "is 120x100 but its image")


def test_mask_with_a_class_the_model_lacks(seg_models, tmp_path, capsys):
    import cv2

    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "bird_segmentation.png"), np.full((513, 513), 40, np.uint8))
    _one_line_exit_2(["eval", str(seg_models["float-257"]), "--data", str(SEG / "images"), "--masks",
                      str(tmp_path / "masks")], capsys, "has class 40")


def test_segmentation_model_on_classification_data(seg_models, capsys):
    from mnetctl.data import default_val_dir

    _one_line_exit_2(["eval", str(seg_models["float-257"]), "--data", str(default_val_dir())], capsys, "no mask for")


def test_mask_flag_on_a_classifier(pretrained_small, tmp_path, capsys):
    _one_line_exit_2(["predict", str(pretrained_small), str(BIRD), "--mask", str(tmp_path / "m.png")], capsys,
                     "this model is a classifier")


# ------------------------------------------------------------------------------------------------
# downstream: quantize, bench, sweep


def test_quantize_calibrates_on_any_folder_and_reports_miou(seg_models, tmp_path):
    from mnetctl.quant.pipeline import quantize_model

    from .conftest import CALIB

    rep = quantize_model(seg_models["float-257"], tmp_path / "q.onnx", calib=CALIB, samples=10,
                         eval_data=SEG / "images")
    assert rep.metric == "miou" and rep.eval_n == 1 and rep.calib_samples == 10
    assert rep.metric_drop is not None and rep.metric_drop <= 2.0  # at most 2 points of mIoU lost
    assert rep.top1_before is None  # no top-1 for a segmentation model


def test_quantize_gate_on_miou(seg_models, tmp_path):
    from mnetctl.errors import GateFailed
    from mnetctl.quant.pipeline import quantize_model

    with pytest.raises(GateFailed, match="miou"):
        quantize_model(seg_models["float-257"], tmp_path / "q.onnx", samples=1, eval_data=SEG / "images",
                       max_drop=-50.0)  # int8 would have to gain 50 points
    assert not (tmp_path / "q.onnx").exists()


def test_bench_json_on_the_host_profile(seg_models, tmp_path):
    out = tmp_path / "bench.json"
    rc = main(["bench", str(seg_models["float-257"]), "-D", "host", "--iterations", "3", "--warmup", "1",
               "--json", str(out)])
    assert rc in (0, 1)  # 1: a budget of the host profile failed; the report is written either way
    doc = json.loads(out.read_text())
    assert doc["latency_ms"]["p50"] > 0 and doc["iterations"] == 3


def test_sweep_over_backbone_widths_has_a_miou_frontier(tmp_path):
    rc = main(["sweep", "--arch", "deeplabv3-v2", "--widths", "1.0,0.5", "--resolutions", "257",
               "--precisions", "fp32", "--iterations", "3", "--max-seconds", "0", "--out", str(tmp_path / "out"),
               "--cache", str(tmp_path / "cache")])
    assert rc == 0
    doc = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert {v["width"] for v in doc["variants"]} == {1.0, 0.5}
    assert all(v["headline"] == "miou" and 0 < v["score"] < 1 for v in doc["variants"])
    assert any(v["pareto"] for v in doc["variants"])
    assert (tmp_path / "out" / "pareto.png").is_file()


def test_sweep_refuses_mixed_tasks():
    from mnetctl.sweep import plan_variants

    with pytest.raises(BadInput, match="one task"):
        plan_variants(["v2", "deeplabv3-v2"], precisions=["fp32"])


def test_compare_refuses_a_segmentation_model_in_one_line(seg_models, capsys):
    pytest.importorskip("ai_edge_litert")
    _one_line_exit_2(["compare", str(seg_models["float-257"]), "--tflite", "pretrained"], capsys,
                     "compare runs classifiers")


def test_masks_given_to_a_classifier_eval(pretrained_small, capsys):
    _one_line_exit_2(["eval", str(pretrained_small), "--masks", str(SEG / "masks"), "--limit", "2"], capsys,
                     "--masks")


def test_crop_fraction_is_refused_for_deeplab(capsys):
    _one_line_exit_2(["build", "deeplabv3-v2", "--crop-fraction", "0.9", "-o", "/dev/null"], capsys, "takes no crop")


def test_bad_output_stride_names_the_flag(capsys):
    _one_line_exit_2(["build", "deeplabv3-v2", "--output-stride", "4", "-o", "/dev/null"], capsys, "--output-stride")
