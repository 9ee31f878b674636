"""Bounded image reading: decode and resize bombs, special files, links, odd names and labels.

Every bad file is one `unreadable:` report (or one clean error), never a crash, a hang or gigabytes of memory.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from mnetctl import data as data_mod
from mnetctl.cli import main
from mnetctl.data import BadImage, Preprocessor, Sample, find_samples, iter_batches, load_image
from mnetctl.errors import BadInput
from mnetctl.imagesize import dimensions
from mnetctl.meta import ModelMeta
from mnetctl.quant.calibrate import calibration_hash

from .conftest import PRETRAINED, VAL
from .test_bad_inputs import Case, check_clean_error

TENCH = VAL / "n01440764" / "n01440764_tench.JPEG"


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels (its pixel data is empty)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------- header sizes


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_dimensions_from_the_header(ext):
    img = np.zeros((37, 53, 3), np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    data = buf.tobytes()
    assert dimensions(data) == (53, 37)
    assert dimensions(data[:6]) is None  # cut short: unknown, never an exception


def test_dimensions_of_other_bytes():
    assert dimensions(b"") is None and dimensions(b"hello world") is None
    assert dimensions(_png_header(20000, 20000)) == (20000, 20000)


# ---------------------------------------------------------------------------- C1: bombs


def test_image_over_the_pixel_budget_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000))
    with pytest.raises(BadImage) as err:
        load_image(bomb)
    assert str(bomb) in err.value.message and "20000 x 20000" in err.value.message and "MP limit" in err.value.message


def test_resize_is_bounded_by_the_aspect_ratio(monkeypatch):
    """A 2 x 3000 image: the short-side resize would be 55500 px long; the long side is cut first."""
    sizes = []
    real = cv2.resize

    def spy(img, dsize, *args, **kwargs):
        sizes.append(dsize)
        return real(img, dsize, *args, **kwargs)

    monkeypatch.setattr(cv2, "resize", spy)
    pre = Preprocessor.from_meta(ModelMeta(resolution=32))
    target = round(32 / 0.875)
    for shape in ((3000, 2, 3), (2, 3000, 3)):
        out = pre(np.full(shape, 200, np.uint8))
        assert out.shape == (3, 32, 32)
        np.testing.assert_allclose(out, (200 - 127.5) / 127.5, atol=1e-6)
    assert sizes and all(max(s) <= data_mod.MAX_ASPECT * target for s in sizes), sizes


def test_ordinary_images_keep_the_whole_image_resize():
    """Below MAX_ASPECT nothing changes: 341 x 256 at 128 is still resized to 194 x 146, then cropped."""
    img = load_image(TENCH)
    out = Preprocessor.from_meta(ModelMeta(resolution=128, input_format="uint8-nhwc"))(img)
    expected = cv2.resize(img, (194, 146), interpolation=cv2.INTER_LINEAR)[9:137, 33:161]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("crop", [1e-6, 0.0, float("nan"), float("inf"), -0.5])
def test_crop_fraction_out_of_range_names_the_metadata_key(crop):
    with pytest.raises(BadInput, match=r"mnetctl\.crop_fraction"):
        Preprocessor.from_meta(ModelMeta(crop_fraction=crop))


# ---------------------------------------------------------------------------- C9 / D6: special files, links


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    got: list = []
    worker = threading.Thread(target=lambda: got.append(_error_of(fifo)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_image blocked on a FIFO")
    assert "not a regular file (a FIFO)" in got[0]


def _error_of(path: Path) -> str:
    try:
        load_image(path)
    except BadImage as exc:
        return exc.message
    return ""


def test_device_and_links_are_unreadable_not_read(tmp_path):
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    assert "not a regular file (a character device)" in _error_of(Path("/dev/zero"))
    assert "not a regular file (a character device)" in _error_of(tmp_path / "zero.jpg")
    assert "dangling symbolic link" in _error_of(tmp_path / "dangling.jpg")
    assert "symbolic link loop" in _error_of(tmp_path / "loop.jpg")


def test_folder_layout_lists_broken_links_and_special_files(tmp_path):
    cls = tmp_path / "n01440764"
    cls.mkdir()
    shutil.copy(TENCH, cls / "good.JPEG")
    (cls / "dangling.JPEG").symlink_to(cls / "nowhere.JPEG")
    (cls / "loop.JPEG").symlink_to(cls / "loop.JPEG")
    (cls / "zero.JPEG").symlink_to("/dev/zero")
    os.mkfifo(cls / "fifo.JPEG")
    samples = find_samples(tmp_path)
    assert sorted(s.path.name for s in samples) == ["dangling.JPEG", "fifo.JPEG", "good.JPEG", "loop.JPEG", "zero.JPEG"]
    batches = list(iter_batches(samples, Preprocessor.from_meta(ModelMeta(resolution=32)), 8))
    assert sum(len(b) for b in batches) == 1
    assert sorted(s.path.name for b in batches for s, _ in b.failures) == [
        "dangling.JPEG", "fifo.JPEG", "loop.JPEG", "zero.JPEG"]


def test_csv_that_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="not a regular file"):
        find_samples(fifo)


# ---------------------------------------------------------------------------- C5: non-UTF-8 names


def test_calibration_hash_of_a_non_utf8_name(tmp_path):
    name = os.fsdecode(b"caf\xe9_\xff.jpg")  # surrogate escapes: not encodable as UTF-8
    try:
        shutil.copy(TENCH, tmp_path / name)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    samples = [Sample(tmp_path / name, None)]
    digest = calibration_hash(samples)
    assert len(digest) == 64 and digest == calibration_hash(samples)
    shutil.copy(TENCH, tmp_path / "other.jpg")
    assert calibration_hash([Sample(tmp_path / "other.jpg", None)]) != digest  # the name counts


def test_calibration_hash_goes_on_past_an_unreadable_image(tmp_path):
    good = Sample(TENCH, 0)
    missing = Sample(tmp_path / "missing.jpg", None)
    assert calibration_hash([good, missing]) != calibration_hash([good])


# ---------------------------------------------------------------------------- U8: unlabelled folders


def test_unlabelled_sub_folders_are_fine_without_labels(tmp_path):
    for sub in ("2023-trip", "pets"):
        (tmp_path / sub).mkdir()
        shutil.copy(TENCH, tmp_path / sub / "a.jpg")
    assert find_samples(tmp_path, labels=False) == [Sample(tmp_path / "2023-trip" / "a.jpg", None),
                                                    Sample(tmp_path / "pets" / "a.jpg", None)]
    with pytest.raises(BadInput, match="not ImageNet class ids"):
        find_samples(tmp_path)  # eval still needs labels


# ---------------------------------------------------------------------------- U6: OpenCV's log


def test_opencv_warnings_stay_off_stderr(tmp_path):
    ok, buf = cv2.imencode(".tiff", np.random.default_rng(0).random((8, 8, 3)).astype(np.float32))
    tiff = tmp_path / "float.tiff"
    tiff.write_bytes(buf.tobytes())
    code = f"from mnetctl.data import load_image\ntry:\n    load_image({str(tiff)!r})\nexcept Exception as e:\n    print(e)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "not a decodable image" in res.stdout
    assert res.stderr == ""


# ---------------------------------------------------------------------------- the CLI: one line each


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, str]:
    from mnetctl.builder import build_model, save_model

    root = tmp_path_factory.mktemp("bounds")
    p = {"root": root, "model": save_model(build_model("v1", 0.25, 64), root / "m.onnx")}
    proto = onnx.load(str(p["model"]))
    for value in ("1e-6", "0", "nan"):
        meta = {e.key: e for e in proto.metadata_props}
        meta["mnetctl.crop_fraction"].value = value
        onnx.save(proto, str(root / f"crop_{value}.onnx"))
    os.mkfifo(root / "fifo.jpg")
    (root / "bombs" / "n01440764").mkdir(parents=True)
    (root / "bombs" / "n01440764" / "huge.png").write_bytes(_png_header(20000, 20000))
    return {k: str(v) for k, v in p.items()}


CLI_CASES = [
    Case("eval-crop-fraction-tiny", "eval {root}/crop_1e-6.onnx --limit 2", ("crop_fraction",)),
    Case("eval-crop-fraction-zero", "eval {root}/crop_0.onnx --limit 2", ("crop_fraction",)),
    Case("predict-crop-fraction-nan", "predict {root}/crop_nan.onnx " + str(TENCH), ("crop_fraction",)),
    Case("predict-fifo", "predict {model} {root}/fifo.jpg", ("1 of 1 images",), reports="unreadable:"),
    Case("predict-dev-zero", "predict {model} /dev/zero", ("1 of 1 images",), reports="unreadable:"),
    Case("eval-only-a-pixel-bomb", "eval {model} --data {root}/bombs", ("none of the 1 images", "MP limit"),
         reports="unreadable:"),
]


@pytest.mark.parametrize("case", [c.param() for c in CLI_CASES])
def test_bad_file_is_one_clean_line(case: Case, bad, capsys, monkeypatch):
    monkeypatch.delenv("MNETCTL_DEBUG", raising=False)
    code = main([part.format(**bad) for part in case.argv.split()])
    err = capsys.readouterr().err
    assert code == 2, err
    check_clean_error(err, case)


def test_predict_accepts_a_photo_folder_with_any_sub_folders(bad, tmp_path, capsys):
    for sub in ("2023-trip", "pets"):
        (tmp_path / sub).mkdir()
        shutil.copy(TENCH, tmp_path / sub / "a.jpg")
    assert main(["predict", bad["model"], str(tmp_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_quantize_calibrates_on_a_photo_folder(bad, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "holiday").mkdir(parents=True)
    for i in range(3):
        shutil.copy(TENCH, photos / "holiday" / f"{i}.jpg")
    out = tmp_path / "q.onnx"  # beside the photo folder, never inside it
    assert main(["quantize", bad["model"], "--calib", str(photos), "--no-eval", "--no-bench", "-o", str(out)]) == 0, \
        capsys.readouterr().err
    assert out.is_file()


def test_compare_names_an_unreadable_image_once(bad, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert.interpreter")
    cls = tmp_path / "n01440764"
    cls.mkdir()
    shutil.copy(TENCH, cls / "good.JPEG")
    (cls / "text.JPEG").write_text("not an image\n")
    from mnetctl.builder import build_model, save_model

    model = save_model(build_model("v1", 0.25, 128, weights="pretrained"), tmp_path / "v1.onnx")
    tflite = PRETRAINED / "coral" / "mobilenet_v1_0.25_128_quant.tflite"
    code = main(["compare", str(model), "--tflite", str(tflite), "--data", str(tmp_path), "--iterations", "2",
                 "--warmup", "0", "--json"])
    err = capsys.readouterr().err
    assert code == 0, err
    line = next(ln for ln in err.splitlines() if ln.startswith("unreadable:"))
    assert line.count(str(cls / "text.JPEG")) == 1 and "not a decodable image" in line
