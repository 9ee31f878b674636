"""Image decoding, preprocessing and dataset layouts on the shipped ImageNet sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from mnetctl.data import (
    BadImage,
    Preprocessor,
    Sample,
    class_names,
    data_dir,
    default_calib_dir,
    default_val_dir,
    find_samples,
    iter_batches,
    load_image,
    wnid_to_index,
)
from mnetctl.errors import BadInput
from mnetctl.meta import ModelMeta

TENCH = default_val_dir() / "n01440764" / "n01440764_tench.JPEG"  # 341 x 256, class 0
GOLDFISH = default_calib_dir() / "n01443537_goldfish.JPEG"  # class 1


def truncated_copy(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


# ---------------------------------------------------------------------------- labels


def test_class_lists_agree():
    names = class_names()
    idx = wnid_to_index()
    assert len(names) == 1000 and len(idx) == 1000
    assert idx["n01440764"] == 0 and idx["n01443537"] == 1 and idx["n15075141"] == 999
    assert names[0].startswith("tench") and names[1].startswith("goldfish")
    assert names[999].startswith("toilet tissue")
    assert "background" not in names[0].lower()


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MNETCTL_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    assert default_val_dir() == tmp_path / "imagenet-sample" / "val"


# ---------------------------------------------------------------------------- layouts


def test_imagefolder_layout():
    samples = find_samples(default_val_dir())
    assert len(samples) == 200
    assert samples == sorted(samples, key=lambda s: str(s.path))
    idx = wnid_to_index()
    for s in samples:
        assert s.label == idx[s.path.parent.name]
    assert samples[0] == Sample(TENCH, 0)
    assert find_samples(default_val_dir()) == samples  # deterministic
    assert find_samples(default_val_dir(), limit=7) == samples[:7]


def test_imagefolder_with_index_named_folders(tmp_path):
    (tmp_path / "5").mkdir()
    shutil.copy(TENCH, tmp_path / "5" / "a.jpg")
    assert find_samples(tmp_path) == [Sample(tmp_path / "5" / "a.jpg", 5)]


def test_flat_layout():
    samples = find_samples(default_calib_dir())
    assert len(samples) == 100
    assert samples[0] == Sample(GOLDFISH, 1)
    idx = wnid_to_index()
    assert all(s.label == idx[s.path.name.split("_")[0]] for s in samples)


def test_flat_layout_unlabeled_names(tmp_path):
    shutil.copy(TENCH, tmp_path / "holiday.jpg")
    shutil.copy(TENCH, tmp_path / "n01440764_x.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_samples(tmp_path) == [Sample(tmp_path / "holiday.jpg", None), Sample(tmp_path / "n01440764_x.jpg", 0)]


def test_csv_layout(tmp_path):
    (tmp_path / "imgs").mkdir()
    shutil.copy(TENCH, tmp_path / "imgs" / "a.jpg")
    shutil.copy(GOLDFISH, tmp_path / "imgs" / "b.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text(f"file,label\nimgs/b.jpg,1\nimgs/a.jpg, n01440764\n\n{TENCH},0\n")
    samples = find_samples(csv)
    # the CSV's own order; paths relative to the CSV; wnids accepted as labels
    assert samples == [Sample(tmp_path / "imgs" / "b.jpg", 1), Sample(tmp_path / "imgs" / "a.jpg", 0), Sample(TENCH, 0)]
    assert find_samples(csv, limit=1) == samples[:1]


@pytest.mark.parametrize(
    "body, needle",
    [
        ("a.jpg,1\nb.jpg,cat\n", "labels.csv:2"),
        ("a.jpg,1000\n", "outside 0..999"),
        ("a.jpg\n", "labels.csv:1"),
        ("file,label\n", "lists no images"),
        ("file,class_index\n", "lists no images"),
        # pass isdigit() but not int(): a file:line error, not a crash
        ("a.jpg,--1\n", "labels.csv:1: label '--1' is neither"),
        ("a.jpg,\u00b2\n", "labels.csv:1: label '\u00b2' is neither"),
        ("a.jpg,1\nb.jpg,\u00b2\n", "labels.csv:2"),
        ("a.jpg," + "9" * 5000 + "\n", "outside 0..999"),
        # a one-row CSV whose label is not a word is a bad row, never a header
        ("a.jpg,0.0\n", "labels.csv:1: label '0.0'"),
        ("a.jpg,1e2\n", "labels.csv:1: label '1e2'"),
        ("a.jpg,0\\0\n", "labels.csv:1"),
        ("a.jpg,n0144076\n", "labels.csv:1"),
    ],
)
def test_csv_errors_name_the_line(tmp_path, body, needle):
    csv = tmp_path / "labels.csv"
    csv.write_text(body)
    with pytest.raises(BadInput) as err:
        find_samples(csv)
    assert needle in err.value.message


def test_single_image(tmp_path):
    assert find_samples(GOLDFISH) == [Sample(GOLDFISH, 1)]
    other = shutil.copy(TENCH, tmp_path / "cat.jpg")
    assert find_samples(other) == [Sample(Path(other), None)]


def test_bad_data_paths(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        find_samples(tmp_path / "missing")
    with pytest.raises(BadInput, match="holds no images") as err:
        find_samples(tmp_path)
    assert str(tmp_path) in err.value.message
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(BadInput, match="holds no images"):
        find_samples(tmp_path)
    (tmp_path / "cats").mkdir()
    shutil.copy(TENCH, tmp_path / "cats" / "a.jpg")
    with pytest.raises(BadInput, match="cats"):
        find_samples(tmp_path)
    (tmp_path / "\u00b2").mkdir()  # isdigit() but not a class index
    shutil.copy(TENCH, tmp_path / "\u00b2" / "a.jpg")
    with pytest.raises(BadInput, match="not ImageNet class ids"):
        find_samples(tmp_path)
    with pytest.raises(BadInput, match="neither a folder"):
        find_samples(tmp_path / "readme.txt")
    with pytest.raises(BadInput, match="^limit must be"):
        find_samples(default_val_dir(), limit=0)


# ---------------------------------------------------------------------------- decoding


def test_load_image_is_rgb(tmp_path):
    bgr = np.zeros((20, 30, 3), np.uint8)
    bgr[:, :, 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = load_image(tmp_path / "red.png")
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == 255).all() and (rgb[..., 1:] == 0).all()
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((8, 9), 77, np.uint8))
    grey = load_image(tmp_path / "grey.png")
    assert grey.shape == (8, 9, 3) and (grey == 77).all()
    tench = load_image(TENCH)
    assert tench.shape == (256, 341, 3)


def test_unreadable_images(tmp_path):
    cases = {
        truncated_copy(TENCH, tmp_path / "cut.jpg"): "truncated",
        tmp_path / "empty.jpg": "empty",
        tmp_path / "text.jpg": "not a decodable image",
        tmp_path / "missing.jpg": "no such file",
    }
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    png = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[:-20])
    cases[tmp_path / "cut.png"] = "truncated PNG"
    for path, reason in cases.items():
        with pytest.raises(BadImage) as err:
            load_image(path)
        assert reason in err.value.message and str(path) in err.value.message
        assert isinstance(err.value, BadInput)


# ---------------------------------------------------------------------------- preprocessing


def test_preprocess_float_nchw_by_hand():
    """TF preprocessing at 224: 341x256 -> short side 256 (no resize) -> centre crop at y=16, x=58 -> [-1, 1]."""
    img = load_image(TENCH)
    pre = Preprocessor.from_meta(ModelMeta(resolution=224))
    out = pre(img)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and out.flags.c_contiguous
    crop = img[16:240, 58:282].astype(np.float64)
    expected = ((crop - 127.5) / 127.5).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # one pixel written out: channel 1 (G), row 100, column 10 of the crop
    assert out[1, 100, 10] == pytest.approx((int(img[116, 68, 1]) - 127.5) / 127.5, abs=1e-6)


def test_preprocess_resize_and_imagenet_normalisation():
    """At 128 the short side becomes round(128 / 0.875) = 146, width round(341 * 146 / 256) = 194."""
    img = load_image(TENCH)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    pre = Preprocessor.from_meta(ModelMeta(resolution=128, mean=mean, std=std))
    out = pre(img)
    resized = cv2.resize(img, (194, 146), interpolation=cv2.INTER_LINEAR)
    crop = resized[9:137, 33:161].astype(np.float64)
    expected = ((crop - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    assert out.shape == (3, 128, 128)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_preprocess_uint8_nhwc_and_bgr():
    img = load_image(TENCH)
    pre = Preprocessor.from_meta(ModelMeta(resolution=224, input_format="uint8-nhwc", layout="NHWC"))
    out = pre(img)
    assert out.dtype == np.uint8 and out.shape == (224, 224, 3)
    np.testing.assert_array_equal(out, img[16:240, 58:282])
    bgr = Preprocessor.from_meta(ModelMeta(resolution=224, input_format="uint8-nhwc", color_order="BGR"))(img)
    np.testing.assert_array_equal(bgr, out[:, :, ::-1])


def test_preprocess_rejects_bad_metadata():
    with pytest.raises(BadInput, match="interpolation"):
        Preprocessor.from_meta(ModelMeta(interpolation="lanczos9"))
    with pytest.raises(BadInput, match="input format"):
        Preprocessor.from_meta(ModelMeta(input_format="int4"))
    with pytest.raises(BadInput, match="crop fraction"):
        Preprocessor.from_meta(ModelMeta(crop_fraction=0.0))


# ---------------------------------------------------------------------------- batching


def test_iter_batches_streams_and_reports_failures(tmp_path):
    samples = find_samples(default_val_dir(), limit=9)
    bad = Sample(truncated_copy(TENCH, tmp_path / "cut.jpg"), 0)
    samples = samples[:4] + [bad] + samples[4:]
    pre = Preprocessor.from_meta(ModelMeta(resolution=64))
    batches = list(iter_batches(iter(samples), pre, 4))
    assert [len(b) + len(b.failures) for b in batches] == [4, 4, 2]
    assert [b.array.shape[0] for b in batches] == [len(b) for b in batches]
    assert batches[1].failures[0][0] == bad and "truncated" in batches[1].failures[0][1]
    ok = [s for b in batches for s in b.samples_ok]
    assert ok == [s for s in samples if s != bad]
    first = batches[0].array
    assert first.shape == (4, 3, 64, 64) and first.dtype == np.float32
    np.testing.assert_array_equal(first[2], pre(load_image(samples[2].path)))
    with pytest.raises(BadInput, match="^batch"):
        list(iter_batches(samples, pre, 0))
