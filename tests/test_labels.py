"""Label names: label files, `mnetctl.labels` metadata, predict/eval by name, on real custom-class checkpoints."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import onnx
import pytest

from mnetctl.builder import build_model, save_model
from mnetctl.cli import main
from mnetctl.data import find_samples
from mnetctl.errors import BadInput
from mnetctl.evaluate import evaluate, predict
from mnetctl.labels import align_labels, labels_extra, model_labels, read_label_file
from mnetctl.meta import ModelMeta
from mnetctl.model import Model

from .conftest import VAL, shared_file

BIRD = "weights/coral/mobilenet_v2_1.0_224_inat_bird_quant.tflite"
BIRD_LABELS = "weights/coral/inat_bird_labels.txt"
VWW = ("weights/mlcommons-tiny/vww_96_int8.tflite", "weights/mlcommons-tiny/vww_96_float.tflite")
# MLPerf Tiny's VWW training reads the dataset's class folders in sorted order: non_person, person
VWW_NAMES = ["no person", "person"]


# -- label files ---------------------------------------------------------------------------------

def test_label_file_plain_and_indexed(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("cat\ndog\nbird\n\n")
    assert read_label_file(plain, 3) == ["cat", "dog", "bird"]
    assert read_label_file(plain, 4) == ["cat", "dog", "bird"]  # one fewer: output 0 is background
    indexed = tmp_path / "indexed.txt"
    indexed.write_text("0  cat\n1  dog\n2  bird\n")
    assert read_label_file(indexed, 3) == ["cat", "dog", "bird"]


@pytest.mark.parametrize("text,needle", [("a\n\nb\nc\n", "line 2 is empty"), ("a\nb\n", "has 2 names but the model has 5")])
def test_label_file_refused(tmp_path, text, needle):
    path = tmp_path / "l.txt"
    path.write_text(text)
    with pytest.raises(BadInput, match=needle):
        read_label_file(path, 5)


def test_align_labels_background():
    assert align_labels(["background", "a", "b"], 3, 1) == (["a", "b"], 1)  # TF label file, background first
    assert align_labels(["a", "b", "background"], 3, 0) == (["a", "b", "background"], 0)  # one per output
    assert align_labels(["a", "b"], 3, 1) == (["a", "b"], 1)
    assert align_labels(["a", "b", "c"], 3, 1) == (["a", "b", "c"], 0)  # a name for every output: no background


def test_metadata_round_trip():
    meta = ModelMeta().with_extra(**labels_extra(["é", "b c"]))
    assert model_labels(ModelMeta.from_props(meta.to_props())) == ["é", "b c"]
    assert model_labels(ModelMeta()) is None
    assert model_labels(ModelMeta().with_extra(labels="not json")) is None


def test_shipped_imagenet_labels_keep_wnid_data(pretrained_small, tmp_path):
    """A 1001-output TF checkpoint with the 1001-line ImageNet label file: background dropped, names and
    offset as without labels, and the wnid-folder sample evaluates the same."""
    from .conftest import PRETRAINED

    out = tmp_path / "named.onnx"
    save_model(build_model("v1", 0.25, 128, weights="pretrained", labels=PRETRAINED / "coral" / "imagenet_labels.txt"), out)
    named, plain = Model.open(out), Model.open(pretrained_small)
    assert named.label_offset == plain.label_offset == 1 and len(named.label_names) == 1000
    assert [named.label(i) for i in range(1000)] == [plain.label(i) for i in range(1000)]
    a, b = evaluate(named, VAL, limit=40), evaluate(plain, VAL, limit=40)
    assert a.predictions == b.predictions and a.labels == b.labels


# -- the iNaturalist bird checkpoint -------------------------------------------------------------

def _reference(model_file: str) -> dict:
    path = shared_file("reference/classification_test_cases.csv")
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["model_path"] == model_file:
                return row
    pytest.skip(f"{model_file} has no row in {path}")


@pytest.fixture(scope="module")
def bird_model(tmp_path_factory):
    ckpt, labels = shared_file(BIRD), shared_file(BIRD_LABELS)
    out = tmp_path_factory.mktemp("bird") / "bird.onnx"
    assert main(["build", "v2", "--classes", "965", "--weights", str(ckpt), "--labels", str(labels), "-o", str(out), "-q"]) == 0
    return out


def test_bird_checkpoint_names_the_expected_species(bird_model, capsys):
    row = _reference("mobilenet_v2_1.0_224_inat_bird_quant.tflite")
    expected, threshold = int(row["expected_topk_label"]), float(row["score_threshold"])
    names = shared_file(BIRD_LABELS).read_text(encoding="utf-8").splitlines()
    image = shared_file("images/samples/" + row["image_path"])
    (pred,) = predict(bird_model, [image], top=int(row["k"]))
    index, label, prob = pred.top[0]
    assert index == expected and prob >= threshold
    assert label == names[expected] and not label.startswith("class ")
    capsys.readouterr()
    assert main(["predict", str(bird_model), str(image), "-k", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]
    assert (top["index"], top["label"]) == (expected, names[expected])
    assert main(["predict", str(bird_model), str(image), "-k", "1"]) == 0
    assert names[expected] in capsys.readouterr().out


def test_bird_int8_build_keeps_names(tmp_path):
    row = _reference("mobilenet_v2_1.0_224_inat_bird_quant.tflite")
    names = shared_file(BIRD_LABELS).read_text(encoding="utf-8").splitlines()
    out = tmp_path / "bird.int8.onnx"
    save_model(build_model("v2", classes=965, weights=str(shared_file(BIRD)), precision="int8",
                           labels=shared_file(BIRD_LABELS)), out)
    (pred,) = predict(out, [shared_file("images/samples/" + row["image_path"])], top=1)
    index, label, prob = pred.top[0]
    assert (index, label) == (int(row["expected_topk_label"]), names[index]) and prob >= float(row["score_threshold"])


def test_csv_labels_by_name_and_shared_names(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"")  # find_samples does not decode
    (tmp_path / "l.csv").write_text("file,label\na.jpg,No Person\na.jpg,1\n")
    assert [s.label for s in find_samples(tmp_path / "l.csv", names=VWW_NAMES)] == [0, 1]
    (tmp_path / "bad.csv").write_text("a.jpg,person\na.jpg,cat\n")
    with pytest.raises(BadInput, match="class name of the model"):
        find_samples(tmp_path / "bad.csv", names=VWW_NAMES)
    (tmp_path / "crane").mkdir()
    (tmp_path / "crane" / "x.jpg").write_bytes(b"")
    with pytest.raises(BadInput, match="more than one class"):
        find_samples(tmp_path, names=["crane", "heron", "crane"])


def test_bird_eval_by_species_folder(bird_model, tmp_path):
    names = shared_file(BIRD_LABELS).read_text(encoding="utf-8").splitlines()
    row = _reference("mobilenet_v2_1.0_224_inat_bird_quant.tflite")
    folder = tmp_path / names[int(row["expected_topk_label"])]
    folder.mkdir()
    shutil.copy(shared_file("images/samples/" + row["image_path"]), folder)
    res = evaluate(bird_model, tmp_path)
    assert res.n == 1 and res.top1 == 1.0 and res.labels == [int(row["expected_topk_label"])]


# -- Visual Wake Words ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=VWW, ids=["int8", "float"])
def vww_model(request, tmp_path_factory):
    """VWW as MLPerf Tiny trains it: the whole 96 x 96 frame, pixels / 255 (the int8 file's input quantization
    says so; the float file cannot, so --mean/--std give it)."""
    ckpt = shared_file(request.param)
    folder = tmp_path_factory.mktemp("vww")
    labels = folder / "vww_labels.txt"
    labels.write_text("\n".join(VWW_NAMES) + "\n")
    out = folder / "vww.onnx"
    scaling = ["--mean", "0", "--std", "255"] if "float" in request.param else []
    assert main(["build", "v1", "--width", "0.25", "--resolution", "96", "--classes", "2", "--weights", str(ckpt),
                 "--labels", str(labels), "--crop-fraction", "1", *scaling, "-o", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def vww_images(tmp_path_factory) -> dict[str, Path]:
    """TFLite Micro's person / no_person test images as pictures. The BMP files hold the int8 input bytes TFLM's
    test feeds to its model (pixel - 128, stored unsigned), so the picture is each byte XOR 0x80."""
    import cv2

    folder = tmp_path_factory.mktemp("vww-images")
    out = {}
    for name in ("person", "no_person"):
        raw = cv2.imread(str(shared_file(f"images/samples/{name}.bmp")), cv2.IMREAD_GRAYSCALE)
        out[name] = folder / f"{name}.png"
        assert cv2.imwrite(str(out[name]), raw ^ 0x80)
    return out


def test_vww_predicts_person_and_no_person(vww_model, vww_images):
    got = [p.top[0][1] for p in predict(vww_model, [vww_images["person"], vww_images["no_person"]], top=1)]
    assert got == ["person", "no person"]


def test_vww_eval_by_class_name_folders(vww_model, vww_images, tmp_path, capsys):
    for name in ("person", "no_person"):  # '_' matches the space of 'no person'
        (tmp_path / name).mkdir()
        shutil.copy(vww_images[name], tmp_path / name)
    samples = find_samples(tmp_path, names=Model.open(vww_model).label_names)
    assert [s.label for s in samples] == [0, 1]
    res = evaluate(vww_model, tmp_path)
    assert res.n == 2 and res.top1 == 1.0
    # a folder that names no class of the model: one line, exit 2
    (tmp_path / "cat").mkdir()
    shutil.copy(shared_file("images/samples/cat.bmp"), tmp_path / "cat")
    capsys.readouterr()
    assert main(["eval", str(vww_model), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cat" in err and "not class names" in err and len(err.strip().splitlines()) == 1
    # ImageNet wnid folders are no classes of a person detector
    assert main(["eval", str(vww_model), "--data", str(VAL)]) == 2


def test_wrong_length_label_file_exit_2_nothing_written(tmp_path, capsys):
    ckpt = shared_file(VWW[0])
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\nd\n")
    out = tmp_path / "out" / "vww.onnx"
    assert main(["build", "v1", "--width", "0.25", "--resolution", "96", "--classes", "2", "--weights", str(ckpt),
                 "--labels", str(labels), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--labels" in err and "4 names" in err and "2 classes" in err
    assert not out.exists() and not out.parent.exists()


def test_quantized_model_keeps_its_names(vww_model, vww_images, tmp_path):
    """quantize copies the names; its --eval matches class folders by name too; the int8 file predicts names."""
    from mnetctl.quant.pipeline import quantize_model

    person, no_person = vww_images["person"], vww_images["no_person"]
    data = tmp_path / "data"
    for name, image in (("person", person), ("no person", no_person)):
        (data / name).mkdir(parents=True)
        shutil.copy(image, data / name)
    out = tmp_path / "vww.int8.onnx"
    quantize_model(vww_model, out, samples=10, eval_data=data)  # a folder name it could not match would raise
    assert model_labels(Model.open(out).meta) == VWW_NAMES
    proto = onnx.load(str(out), load_external_data=False)
    assert json.loads({p.key: p.value for p in proto.metadata_props}["mnetctl.labels"]) == VWW_NAMES
    assert [p.top[0][1] for p in predict(out, [person, no_person], top=1)] == ["person", "no person"]
