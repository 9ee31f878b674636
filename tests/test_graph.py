"""Graph emission: valid ONNX, runs in onnxruntime, exact layer accounting, padding, formats, determinism."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnetctl.analysis import analyze
from mnetctl.builder import build_model
from mnetctl.graph import ir_version_for, pads_for
from mnetctl.meta import read_meta
from mnetctl.specs import FAMILIES, decode

from .test_specs import REFERENCE


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_every_arch_is_valid_and_runs(arch):
    model = build_model(arch, 1.0, 96)
    onnx.checker.check_model(model, full_check=True)
    y = run(model, np.random.default_rng(0).standard_normal((2, 3, 96, 96), dtype=np.float32))
    assert y.shape == (2, 1000)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("arch,width,res,classes,macs_m,params_m,tol,source", REFERENCE)
def test_graph_accounting_matches_reference(arch, width, res, classes, macs_m, params_m, tol, source):
    model = build_model(arch, width, res, classes)
    stats = analyze(model)
    assert stats.macs / 1e6 == pytest.approx(macs_m, rel=tol), source
    assert stats.params / 1e6 == pytest.approx(params_m, rel=tol), source
    assert (stats.macs, stats.params) == decode(arch, width, res, classes).count_macs_params()


def test_readable_node_names_and_ops():
    model = build_model("v3-small", 1.0, 224)
    names = {n.name for n in model.graph.node}
    for expected in ("stem.conv", "stem.act", "blocks.0.dw", "blocks.0.se.reduce", "blocks.0.se.gate",
                     "blocks.3.expand", "blocks.3.project", "blocks.4.add", "head.conv", "head.pool", "head.hidden", "head.fc"):
        assert expected in names
    ops = {n.op_type for n in model.graph.node}
    assert {"HardSwish", "HardSigmoid", "Relu", "GlobalAveragePool", "Gemm"} <= ops
    gates = [n for n in model.graph.node if n.op_type == "HardSigmoid"]
    alpha = [a.f for a in gates[0].attribute if a.name == "alpha"][0]
    assert alpha == pytest.approx(1 / 6)
    v2 = build_model("v2", 1.0, 224)
    assert {n.op_type for n in v2.graph.node} >= {"Clip", "Add", "Conv"}
    assert sum(n.op_type == "Add" for n in v2.graph.node) == 10  # residual connections


def test_opset_13_decomposes_hardswish_and_agrees_with_17():
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64), dtype=np.float32)
    m13 = build_model("v3-small", 1.0, 64, opset=13)
    m17 = build_model("v3-small", 1.0, 64, opset=17)
    assert "HardSwish" not in {n.op_type for n in m13.graph.node}
    assert m13.ir_version == ir_version_for(13) == 7 and m17.ir_version == 8
    onnx.checker.check_model(m13, full_check=True)
    np.testing.assert_allclose(run(m13, x), run(m17, x), rtol=1e-4, atol=1e-5)


def test_ir_version_follows_opset():
    assert build_model("v1", 0.25, 64, opset=21).ir_version == 10


def test_uint8_input_folds_preprocessing():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    f = build_model("v2", 0.5, 96)
    u = build_model("v2", 0.5, 96, input_format="uint8-nhwc")
    meta = read_meta(u)
    assert meta.layout == "NHWC" and meta.input_format == "uint8-nhwc"
    x = (img.astype(np.float32) - np.array(meta.mean, np.float32)) / np.array(meta.std, np.float32)
    np.testing.assert_allclose(run(u, img), run(f, x.transpose(0, 3, 1, 2).copy()), rtol=1e-4, atol=1e-4)


def test_tf_same_padding_is_asymmetric_on_stride_two():
    assert pads_for(224, 3, 2, "same") == ([0, 0, 1, 1], 112)
    assert pads_for(224, 3, 2, "symmetric") == ([1, 1, 1, 1], 112)
    assert pads_for(28, 5, 2, "same") == ([1, 1, 2, 2], 14)
    assert pads_for(7, 3, 2, "same") == ([1, 1, 1, 1], 4)
    assert pads_for(14, 5, 1, "same") == ([2, 2, 2, 2], 14)
    same = build_model("v1", 0.25, 128, padding="same")
    stem = next(n for n in same.graph.node if n.name == "stem.conv")
    assert [a.ints for a in stem.attribute if a.name == "pads"][0] == [0, 0, 1, 1]
    x = np.random.default_rng(3).standard_normal((1, 3, 128, 128), dtype=np.float32)
    sym = build_model("v1", 0.25, 128, padding="symmetric")
    assert run(same, x).shape == run(sym, x).shape
    assert not np.allclose(run(same, x), run(sym, x))


def test_metadata_is_complete_and_sorted():
    model = build_model("v2", 0.75, 160, classes=10)
    keys = [p.key for p in model.metadata_props]
    assert keys == sorted(keys)
    meta = read_meta(model)
    assert (meta.arch, meta.width, meta.resolution, meta.classes, meta.label_offset) == ("v2", 0.75, 160, 10, 0)
    assert meta.color_order == "RGB" and meta.layout == "NCHW" and meta.weights == "random"
    assert len(meta.mean) == 3 and len(meta.std) == 3 and meta.version
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_same_command_same_bytes(arch):
    a = build_model(arch, 0.5, 64, seed=7).SerializeToString(deterministic=True)
    b = build_model(arch, 0.5, 64, seed=7).SerializeToString(deterministic=True)
    c = build_model(arch, 0.5, 64, seed=8).SerializeToString(deterministic=True)
    assert a == b and a != c


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(list(FAMILIES)),
    width=st.floats(0.1, 2.0, allow_nan=False),
    resolution=st.integers(32, 512),
)
def test_property_any_width_and_resolution(arch, width, resolution):
    model = build_model(arch, width, resolution)
    onnx.checker.check_model(model)
    stats = analyze(model)
    assert (stats.macs, stats.params) == decode(arch, width, resolution, 1000).count_macs_params()
    if resolution <= 160:  # keep the session runs cheap
        y = run(model, np.zeros((1, 3, resolution, resolution), np.float32))
        assert y.shape == (1, 1000)
