"""TFLite checkpoint import: parsing, dequantization, layouts, layer mapping checks, metadata, accuracy.

Everything runs on the checkpoints shipped in models/pretrained and the 200-image val sample.
The LiteRT comparisons (same checkpoint, same images) live in test_litert_agreement.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import tflite

from mnetctl.builder import build_model, save_model
from mnetctl.cli import main
from mnetctl.errors import BadInput, EnvironmentMissing
from mnetctl.meta import read_meta
from mnetctl.runtime import cpu_session
from mnetctl.specs import decode
from mnetctl.weights import registry
from mnetctl.weights.tflite_import import (
    _preprocessing,
    activation_fits,
    expected_activations,
    guess_architecture,
    load_checkpoint_weights,
    map_layers,
)
from mnetctl.weights.tflite_reader import _dequantize, read_tflite

from .conftest import PRETRAINED, VAL

CORAL = PRETRAINED / "coral"
V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
TF2 = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
V1_025 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
V1_EXTRACTOR = CORAL / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
V1_HEAD = CORAL / "mobilenet_quant_v1_224_head_layers.tflite"
V3S = PRETRAINED / "atu" / "v3-small_224_1.0_uint8.tflite"


# ------------------------------------------------------------------------------------------------
# Reading the flatbuffer independently of the importer, to check its numbers


def _raw_tensor(path, tensor_name_prefix):
    """(int values in TFLite layout, scales, zero points, quantized dim) of the first tensor whose name starts so."""
    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        if t.Name().decode().startswith(tensor_name_prefix):
            data = model.Buffers(t.Buffer()).DataAsNumpy()
            dtype = {3: np.uint8, 9: np.int8, 2: np.int32}[t.Type()]
            arr = np.frombuffer(data.tobytes(), dtype).reshape(t.ShapeAsNumpy())
            q = t.Quantization()
            return arr, q.ScaleAsNumpy(), q.ZeroPointAsNumpy(), q.QuantizedDimension()
    raise AssertionError(f"no tensor {tensor_name_prefix} in {path}")


def test_v2_uint8_conv_dequantized_and_transposed_to_oihw():
    ck = read_tflite(V2)
    cfg = decode("v2", 1.0, 224, 1001)
    assert [tuple(layer.weight.shape) for layer in ck.layers][:3] == [(32, 3, 3, 3), (32, 1, 3, 3), (16, 32, 1, 1)]
    assert len(ck.layers) == len(cfg.param_layers()) == 53
    assert (ck.input_dtype, ck.input_shape, ck.input_zero_point) == ("uint8", (1, 224, 224, 3), 128)
    assert ck.input_scale == pytest.approx(1 / 128)

    raw, scale, zp, _ = _raw_tensor(V2, "MobilenetV2/Conv/Conv2D_Fold")
    assert raw.shape == (32, 3, 3, 3) and raw.dtype == np.uint8 and scale.size == 1
    stem = ck.layers[0]
    expected = (raw.astype(np.float64) - zp[0]) * scale[0]  # [O, H, W, I]
    np.testing.assert_allclose(stem.weight, expected.transpose(0, 3, 1, 2), rtol=1e-6, atol=1e-7)
    assert (stem.op, stem.stride, stem.padding, stem.activation, stem.dtype) == ("CONV_2D", 2, "same", "relu", "uint8")

    # the classifier: a 1x1 conv [1001, 1, 1, 1280] in the file, [1001, 1280] in ours
    weights, _ = load_checkpoint_weights(cfg, str(V2))
    w, b = weights["head.fc"]
    assert w.shape == (1001, 1280) and b.shape == (1001,)
    np.testing.assert_array_equal(w, ck.layers[-1].weight[:, :, 0, 0])
    assert ck.layers[-1].activation == "none"


def test_tf2_int8_per_channel_depthwise_and_int32_bias():
    ck = read_tflite(TF2)
    dw = ck.layers[1]
    assert dw.op == "DEPTHWISE_CONV_2D" and dw.dtype == "int8"
    name = dw.name
    raw, scale, zp, axis = _raw_tensor(TF2, name)
    assert raw.shape == (1, 3, 3, 32) and scale.size == 32 and axis == 3 and not zp.any()
    expected = raw[0].astype(np.float64).transpose(2, 0, 1)[:, None] * scale[:, None, None, None]
    np.testing.assert_allclose(dw.weight, expected, rtol=1e-6, atol=1e-9)
    assert dw.weight.shape == (32, 1, 3, 3)

    # int32 bias, per-channel scale = input scale x weight scale
    model = tflite.Model.GetRootAsModel(TF2.read_bytes(), 0)
    g = model.Subgraphs(0)
    op = g.Operators(dw.op_index)
    bias_t = g.Tensors(int(op.Inputs(2)))
    qb = bias_t.Quantization()
    raw_b = np.frombuffer(model.Buffers(bias_t.Buffer()).DataAsNumpy().tobytes(), np.int32)
    np.testing.assert_allclose(dw.bias, raw_b * qb.ScaleAsNumpy(), rtol=1e-6)
    assert abs(dw.bias).max() > 0


def test_dequantize_rules():
    q = np.array([[0, 255], [128, 10]], np.uint8)
    np.testing.assert_allclose(_dequantize(q, np.array([0.5]), np.array([128]), 0), [[-64, 63.5], [0, -59]])
    q8 = np.arange(-4, 4, dtype=np.int8).reshape(1, 2, 4)
    scales = np.array([1.0, 0.5, 0.25, 2.0])
    out = _dequantize(q8, scales, np.zeros(4, np.int64), 2)
    np.testing.assert_allclose(out, q8.astype(np.float64) * scales)
    out0 = _dequantize(q8.reshape(4, 2), np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 1, 0, 0]), 0)
    np.testing.assert_allclose(out0[1], (q8.reshape(4, 2)[1] - 1) * 2.0)
    with pytest.raises(BadInput, match="per-channel"):
        _dequantize(q8, np.ones(3), np.zeros(3), 2)


def test_v3_small_structure_is_checked_not_skipped():
    """Every layer's activation is recognised (fused, HARD_SWISH op, or a ReLU implied by the quantization
    range), except the squeeze-excite expand conv whose gate is spelled out as ADD/MUL."""
    ck = read_tflite(V3S)
    cfg = decode("v3-small", 1.0, 224, 1001)
    names = [p.name for p in cfg.param_layers()]
    assert len(ck.layers) == len(names) == 54
    unknown = [n for n, layer in zip(names, ck.layers) if layer.activation is None]
    assert unknown and all(n.endswith(".se.expand") for n in unknown)
    want = expected_activations(cfg)
    found = {n: layer.activation for n, layer in zip(names, ck.layers)}
    # the converter dropped the fused ReLUs: the output ranges starting at 0 still show them
    assert found["stem.conv"] == "hswish" and found["blocks.0.dw"] == "relu-range" and found["blocks.3.dw"] == "hswish"
    assert found["blocks.0.se.reduce"] == "relu-range" and found["head.hidden"] == "hswish" and found["head.fc"] == "none"
    assert all(activation_fits(found[n], want[n]) for n in names)
    assert {found[n] for n in names if want[n] == "none"} == {"none"}  # projections really are linear
    assert not activation_fits("relu-range", "hswish") and not activation_fits("hswish", "relu")
    assert activation_fits("relu-range", "none") and activation_fits(None, "relu")
    assert {layer.padding for layer in ck.layers} == {"same"}


# ------------------------------------------------------------------------------------------------
# A tiny hand-written .tflite for the paths the shipped checkpoints do not take: float input,
# float16 weights behind DEQUANTIZE, explicit PAD + VALID conv, FULLY_CONNECTED with int8 weights.


def _write_tflite(path, tensors, ops):
    """Serialise a one-subgraph TFLite model. tensors: dicts(name, shape, type, data=None, scale=None,
    zp=None); ops: (builtin code, options type, options writer or None, inputs, outputs)."""
    import importlib

    import flatbuffers

    def mod(name):
        return importlib.import_module(f"tflite.{name}")

    b = flatbuffers.Builder(4096)

    def offsets(start, items):
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    Buf, T, Q, O, OC, SG, M = (mod(n) for n in ("Buffer", "Tensor", "QuantizationParameters", "Operator",
                                                "OperatorCode", "SubGraph", "Model"))
    buffers = []
    for data in [b""] + [t.get("data") or b"" for t in tensors]:
        vec = b.CreateByteVector(data) if data else None
        Buf.Start(b)
        if vec is not None:
            Buf.AddData(b, vec)
        buffers.append(Buf.End(b))
    tensor_offs = []
    for i, t in enumerate(tensors):
        name = b.CreateString(t["name"])
        shape = b.CreateNumpyVector(np.array(t["shape"], np.int32))
        quant = None
        if t.get("scale") is not None:
            scale = b.CreateNumpyVector(np.array(t["scale"], np.float32))
            zp = b.CreateNumpyVector(np.array(t["zp"], np.int64))
            Q.Start(b)
            Q.AddScale(b, scale)
            Q.AddZeroPoint(b, zp)
            quant = Q.End(b)
        T.Start(b)
        T.AddShape(b, shape)
        T.AddType(b, t["type"])
        T.AddBuffer(b, i + 1 if t.get("data") else 0)
        T.AddName(b, name)
        if quant is not None:
            T.AddQuantization(b, quant)
        tensor_offs.append(T.End(b))
    codes = sorted({op[0] for op in ops})
    code_offs = []
    for c in codes:
        OC.Start(b)
        OC.AddDeprecatedBuiltinCode(b, c)
        OC.AddBuiltinCode(b, c)
        OC.AddVersion(b, 1)
        code_offs.append(OC.End(b))
    op_offs = []
    for code, opt_type, write_opts, ins, outs in ops:
        opts = write_opts(b) if write_opts else None
        ins_v = b.CreateNumpyVector(np.array(ins, np.int32))
        outs_v = b.CreateNumpyVector(np.array(outs, np.int32))
        O.Start(b)
        O.AddOpcodeIndex(b, codes.index(code))
        O.AddInputs(b, ins_v)
        O.AddOutputs(b, outs_v)
        if opts is not None:
            O.AddBuiltinOptionsType(b, opt_type)
            O.AddBuiltinOptions(b, opts)
        op_offs.append(O.End(b))
    t_vec = offsets(SG.StartTensorsVector, tensor_offs)
    o_vec = offsets(SG.StartOperatorsVector, op_offs)
    in_v = b.CreateNumpyVector(np.array([0], np.int32))
    out_v = b.CreateNumpyVector(np.array([ops[-1][4][0]], np.int32))
    SG.Start(b)
    SG.AddTensors(b, t_vec)
    SG.AddOperators(b, o_vec)
    SG.AddInputs(b, in_v)
    SG.AddOutputs(b, out_v)
    sub = SG.End(b)
    c_vec = offsets(M.StartOperatorCodesVector, code_offs)
    s_vec = offsets(M.StartSubgraphsVector, [sub])
    b_vec = offsets(M.StartBuffersVector, buffers)
    M.Start(b)
    M.AddVersion(b, 3)
    M.AddOperatorCodes(b, c_vec)
    M.AddSubgraphs(b, s_vec)
    M.AddBuffers(b, b_vec)
    b.Finish(M.End(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def _tiny_float_model(path, pads):
    import importlib

    conv_opts = importlib.import_module("tflite.Conv2DOptions")
    rng = np.random.default_rng(0)
    w16 = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    bias = np.arange(4, dtype=np.float32)
    fc_q = rng.integers(-127, 128, (5, 4)).astype(np.int8)
    fc_b = np.linspace(-1, 1, 5).astype(np.float32)
    side = 8 + pads[0] + pads[1]
    tt, op, opts = tflite.TensorType, tflite.BuiltinOperator, tflite.BuiltinOptions

    def conv(b):
        conv_opts.Start(b)
        conv_opts.AddPadding(b, tflite.Padding.VALID)
        conv_opts.AddStrideW(b, 2)
        conv_opts.AddStrideH(b, 2)
        conv_opts.AddFusedActivationFunction(b, tflite.ActivationFunctionType.RELU6)
        return conv_opts.End(b)

    tensors = [
        dict(name="input", shape=[1, 8, 8, 3], type=tt.FLOAT32),
        dict(name="paddings", shape=[4, 2], type=tt.INT32,
             data=np.array([[0, 0], list(pads), list(pads), [0, 0]], np.int32).tobytes()),
        dict(name="padded", shape=[1, side, side, 3], type=tt.FLOAT32),
        dict(name="conv/w16", shape=[4, 3, 3, 3], type=tt.FLOAT16, data=w16.tobytes()),
        dict(name="conv/w", shape=[4, 3, 3, 3], type=tt.FLOAT32),
        dict(name="conv/b", shape=[4], type=tt.FLOAT32, data=bias.tobytes()),
        dict(name="conv/out", shape=[1, 4, 4, 4], type=tt.FLOAT32),
        dict(name="axes", shape=[2], type=tt.INT32, data=np.array([1, 2], np.int32).tobytes()),
        dict(name="pooled", shape=[1, 4], type=tt.FLOAT32),
        dict(name="fc/w", shape=[5, 4], type=tt.INT8, data=fc_q.tobytes(), scale=[0.1], zp=[0]),
        dict(name="fc/b", shape=[5], type=tt.FLOAT32, data=fc_b.tobytes()),
        dict(name="logits", shape=[1, 5], type=tt.FLOAT32),
    ]
    ops = [
        (op.DEQUANTIZE, opts.NONE, None, [3], [4]),
        (op.PAD, opts.NONE, None, [0, 1], [2]),
        (op.CONV_2D, opts.Conv2DOptions, conv, [2, 4, 5], [6]),
        (op.MEAN, opts.NONE, None, [6, 7], [8]),
        (op.FULLY_CONNECTED, opts.NONE, None, [8, 9, 10], [11]),
    ]
    _write_tflite(path, tensors, ops)
    return w16, bias, fc_q, fc_b


def test_float_model_with_pad_valid_float16_and_fully_connected(tmp_path):
    path = tmp_path / "tiny.tflite"
    w16, bias, fc_q, fc_b = _tiny_float_model(path, (0, 1))  # what TF SAME pads for 8 px, k3, s2
    ck = read_tflite(path)
    assert (ck.input_dtype, ck.input_scale, ck.ops) == (
        "float32", None, ("DEQUANTIZE", "PAD", "CONV_2D", "MEAN", "FULLY_CONNECTED"))
    conv, fc = ck.layers
    assert (conv.op, conv.padding, conv.stride, conv.activation, conv.dtype) == ("CONV_2D", "same", 2, "relu", "float16")
    np.testing.assert_array_equal(conv.weight, w16.astype(np.float32).transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(conv.bias, bias)
    assert (fc.op, fc.weight.shape, fc.activation, fc.dtype) == ("FULLY_CONNECTED", (5, 4), "none", "int8")
    np.testing.assert_allclose(fc.weight, fc_q.astype(np.float32) * 0.1, rtol=1e-6)
    np.testing.assert_array_equal(fc.bias, fc_b)

    symmetric = tmp_path / "sym.tflite"
    _tiny_float_model(symmetric, (1, 1))
    assert read_tflite(symmetric).layers[0].padding == "explicit [1, 1, 1, 1]"


def test_float_input_checkpoint_gets_minus_one_to_one_preprocessing(tmp_path):
    path = tmp_path / "tiny.tflite"
    _tiny_float_model(path, (0, 1))
    mean, std = _preprocessing(read_tflite(path))
    assert mean == (127.5,) * 3 and std == (127.5,) * 3
    with pytest.raises(BadInput, match=r"tiny.tflite layer 0 .* expects stem.conv \[32, 3, 3, 3\]"):
        load_checkpoint_weights(decode("v2", 1.0, 224, 1001), str(path))


# ------------------------------------------------------------------------------------------------
# Metadata and the pretrained registry


def test_pretrained_v2_metadata():
    model = build_model("v2", 1.0, 224, weights="pretrained")
    meta = read_meta(model)
    assert (meta.classes, meta.label_offset, meta.color_order, meta.padding) == (1001, 1, "RGB", "same")
    assert meta.mean == (128.0, 128.0, 128.0) and meta.std == (128.0, 128.0, 128.0)
    assert (meta.resize, meta.crop_fraction, meta.interpolation) == ("short-side", 0.875, "bilinear")
    assert meta.weights == "pretrained:coral/mobilenet_v2_1.0_224_quant.tflite"
    assert meta.extra["checkpoint_sha256"] == hashlib.sha256(V2.read_bytes()).hexdigest()[:16]
    assert meta.extra["checkpoint_resolution"] == "224" and meta.extra["checkpoint_dtype"] == "uint8"


def test_tflite_path_metadata_from_input_quantization():
    _, meta = load_checkpoint_weights(decode("v2", 1.0, 224, 1001), str(TF2))
    # input scale 1/127.5, zero point 127: pixel p -> (p - 127) / 127.5
    assert meta.mean == (127.0, 127.0, 127.0) and meta.std == (127.5, 127.5, 127.5)
    assert meta.weights == "tflite:tf2_mobilenet_v2_1.0_224_ptq.tflite"
    assert meta.extra["checkpoint_dtype"] == "int8" and meta.label_offset == 1
    _, meta3 = load_checkpoint_weights(decode("v3-small", 1.0, 224, 1001), "pretrained")
    assert meta3.mean == (128.0,) * 3 and meta3.std == (127.0,) * 3


def test_v1_1_0_is_extractor_plus_head_and_resolution_agnostic(tmp_path):
    cfg224 = decode("v1", 1.0, 224, 1001)
    params, meta = load_checkpoint_weights(cfg224, "pretrained")
    assert "+" in meta.weights and len(meta.extra["checkpoint_sha256"].split(",")) == 2
    assert list(params) == [p.name for p in cfg224.param_layers()] and len(params) == 28
    head = read_tflite(V1_HEAD).layers
    assert len(head) == 1
    np.testing.assert_array_equal(params["head.fc"][0], head[0].weight[:, :, 0, 0])

    params160, _ = load_checkpoint_weights(decode("v1", 1.0, 160, 1001), "pretrained")
    for name, (w, b) in params.items():
        np.testing.assert_array_equal(params160[name][0], w)
        np.testing.assert_array_equal(params160[name][1], b)
    path = tmp_path / "v1-160.onnx"
    save_model(build_model("v1", 1.0, 160, weights="pretrained"), path)
    out = cpu_session(path).run(None, {"input": np.zeros((2, 3, 160, 160), np.float32)})[0]
    assert out.shape == (2, 1001) and np.isfinite(out).all()


def test_every_registry_entry_imports():
    for ck in registry.PRETRAINED:
        params, meta = load_checkpoint_weights(decode(ck.arch, ck.width, ck.trained_resolution, 1001), "pretrained")
        assert meta.weights == "pretrained:" + "+".join(ck.files)
        assert all(w.dtype == np.float32 and np.isfinite(w).all() for w, _ in params.values())
    for extra in registry.EXTRA_FILES:
        assert guess_architecture(list(read_tflite(PRETRAINED / extra).layers)) == ("v2", 1.0)


def test_same_checkpoint_same_bytes():
    a = build_model("v3-small", 1.0, 224, weights="pretrained")
    b = build_model("v3-small", 1.0, 224, weights="pretrained")
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
    by_path = build_model("v3-small", 1.0, 224, weights=str(V3S))
    assert [t.SerializeToString() for t in by_path.graph.initializer] == [
        t.SerializeToString() for t in a.graph.initializer
    ]
    assert read_meta(by_path).weights == "tflite:v3-small_224_1.0_uint8.tflite"


# ------------------------------------------------------------------------------------------------
# Mismatches are errors that name the layer on both sides


def test_no_pretrained_checkpoint_names_the_combinations():
    with pytest.raises(BadInput) as exc:
        build_model("v2", 0.5, 224, weights="pretrained")
    assert "v2 width 0.5" in exc.value.message
    assert "v1 width 0.25, 0.5, 0.75, 1.0" in exc.value.hint and "v3-small width 1.0" in exc.value.hint


def test_width_mismatch_names_first_layer_and_guesses_checkpoint():
    with pytest.raises(BadInput) as exc:
        build_model("v2", 0.75, 224, weights=str(V2))
    msg = exc.value.message
    assert "mobilenet_v2_1.0_224_quant.tflite layer 0" in msg and "MobilenetV2/Conv/Conv2D_Fold" in msg
    assert "[32, 3, 3, 3]" in msg and "v2 width 0.75 expects stem.conv [24, 3, 3, 3]" in msg
    assert "v2 width 1.0" in exc.value.hint

    with pytest.raises(BadInput) as exc:
        build_model("v1", 0.5, 160, weights=str(V1_025))
    assert "v1 width 0.25" in exc.value.hint
    with pytest.raises(BadInput) as exc:
        build_model("v3-small", 1.0, 224, weights=str(V2))
    assert "v3-small width 1.0 expects" in exc.value.message and "v2 width 1.0" in exc.value.hint


def test_layer_count_mismatch_both_ways():
    cfg = decode("v1", 1.0, 224, 1001)
    with pytest.raises(BadInput) as exc:
        build_model("v1", 1.0, 224, weights=str(V1_EXTRACTOR))
    assert "27 weight layers" in exc.value.message and "expects 28" in exc.value.message
    assert "head.fc" in exc.value.message
    layers = list(read_tflite(V1_EXTRACTOR).layers) + list(read_tflite(V1_HEAD).layers) * 2
    with pytest.raises(BadInput, match="left over"):
        map_layers(cfg, layers, "x.tflite")


def test_class_count_mismatch_suggests_classes_flag():
    with pytest.raises(BadInput) as exc:
        build_model("v2", 1.0, 224, classes=1000, weights="pretrained")
    assert "head.fc [1000, 1280]" in exc.value.message and "--classes 1001" in exc.value.hint


def test_stride_padding_and_activation_differences_are_errors():
    cfg = decode("v2", 1.0, 224, 1001)
    layers = list(read_tflite(V2).layers)
    assert map_layers(cfg, layers, "ok.tflite").keys() == {p.name for p in cfg.param_layers()}
    cases = [
        (0, {"stride": 1}, "stride 1 but v2 width 1.0 expects stem.conv with stride 2"),
        (1, {"padding": "valid"}, "valid padding"),
        (1, {"padding": "explicit [1, 1, 1, 1]"}, "explicit [1, 1, 1, 1] padding"),
        (2, {"activation": "relu"}, "followed by 'relu' but v2 width 1.0 has 'none' after blocks.0.project"),
        (3, {"activation": "hswish"}, "followed by 'hswish'"),
    ]
    for index, change, needle in cases:
        broken = list(layers)
        broken[index] = replace(layers[index], **change)
        with pytest.raises(BadInput) as exc:
            map_layers(cfg, broken, "x.tflite")
        assert needle in exc.value.message, exc.value.message
    # VALID on a 1x1 stride-1 conv is the same computation as SAME: accepted
    fine = list(layers)
    fine[2] = replace(layers[2], padding="valid")
    map_layers(cfg, fine, "x.tflite")


def test_files_that_are_not_checkpoints(tmp_path, tiny_model):
    text = tmp_path / "notes.tflite"
    text.write_text("hello, not a model\n")
    with pytest.raises(BadInput, match="not a TFLite model"):
        read_tflite(text)
    with pytest.raises(BadInput, match="not a TFLite model"):
        read_tflite(tiny_model)  # an ONNX file
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(V2.read_bytes()[:50_000])
    with pytest.raises(BadInput, match="cut.tflite"):
        read_tflite(cut)
    with pytest.raises(BadInput, match="no such file"):
        build_model("v2", weights=str(tmp_path / "missing.tflite"))
    with pytest.raises(BadInput, match="folder"):
        build_model("v2", weights=str(tmp_path))


def test_missing_shipped_checkpoint_is_environment_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MNETCTL_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(EnvironmentMissing, match="missing"):
        build_model("v2", weights="pretrained")


def test_cli_build_with_checkpoints(tmp_path, capsys):
    out = tmp_path / "tf2.onnx"
    assert main(["build", "v2", "--weights", str(TF2), "-o", str(out), "-q"]) == 0
    assert out.is_file()
    assert main(["build", "v2", "--width", "0.75", "--weights", "pretrained", "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "no pretrained checkpoint ships for v2 width 0.75" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()
    assert main(["build", "v2", "--width", "0.75", "--weights", str(V2), "-o", str(tmp_path / "y.onnx")]) == 2
    assert "expects stem.conv [24, 3, 3, 3]" in capsys.readouterr().err
    assert not (tmp_path / "y.onnx").exists()


# ------------------------------------------------------------------------------------------------
# Accuracy on the 200-image val sample, through the product's own eval path.
# Reference: the same checkpoint run in LiteRT with the same preprocessing (top-1, %).

# V3-Small is not in this list: its float import scores 72.5% against LiteRT's 75.5% (its uint8
# checkpoint was trained with quantized activations, and its float evaluation is not what it was
# trained for; LiteRT's own reference kernels give 73.0%). Its acceptance is checked on the import
# that keeps the checkpoint's quantization: test_checkpoint_int8.py::test_top1_within_litert_reference.
# The float figure is tracked in docs/pretrained.md (scripts/pretrained_accuracy.py) and its per-layer
# agreement with LiteRT in test_litert_agreement.py.

ACCURACY_CASES = [
    pytest.param("v1", 0.25, 128, "pretrained", 49.5, id="v1-0.25-128"),
    pytest.param("v1", 0.5, 160, "pretrained", 69.5, id="v1-0.5-160"),
    pytest.param("v1", 0.75, 192, "pretrained", 77.0, id="v1-0.75-192"),
    pytest.param("v1", 1.0, 224, "pretrained", 87.5, id="v1-1.0-224"),
    pytest.param("v2", 1.0, 224, "pretrained", 84.5, id="v2-1.0-224-quant"),
    pytest.param("v2", 1.0, 224, str(TF2), 85.5, id="v2-1.0-224-tf2-ptq"),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,width,res,weights,reference", ACCURACY_CASES)
def test_imported_top1_matches_litert_reference(tmp_path, arch, width, res, weights, reference):
    from mnetctl.evaluate import evaluate

    path = tmp_path / f"{arch}-{width}-{res}.onnx"
    save_model(build_model(arch, width, res, weights=weights), path)
    result = evaluate(path, VAL, batch=50)
    assert result.n == 200 and not result.failed
    top1 = 100.0 * result.correct1 / result.n
    assert abs(top1 - reference) <= 1.5 + 1e-9, f"top-1 {top1:.1f}% vs LiteRT {reference}%"
    assert result.top5 > result.top1
