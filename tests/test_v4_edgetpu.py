"""MobileNetV4 (random weights) and MobileNet-EdgeTPU (the MLPerf Mobile checkpoint): valid graphs that run,
Mobile MQA computed as attention should be, and the checkpoint imported float and int8 like the others."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from mnetctl.analysis import analyze
from mnetctl.builder import build_model, save_model
from mnetctl.meta import read_meta
from mnetctl.specs import FAMILIES, decode
from mnetctl.weights.tflite_reader import read_tflite

from .conftest import PRETRAINED

EDGETPU = PRETRAINED / "mlcommons-mobile" / "v0_7_tflite_mobilenet_edgetpu_224_1.0_uint8.tflite"
V4 = [name for name in FAMILIES if name.startswith("v4-")]


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch", V4 + ["mobilenet-edgetpu"])
def test_builds_checks_and_runs_at_its_paper_resolution(arch):
    fam = FAMILIES[arch]
    model = build_model(arch, 1.0, fam.default_resolution)
    onnx.checker.check_model(model, full_check=True)
    stats = analyze(model)
    assert (stats.macs, stats.params) == decode(arch, 1.0, fam.default_resolution, 1000).count_macs_params()
    res = fam.default_resolution
    y = _session(model).run(None, {"input": np.random.default_rng(0).standard_normal((2, 3, res, res), np.float32)})[0]
    assert y.shape == (2, 1000) and np.isfinite(y).all()
    assert read_meta(model).weights == "random"


def test_hybrid_attention_uses_plain_ops_and_the_cpu_ep_keeps_them(tmp_path):
    from .conftest import optimized_ops

    model = build_model("v4-hybrid-m", 0.5, 128)
    ops = {n.op_type for n in model.graph.node}
    assert {"MatMul", "Softmax", "Reshape", "Transpose"} <= ops
    assert not ops & {"Attention", "MultiHeadAttention"}
    path = tmp_path / "hybrid.onnx"
    save_model(model, path)
    ran = optimized_ops(path, tmp_path)
    assert ran["Softmax"] == 8 and ran["MatMul"] + ran.get("FusedMatMul", 0) == 16  # 8 MQA blocks x 2 products


def _conv(x, w, b, stride, groups):
    """NCHW convolution with symmetric k//2 padding (the random-weight graphs' padding), batch 1."""
    cout, cin_g, k, _ = w.shape
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h = (x.shape[1] + 2 * pad - k) // stride + 1
    out = np.zeros((cout, h, h), np.float64)
    per = cout // groups
    for o in range(cout):
        g = o // per
        src = xp[g * cin_g:(g + 1) * cin_g]
        for i in range(k):
            for j in range(k):
                patch = src[:, i:i + stride * h:stride, j:j + stride * h:stride]
                out[o] += np.tensordot(w[o, :, i, j], patch, axes=(0, 0))
    return out + b[:, None, None]


