"""`build --weights pretrained --precision int8`: a QDQ model carrying the checkpoint's own quantization.

Checked against the .tflite files themselves (integers, scales, zero points read independently with
the `tflite` package), against ONNX Runtime (which integer kernels the optimized graph runs), on the
200-image val sample (top-1 within 1.5 points of the LiteRT references) and image by image against
LiteRT running the same checkpoints (needs ai-edge-litert; skipped with the reason otherwise).
"""

from __future__ import annotations

import collections
import json
import dataclasses
import warnings

import numpy as np
import onnx
import pytest
import tflite
from onnx import numpy_helper

from mnetctl.builder import build_model, save_model
from mnetctl.cli import main
from mnetctl.errors import BadInput
from mnetctl.evaluate import evaluate
from mnetctl.meta import read_meta
from mnetctl.runtime import cpu_session
from mnetctl.specs import decode
from mnetctl.weights.tflite_import import load_checkpoint
from mnetctl.weights.tflite_qdq import activation_quantization, quantized_weights

from .conftest import PRETRAINED, VAL, optimized_ops

CORAL = PRETRAINED / "coral"
V1_025 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
TF2 = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
V3S = PRETRAINED / "atu" / "v3-small_224_1.0_uint8.tflite"

# (id, arch, width, resolution, --weights, LiteRT top-1 % on the val sample from the acceptance, files)
CASES = {
    "v3-small": ("v3-small", 1.0, 224, "pretrained", 75.5, [V3S]),
    "v2": ("v2", 1.0, 224, "pretrained", 84.5, [V2]),
    "v1-0.25": ("v1", 0.25, 128, "pretrained", 49.5, [V1_025]),
}
INTEGER_KERNELS = ("QLinearConv", "QGemm", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """id -> (int8 path, fp32 path), built once."""
    root = tmp_path_factory.mktemp("ckpt-int8")
    out = {}
    for key, (arch, width, res, weights, _, _) in CASES.items():
        q = save_model(build_model(arch, width, res, weights=weights, precision="int8", int8_layout="checkpoint"), root / f"{key}.int8.onnx")
        f = save_model(build_model(arch, width, res, weights=weights), root / f"{key}.fp32.onnx")
        out[key] = (q, f)
    return out


@pytest.fixture(scope="module")
def val_results(built):
    return {key: evaluate(q, VAL, batch=50) for key, (q, _) in built.items()}


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _tflite(path):
    """(tensors, ops) read straight from the FlatBuffer: tensor i -> (values or None, scales, zero points,
    quantized dim, type); op k -> (inputs, outputs)."""
    buf = path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        q = t.Quantization()
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        values = None
        if not isinstance(data, int) and t.Type() in (3, 9, 2):
            values = np.frombuffer(data.tobytes(), {3: np.uint8, 9: np.int8, 2: np.int32}[t.Type()]).reshape(t.ShapeAsNumpy())
        scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
        zps = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
        tensors.append((values, scales, zps, q.QuantizedDimension() if q is not None else 0, t.Type()))
    ops = [(g.Operators(k).InputsAsNumpy().tolist(), g.Operators(k).OutputsAsNumpy().tolist())
           for k in range(g.OperatorsLength())]
    return tensors, ops


# ------------------------------------------------------------------------------------------------
# The model carries the checkpoint's numbers


def test_v1_weights_and_activations_are_the_checkpoints_own():
    model = build_model("v1", 0.25, 128, weights="pretrained", precision="int8", int8_layout="checkpoint")
    inits = _inits(model)
    tensors, ops = _tflite(V1_025)  # op 0 stem conv, 1 depthwise, ..., 27 pool, 28 classifier conv
    (x_in, w_in, b_in), (stem_out,) = ops[0]

    # stem conv: the stored uint8 bytes, OHWI -> OIHW, with the file's scale and zero point
    raw, scale, zp, _, _ = tensors[w_in]
    np.testing.assert_array_equal(inits["stem.conv.weight.quantized"], raw.transpose(0, 3, 1, 2))
    assert inits["stem.conv.weight.quantized"].dtype == np.uint8
    assert inits["stem.conv.weight.scale"] == np.float32(scale[0]) and inits["stem.conv.weight.zero_point"] == zp[0]
    # depthwise [1, H, W, C] -> [C, 1, H, W]
    raw_dw = tensors[ops[1][0][1]][0]
    np.testing.assert_array_equal(inits["blocks.0.dw.weight.quantized"], raw_dw[0].transpose(2, 0, 1)[:, None])
    # int32 bias with scale = input scale x weight scale
    bias_raw, bias_scale, _, _, _ = tensors[b_in]
    np.testing.assert_array_equal(inits["stem.conv.bias.quantized"], bias_raw)
    assert inits["stem.conv.bias.quantized"].dtype == np.int32
    assert inits["stem.conv.bias.scale"] == pytest.approx(float(bias_scale[0]), rel=1e-6)
    assert float(bias_scale[0]) == pytest.approx(float(tensors[x_in][1][0] * scale[0]), rel=1e-6)
    # classifier: the 1x1 conv [1001, 1, 1, 256] becomes the Gemm's [1001, 256]
    np.testing.assert_array_equal(inits["head.fc.weight.quantized"], tensors[ops[28][0][1]][0][:, 0, 0, :])

    # activations: the input quantization (1/128, 128); the stem output (ReLU6 fused in the file)
    # quantized the same on our Conv output and on our Clip output
    assert (float(inits["input.scale"]), int(inits["input.zero_point"])) == (1 / 128, 128)
    for name in ("stem.conv", "stem.act"):
        assert inits[f"{name}.scale"] == np.float32(tensors[stem_out][1][0])
        assert inits[f"{name}.zero_point"] == tensors[stem_out][2][0] == 0
    logits = tensors[ops[28][1][0]]
    assert inits["logits.scale"] == np.float32(logits[1][0]) and inits["logits.zero_point"] == logits[2][0]

    # no float weight is left; every activation between layers is quantized
    assert not [k for k, v in inits.items() if k.endswith((".weight", ".bias"))]
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["Conv"] == 27 and ops["Gemm"] == 1 and ops["DequantizeLinear"] == ops["QuantizeLinear"] + 2 * 28
    meta = read_meta(model)
    assert meta.precision == "int8" and meta.weights == "pretrained:coral/mobilenet_v1_0.25_128_quant.tflite"
    assert meta.extra["quant.source"] == "checkpoint" and meta.extra["quant.weights"] == "uint8"
    assert meta.extra["quant.activations"] == "uint8" and meta.extra["quant.per_channel"] == "false"
    # same command, same bytes
    again = build_model("v1", 0.25, 128, weights="pretrained", precision="int8", int8_layout="checkpoint")
    assert again.SerializeToString(deterministic=True) == model.SerializeToString(deterministic=True)


def test_tf2_int8_per_channel_weights_and_requantized_input():
    model = build_model("v2", 1.0, 224, weights=str(TF2), precision="int8", int8_layout="checkpoint")
    inits = _inits(model)
    tensors, ops = _tflite(TF2)  # op 0 QUANTIZE (uint8 -> int8 input), 1 stem conv, 2 depthwise
    raw, scales, zps, qdim, _ = tensors[ops[2][0][1]]
    assert qdim == 3 and not zps.any()
    np.testing.assert_array_equal(inits["blocks.0.dw.weight.quantized"], raw[0].transpose(2, 0, 1)[:, None])
    np.testing.assert_array_equal(inits["blocks.0.dw.weight.scale"], scales.astype(np.float32))
    dq = next(n for n in model.graph.node if n.name == "blocks.0.dw.weight.dequantize")
    assert [(a.name, a.i) for a in dq.attribute] == [("axis", 0)]
    assert inits["head.fc.weight.scale"].shape == (1001,)
    # the file quantizes its uint8 input to int8 (zero point 127 -> -1): the conv reads the int8 one
    assert inits["input.zero_point"].dtype == np.int8 and int(inits["input.zero_point"]) == -1
    meta = read_meta(model)
    assert (meta.extra["quant.weights"], meta.extra["quant.activations"], meta.extra["quant.per_channel"]) == ("int8", "int8", "true")
    sess = cpu_session(model.SerializeToString())
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    logits = sess.run(None, {"input": x})[0]
    steps = logits / float(inits["logits.scale"]) + int(inits["logits.zero_point"])
    assert logits.shape == (2, 1001) and np.allclose(steps, np.round(steps), atol=1e-3)  # on the logits' int8 grid


def test_opset13_and_uint8_input_variants_compute_the_same(tmp_path):
    """Below opset 14 hard-swish is x * HardSigmoid(x); with uint8 input the normalisation is in the graph."""
    from mnetctl.data import Preprocessor, find_samples, load_image

    base = build_model("v3-small", 1.0, 224, weights="pretrained", precision="int8", int8_layout="checkpoint")
    old = build_model("v3-small", 1.0, 224, weights="pretrained", precision="int8", int8_layout="checkpoint", opset=13)
    nhwc = build_model("v3-small", 1.0, 224, weights="pretrained", precision="int8", int8_layout="checkpoint", input_format="uint8-nhwc")
    assert "HardSwish" not in {n.op_type for n in old.graph.node}
    meta = read_meta(base)
    images = [load_image(s.path) for s in find_samples(VAL, 16)]
    x = np.stack([Preprocessor.from_meta(meta)(im) for im in images])
    x8 = np.stack([Preprocessor.from_meta(read_meta(nhwc))(im) for im in images])
    ref = cpu_session(base.SerializeToString()).run(None, {"input": x})[0]
    got_old = cpu_session(old.SerializeToString()).run(None, {"input": x})[0]
    got_nhwc = cpu_session(nhwc.SerializeToString()).run(None, {"input": x8})[0]
    scale = float(_inits(base)["logits.scale"])
    for got in (got_old, got_nhwc):
        assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9
        assert np.median(np.abs(got - ref)) <= scale  # at most a quantization step for most logits


def test_cli_build_int8_then_eval(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.chdir(tmp_path)
    args = ["build", "v1", "--width", "0.25", "--resolution", "128", "--weights", "pretrained"]
    assert main(args + ["--precision", "int8"]) == 0
    assert "int8 (checkpoint quantization, cpu layout)" in " ".join(capsys.readouterr().out.split())  # rich wraps lines
    q = tmp_path / "models" / "v1-0.25-128.int8.onnx"  # beside the float build's default name
    assert q.is_file() and not (tmp_path / "models" / "v1-0.25-128.onnx").exists()
    assert read_meta(onnx.load(str(q))).precision == "int8"
    assert main(["eval", str(q), "--data", str(VAL), "--limit", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 20 and 0.0 < result["top1"] <= result["top5"]


# ------------------------------------------------------------------------------------------------
# Errors


def test_int8_needs_an_integer_checkpoint(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    assert main(["build", "v2", "--precision", "int8", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "random weights have none" in err and "mnetctl quantize" in err and not out.exists()
    assert main(["build", "v2", "--weights", "pretrained", "--precision", "int16", "-o", str(out)]) == 2
    assert "--precision must be fp32 or int8" in capsys.readouterr().err and not out.exists()
    assert main(["build", "v2", "--weights", "pretrained", "--precision", "int8", "--padding", "symmetric",
                 "-o", str(out)]) == 2
    assert "--padding auto or same" in capsys.readouterr().err and not out.exists()

    cfg = decode("v1", 0.25, 128, 1001)
    ck = load_checkpoint(cfg, "pretrained")
    layers = list(ck.files[0].layers)
    layers[3] = dataclasses.replace(layers[3], quantized=None, dtype="float16")
    broken = dataclasses.replace(ck, files=(dataclasses.replace(ck.files[0], layers=tuple(layers)),))
    with pytest.raises(BadInput, match=r"mobilenet_v1_0.25_128_quant.tflite layer 3 .* stores float16 weights"):
        quantized_weights(broken)


def test_int8_refuses_what_it_cannot_follow():
    cfg = decode("v1", 0.25, 128, 1001)
    ck = load_checkpoint(cfg, "pretrained")
    model = build_model("v1", 0.25, 128, weights="pretrained")
    assert len(activation_quantization(ck, model)) == 2 * 27 + 4  # input, conv+act, pool, flatten, logits
    g = ck.files[0].graph
    pool = next(k for k, op in enumerate(g.ops) if op.name == "AVERAGE_POOL_2D")
    ops = list(g.ops)
    ops[pool] = dataclasses.replace(ops[pool], name="MAX_POOL_2D")
    no_pool = dataclasses.replace(ck, files=(dataclasses.replace(ck.files[0], graph=dataclasses.replace(g, ops=tuple(ops))),))
    with pytest.raises(BadInput, match=r"at our node head.pool \(GlobalAveragePool\): 0 pooling ops read"):
        activation_quantization(no_pool, model)
    stem_out = g.ops[0].outputs[0]
    unquantized = {k: v for k, v in g.quant.items() if k != stem_out}
    float_act = dataclasses.replace(ck, files=(dataclasses.replace(ck.files[0], graph=dataclasses.replace(g, quant=unquantized)),))
    with pytest.raises(BadInput, match=r"no 8-bit per-tensor quantization for its tensor .*Conv2d_0/Relu6' \(our stem.conv\)"):
        activation_quantization(float_act, model)


# ------------------------------------------------------------------------------------------------
# ONNX Runtime runs integer kernels; the file is small; accuracy on the val sample


@pytest.mark.parametrize("key", list(CASES))
def test_onnxruntime_runs_integer_kernels_and_file_is_smaller(built, tmp_path, key):
    q, f = built[key]
    assert f.stat().st_size >= 3.5 * q.stat().st_size, f"{f.stat().st_size} vs {q.stat().st_size} bytes"
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(q)).graph.node)
    ops = optimized_ops(q, tmp_path)
    assert ops["QLinearConv"] == convs and ops["QGemm"] == 1, dict(ops)
    assert not {"Conv", "FusedConv", "Gemm", "MatMul", "NchwcConv"} & set(ops), dict(ops)
    if key != "v1-0.25":
        assert ops["QLinearAdd"] >= 1  # residual adds in integers too


@pytest.mark.parametrize("key", list(CASES))
def test_top1_within_litert_reference(val_results, key):
    """The acceptance figures: V3-Small (whose float import scores 72.5%) reaches its LiteRT 75.5%."""
    result = val_results[key]
    reference = CASES[key][4]
    top1 = 100.0 * result.correct1 / result.n
    assert result.n == 200 and not result.failed
    assert abs(top1 - reference) <= 1.5 + 1e-9, f"{key} int8 top-1 {top1:.1f}% vs LiteRT {reference}%"


def test_litert_agreement_per_image(built, val_results):
    """Same checkpoints run in LiteRT on the same crops: >= 90% of images get LiteRT's top-1 class."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        pytest.skip(f"ai-edge-litert cannot be imported ({exc}); pip install 'mnetctl[test]'")
    from mnetctl.data import Preprocessor, find_samples, load_image

    samples = find_samples(VAL)
    images = [load_image(s.path) for s in samples]
    for key, (q, _) in built.items():
        meta = read_meta(onnx.load(str(q), load_external_data=False))
        pre = Preprocessor.from_meta(meta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            it = Interpreter(model_path=str(CASES[key][5][0]))
        it.allocate_tensors()
        detail, out = it.get_input_details()[0], it.get_output_details()[0]
        tops = []
        for im in images:
            it.set_tensor(detail["index"], pre.resize_crop(im)[None])  # uint8 input = the crop itself
            it.invoke()
            s = it.get_tensor(out["index"]).reshape(-1)
            tops.append({int(i) - meta.label_offset for i in np.flatnonzero(s == s.max())})  # softmax ties
        ours = val_results[key].predictions
        agree = np.mean([p in t for p, t in zip(ours, tops)])
        lite_top1 = 100 * np.mean([min(t) == s.label for t, s in zip(tops, samples)])
        ours_top1 = 100 * val_results[key].top1
        assert agree >= 0.90, f"{key}: top-1 agreement with LiteRT {agree:.1%}"
        assert abs(ours_top1 - lite_top1) <= 1.5 + 1e-9, f"{key}: {ours_top1:.1f}% vs LiteRT {lite_top1:.1f}% measured"


# ------------------------------------------------------------------------------------------------
# The default CPU layout: what ONNX Runtime's CPU EP runs fast, within a point of the float import

CPU_CASES = {  # every shipped quantized ImageNet checkpoint
    "v1-0.25": ("v1", 0.25, 128), "v1-0.5": ("v1", 0.5, 160), "v1-0.75": ("v1", 0.75, 192),
    "v1-1.0": ("v1", 1.0, 224), "v2": ("v2", 1.0, 224), "v3-small": ("v3-small", 1.0, 224),
}


@pytest.mark.parametrize("key", list(CPU_CASES))
def test_cpu_layout_keeps_accuracy_shrinks_and_runs_symmetric_int8(tmp_path, key):
    from mnetctl.quant.settings import default_settings

    arch, width, res = CPU_CASES[key]
    model = build_model(arch, width, res, weights="pretrained", precision="int8")
    q = save_model(model, tmp_path / "cpu.int8.onnx")
    f = save_model(build_model(arch, width, res, weights="pretrained"), tmp_path / "fp32.onnx")
    assert f.stat().st_size >= 3.5 * q.stat().st_size
    meta = read_meta(model)
    assert meta.extra["quant.layout"] == "cpu" and meta.extra["quant.weights"] == "int8"
    floating = set(json.loads(meta.extra["quant.nodes_kept_float"]))
    assert "stem.conv" in floating and ("blocks.5.dw" in floating) == ("blocks.*" in default_settings(arch, width).keep_float)
    inits = _inits(model)
    nodes = {n.name: n for n in model.graph.node}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0].endswith(".weight.quantized"):
            assert inits[node.input[0]].dtype == np.int8, node.name  # symmetric int8: no zero point, or zeros
            assert len(node.input) == 2 or not inits[node.input[2]].any(), node.name
    for name in floating:  # float layers: the checkpoint's values, stored as int8 + scale
        if nodes[name].op_type in ("Conv", "Gemm"):
            assert inits[f"{nodes[name].input[1]}.int8"].dtype == np.int8
    ops = optimized_ops(q, tmp_path)
    assert ops["QLinearConv"] + ops["QGemm"] >= 3 and "Cast" not in ops, dict(ops)
    fp32_result, int8_result = evaluate(f, VAL), evaluate(q, VAL)
    assert 100 * (fp32_result.top1 - int8_result.top1) <= 1.0 + 1e-9, (fp32_result.top1, int8_result.top1)
