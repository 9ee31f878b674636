"""TFLite export: mnetctl's ONNX models written as TFLite, run in LiteRT against ONNX Runtime on real images,
and the Edge TPU rule checks on those files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

try:
    import ai_edge_litert.interpreter  # noqa: F401
except ImportError as exc:
    pytest.skip(f"ai-edge-litert cannot be imported ({exc}); pip install 'mnetctl[test]'", allow_module_level=True)

from mnetctl.builder import build_model, save_model  # noqa: E402
from mnetctl.cli import main  # noqa: E402
from mnetctl.data import find_samples, iter_batches  # noqa: E402
from mnetctl.edgetpu import check_tflite, tools  # noqa: E402
from mnetctl.errors import BadInput  # noqa: E402
from mnetctl.export.tflite import export_tflite, read_tflite_meta  # noqa: E402
from mnetctl.litert import LiteRTRunner  # noqa: E402
from mnetctl.model import Model, fit_batches  # noqa: E402
from mnetctl.quant.pipeline import quantize_model  # noqa: E402

from .conftest import CALIB, VAL  # noqa: E402

IMAGES = 24


@pytest.fixture(scope="module")
def small_int8(pretrained_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "v1-0.25-128.int8.onnx"
    quantize_model(pretrained_small, out, samples=40)
    return out


@pytest.fixture(scope="module")
def val_batch(pretrained_small):
    m = Model.open(pretrained_small)
    (batch,) = list(iter_batches(find_samples(VAL, limit=IMAGES), m.preprocessor, IMAGES))
    return batch.array.copy()


def _onnx(path, x):
    m = Model.open(path)
    sess = m.session(threads=1)
    return np.concatenate([sess.run([m.output_name], {m.input_name: c})[0][:n] for c, n in fit_batches(x, m.input)])


def _litert(path, x):
    r = LiteRTRunner(path, threads=1)
    rows = []
    for img in x:
        t = np.ascontiguousarray(img.transpose(1, 2, 0)[None])
        if r.input_dtype == np.int8:
            s, z = r.input_quant
            t = np.clip(np.round(t / s + z), -128, 127).astype(np.int8)
        out = r(t).reshape(-1)
        s, z = r.output_quant
        rows.append((out.astype(np.float32) - z) * s if out.dtype != np.float32 else out)
    return np.stack(rows)


def _agree(a, b) -> float:
    return float(np.mean(np.argmax(a, 1) == np.argmax(b, 1)))


def test_fp32_export_matches_onnx_runtime(pretrained_small, val_batch, tmp_path):
    out = export_tflite(pretrained_small, tmp_path / "v1.tflite")
    ref, got = _onnx(pretrained_small, val_batch), _litert(out, val_batch)
    assert _agree(ref, got) == 1.0
    assert np.abs(ref - got).max() < 1e-3 * np.abs(ref).max()
    meta = read_tflite_meta(out)
    assert meta["mnetctl.arch"] == "v1" and meta["mnetctl.precision"] == "fp32" and meta["mnetctl.layout"] == "NHWC"


def test_v3_structure_in_float(tmp_path, val_batch):
    """Hard-swish, the folded SE gate, broadcast MUL, symmetric padding (PAD ops) on a random V3-Small."""
    src = tmp_path / "v3s.onnx"
    save_model(build_model("v3-small", 1.0, 128), src)
    out = export_tflite(src, tmp_path / "v3s.tflite")
    x = val_batch  # 128 px, like the V1 fixture
    ref, got = _onnx(src, x), _litert(out, x)
    assert np.abs(ref - got).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_int8_export_is_full_integer_and_agrees(pretrained_small, small_int8, val_batch, tmp_path):
    out = export_tflite(small_int8, tmp_path / "v1.int8.tflite", target="edgetpu")  # auto: int8 for the Edge TPU
    r = LiteRTRunner(out, threads=1)
    assert r.input_dtype == np.int8 and r.input_quant[0] > 0
    assert read_tflite_meta(out)["mnetctl.precision"] == "int8"
    rep = check_tflite(out)
    assert rep.rejected == [] and rep.fallback == [] and len(rep.ops) > 20
    agree = _agree(_onnx(small_int8, val_batch), _litert(out, val_batch))
    assert agree >= 0.8, agree
    assert out.stat().st_size < 0.5 * pretrained_small.stat().st_size


def test_mixed_export_follows_the_qdq_model(small_int8, val_batch, tmp_path):
    out = export_tflite(small_int8, tmp_path / "v1.mixed.tflite")  # auto: mixed for a QDQ model
    assert read_tflite_meta(out)["mnetctl.precision"] == "mixed"
    agree = _agree(_onnx(small_int8, val_batch), _litert(out, val_batch))
    assert agree >= 0.95, agree
    rep = check_tflite(out)  # float stem: not for the Edge TPU
    assert any("not full-integer" in r for r in rep.rejected)


def test_edgetpu_rejects_float_and_dynamic_models(pretrained_small, small_int8, tmp_path):
    f = export_tflite(pretrained_small, tmp_path / "f.tflite", "fp32")
    rep = check_tflite(f)
    assert any("float32" in r and "input" in r for r in rep.rejected)
    assert any("not full-integer" in r for r in rep.rejected)
    d = export_tflite(small_int8, tmp_path / "d.tflite", "int8", dynamic_batch=True)
    rep = check_tflite(d)
    assert [r for r in rep.rejected if r.startswith("dynamic shape")] and len(rep.rejected) == 1
    LiteRTRunner(d, threads=1)  # still a loadable model


def test_precision_needs_a_quantized_model(pretrained_small, tmp_path):
    with pytest.raises(BadInput, match="quantized"):
        export_tflite(pretrained_small, tmp_path / "x.tflite", "int8")
    with pytest.raises(BadInput, match="precision must be"):
        export_tflite(pretrained_small, tmp_path / "x.tflite", "int4")


def test_op_the_writer_cannot_express_is_named(pretrained_small, tmp_path):
    proto = onnx.load(str(pretrained_small))
    g = proto.graph
    old = g.output[0].name
    g.node.append(helper.make_node("Neg", [old], ["negated"], name="extra.neg"))
    g.output[0].name = "negated"
    bad = tmp_path / "neg.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(BadInput, match=r"extra\.neg.*Neg"):
        export_tflite(bad, tmp_path / "neg.tflite")
    assert not (tmp_path / "neg.tflite").exists()


def test_not_a_tflite_file(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00\x01not a flatbuffer at all" * 10)
    with pytest.raises(BadInput, match="not a TFLite model"):
        check_tflite(junk)
    with pytest.raises(BadInput, match="not a TFLite model"):
        read_tflite_meta(junk)
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 40)
    with pytest.raises(BadInput, match="not a readable TFLite model"):
        check_tflite(damaged)


def test_cli_export_check_and_bench_on_the_edge_tpu(small_int8, tmp_path, capsys):
    out = tmp_path / "v1.tflite"
    assert main(["export", str(small_int8), "-o", str(out), "--check", "edgetpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["precision"] == "int8" and data["edgetpu"]["fallback"] == [] and data["edgetpu"]["rejected"] == []
    report = tmp_path / "edgetpu.json"
    code = main(["bench", str(out), "--device", "coral-edge-tpu", "--json", str(report)])
    text = capsys.readouterr()
    assert json.loads(report.read_text())["edgetpu"]["mapped"] == data["edgetpu"]["ops"]
    if tools().missing():
        assert code == 3 and "cannot bench on coral-edge-tpu here" in text.err
        assert "falling back to the CPU: 0" in text.out
    assert main(["export", str(out)]) == 2  # already TFLite, no --check
    assert "already a TFLite file" in capsys.readouterr().err


def test_cli_rejects_a_float_file_for_the_edge_tpu(pretrained_small, tmp_path, capsys):
    out = tmp_path / "f.tflite"
    assert main(["export", str(pretrained_small), "-o", str(out), "--precision", "fp32"]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--check", "edgetpu"]) == 1
    err = capsys.readouterr().err
    assert "cannot run on the Edge TPU" in err and "float32" in err


@pytest.mark.slow
def test_all_pretrained_classifiers_agree(tmp_path):
    """The acceptance figures (scripts/tflite_export_agreement.py) on all 200 val images."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "tflite_export_agreement.py"
    spec = importlib.util.spec_from_file_location("agreement", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for arch, width, res in mod.PRETRAINED:
        row = mod.one(tmp_path, arch, width, res, "pretrained", None)
        assert row["tflite_mixed_agreement"] >= 99.0, row
        assert abs(row["tflite_mixed_top1"] - row["onnx_int8_top1"]) <= 0.5 + 1e-9, row
        assert row["tflite_fp32_agreement"] >= 99.5, row
    assert CALIB.is_dir()


def test_edgetpu_checks_on_third_party_checkpoints():
    """Coral's own (Edge TPU-ready) V2 maps fully; the V3-Small uint8 checkpoint falls back at its first HARD_SWISH."""
    from .conftest import PRETRAINED

    rep = check_tflite(PRETRAINED / "coral" / "mobilenet_v2_1.0_224_quant.tflite")
    assert rep.rejected == [] and rep.fallback == [] and len(rep.ops) > 60
    rep = check_tflite(PRETRAINED / "atu" / "v3-small_224_1.0_uint8.tflite")
    assert rep.rejected == [] and rep.fallback and rep.fallback[0].op == "HARD_SWISH"
    assert rep.fallback[0].reason and all(not o.reason for o in rep.fallback[1:] if o.op == "CONV_2D")