def test_mobile_mqa_matches_a_numpy_reference():
    """One MQA block of the emitted graph against multi-query attention written out in numpy."""
    width, res = 0.5, 128
    cfg = decode("v4-hybrid-m", width, res)
    blk = next(b for b in cfg.blocks if b.kind == "mqa" and b.kv_stride == 2)
    model = build_model("v4-hybrid-m", width, res, seed=3)
    p = f"blocks.{blk.index}"
    x_name = next(n for n in model.graph.node if n.name == f"{p}.norm").input[0]
    for name in (x_name, f"{p}.add"):
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    rng = np.random.default_rng(4)
    outs = _session(model).run([x_name, f"{p}.add"], {"input": rng.standard_normal((1, 3, res, res), np.float32)})
    x, got = outs[0][0].astype(np.float64), outs[1][0]

    def w(layer):
        return inits[f"{layer}.weight"], inits[f"{layer}.bias"]

    c, size = x.shape[0], x.shape[1]
    xn = _conv(x, *w(f"{p}.norm"), 1, c)
    q = _conv(xn, *w(f"{p}.query"), 1, 1).reshape(blk.heads, blk.key_dim, size * size)
    k = _conv(_conv(xn, *w(f"{p}.key.dw"), 2, c), *w(f"{p}.key"), 1, 1)
    v = _conv(_conv(xn, *w(f"{p}.value.dw"), 2, c), *w(f"{p}.value"), 1, 1)
    m = k.shape[1] * k.shape[2]
    assert k.shape[1] == math.ceil(size / 2)  # keys and values downsampled 2x
    k, v = k.reshape(blk.key_dim, m), v.reshape(blk.value_dim, m)
    logits = np.einsum("hdn,dm->hnm", q, k) / math.sqrt(blk.key_dim)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    ctx = np.einsum("hnm,dm->hdn", attn, v).reshape(blk.heads * blk.value_dim, size, size)
    want = _conv(ctx, *w(f"{p}.output"), 1, 1) + x
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_archs_lists_v4_with_random_weights_only():
    from typer.testing import CliRunner

    from mnetctl.cli import app
    import json

    out = CliRunner().invoke(app, ["archs", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["arch"]: r for r in json.loads(out.output)["archs"]}
    for arch in V4:
        assert rows[arch]["pretrained"] == [] and "random weights" in rows[arch]["note"]
    assert rows["v4-conv-m"]["default_resolution"] == 256
    assert [p["width"] for p in rows["mobilenet-edgetpu"]["pretrained"]] == [1.0]


# ---------------------------------------------------------------------------------------------------------------
# MobileNet-EdgeTPU checkpoint


def _litert_shapes(path):
    lite = pytest.importorskip("ai_edge_litert.interpreter")
    it = lite.Interpreter(model_path=str(path))
    it.allocate_tensors()
    return {d["index"]: tuple(int(v) for v in d["shape"]) for d in it.get_tensor_details()}


def test_edgetpu_macs_and_params_equal_the_checkpoint():
    """Counted from the checkpoint alone: its weight tensors, and the output shapes LiteRT allocates."""
    ck = read_tflite(EDGETPU)
    shapes = _litert_shapes(EDGETPU)
    ck_params = sum(layer.weight.size + layer.bias.size for layer in ck.layers)
    ck_macs = 0
    for layer in ck.layers:
        out = shapes[ck.graph.ops[layer.op_index].outputs[0]]
        per_output = layer.weight.shape[1] * layer.kernel * layer.kernel if layer.weight.ndim == 4 else layer.weight.shape[1]
        ck_macs += math.prod(out[1:]) * per_output
    model = build_model("mobilenet-edgetpu", 1.0, 224, weights="pretrained")
    stats = analyze(model)
    assert (stats.macs, stats.params) == (ck_macs, ck_params)
    meta = read_meta(model)
    assert meta.classes == 1001 and meta.label_offset == 1  # background class at 0
    assert meta.mean == (128.0, 128.0, 128.0) and meta.std == (127.0, 127.0, 127.0)  # uint8 input: scale 1/127, zp 128


@pytest.fixture(scope="module")
def edgetpu_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("edgetpu")
    paths = {}
    for precision in ("fp32", "int8"):
        paths[precision] = save_model(build_model("mobilenet-edgetpu", 1.0, 224, weights="pretrained", precision=precision),
                                      d / f"edgetpu-{precision}.onnx")
    return paths


def _compare(path, limit):
    pytest.importorskip("ai_edge_litert.interpreter")
    from mnetctl.compare import compare

    return compare(path, "pretrained", threads=1, iterations=1, warmup=0, limit=limit)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_edgetpu_agrees_with_litert_on_a_few_images(edgetpu_models, precision):
    res = _compare(edgetpu_models[precision], 24)
    assert res.images == 24 and res.agreement >= 0.9


@pytest.mark.slow
def test_edgetpu_top1_and_int8_agreement_on_the_val_sample(edgetpu_models):
    fp32 = _compare(edgetpu_models["fp32"], None)
    int8 = _compare(edgetpu_models["int8"], None)
    assert fp32.labelled == int8.labelled == 200
    allowed = 0.015 * 200  # 1.5 points, in images
    assert abs(fp32.onnx.correct - fp32.litert.correct) <= allowed
    assert abs(int8.onnx.correct - int8.litert.correct) <= allowed
    assert int8.agreement >= 0.95 and fp32.agreement >= 0.95
