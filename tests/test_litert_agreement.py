"""Our imported ONNX models against the original .tflite files run in LiteRT, on the same images.

Accuracy alone can hide wiring errors (a transposed kernel, a shifted padding, a misplaced activation
can cost little top-1 on 200 images), so here we compare predictions image by image and, layer by
layer, the tensors our graph computes from LiteRT's own intermediate tensors.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx.utils import Extractor

try:
    import ai_edge_litert.interpreter as litert
except ImportError as exc:  # not installed, or installed but unusable here
    pytest.skip(
        f"ai-edge-litert cannot be imported ({exc}); install the test extra: pip install 'mnetctl[test]'",
        allow_module_level=True,
    )

from mnetctl.builder import build_model, save_model  # noqa: E402
from mnetctl.data import Preprocessor, find_samples, load_image  # noqa: E402
from mnetctl.evaluate import evaluate  # noqa: E402
from mnetctl.meta import read_meta  # noqa: E402
from mnetctl.runtime import cpu_session  # noqa: E402
from mnetctl.specs import decode  # noqa: E402
from mnetctl.weights.tflite_reader import read_tflite  # noqa: E402

from .conftest import PRETRAINED, VAL  # noqa: E402

CORAL = PRETRAINED / "coral"
V1_FILES = [CORAL / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite", CORAL / "mobilenet_quant_v1_224_head_layers.tflite"]
V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
TF2 = CORAL / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
V3S = PRETRAINED / "atu" / "v3-small_224_1.0_uint8.tflite"


@pytest.fixture(scope="module")
def samples():
    return find_samples(VAL)


@pytest.fixture(scope="module")
def images(samples):
    return [load_image(s.path) for s in samples]


def _interpreter(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = litert.Interpreter(model_path=str(path), **kwargs)
    it.allocate_tensors()
    return it


def _quantize_input(real: np.ndarray, detail: dict) -> np.ndarray:
    """The checkpoint's input tensor for real-valued pixels (identity on the uint8 crop for our metadata)."""
    if detail["dtype"] == np.float32:
        return real.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(real / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def litert_top1_sets(files, crops, meta, **kwargs) -> list[set[int]]:
    """Per image, the classes (ImageNet index, background removed) tied for LiteRT's highest score.

    The quantized softmax output has steps of 1/256, so near-equal classes can tie; any of them is
    LiteRT's top-1.
    """
    chain = [_interpreter(f, **kwargs) for f in files]
    mean = np.asarray(meta.mean, np.float32)
    std = np.asarray(meta.std, np.float32)
    tops = []
    for crop in crops:
        first = chain[0].get_input_details()[0]
        x = _quantize_input((crop[None].astype(np.float32) - mean) / std, first)
        for it in chain:  # feature extractor -> classifier head: the tensor passes as it is
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            x = it.get_tensor(it.get_output_details()[0]["index"])
        scores = x.reshape(-1)
        tops.append({int(i) - meta.label_offset for i in np.flatnonzero(scores == scores.max())})
    return tops


@pytest.mark.parametrize(
    "arch,weights,files,count",
    [
        pytest.param("v1", "pretrained", V1_FILES, 100, id="v1-1.0-224-extractor+head"),
        pytest.param("v2", "pretrained", [V2], 100, id="v2-1.0-224-quant-uint8"),
        pytest.param("v2", str(TF2), [TF2], 200, id="v2-1.0-224-tf2-ptq-int8"),
    ],
)
def test_top1_agrees_with_litert(tmp_path, samples, images, arch, weights, files, count):
    model = build_model(arch, 1.0, 224, weights=weights)
    path = tmp_path / "imported.onnx"
    save_model(model, path)
    meta = read_meta(model)
    ours = evaluate(path, samples[:count], batch=50).predictions
    pre = Preprocessor.from_meta(meta)
    theirs = litert_top1_sets(files, [pre.resize_crop(im) for im in images[:count]], meta)
    agree = np.mean([o in t for o, t in zip(ours, theirs)])
    assert len(ours) == count
    assert agree >= 0.95, f"top-1 agreement with LiteRT {agree:.1%} on {count} images"


# ------------------------------------------------------------------------------------------------
# Layer by layer: feed a piece of our graph LiteRT's dequantized input tensors, compare with LiteRT's
# output tensor in units of its quantization step (after clamping ours to its representable range).


def _segments(model: onnx.ModelProto, ck, cfg):
    """(our input names, our output name, TFLite input tensors, TFLite output tensor, tolerance in steps)."""
    import tflite
    from tflite.utils import BUILTIN_OPCODE2NAME

    fb = tflite.Model.GetRootAsModel(ck.path.read_bytes(), 0)
    g = fb.Subgraphs(0)

    def op(k):
        o = g.Operators(k)
        code = fb.OperatorCodes(o.OpcodeIndex())
        return BUILTIN_OPCODE2NAME[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())], o

    tfl_users: dict[int, list[int]] = {}
    for k in range(g.OperatorsLength()):
        for t in op(k)[1].InputsAsNumpy().tolist():
            tfl_users.setdefault(t, []).append(k)
    producers = {n.output[0]: n for n in model.graph.node}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    match: dict[str, int] = {}
    segs = []
    for target, layer in zip(cfg.param_layers(), ck.layers):
        _, o = op(layer.op_index)
        t_in, t_out = int(o.Inputs(0)), int(o.Outputs(0))
        node = producers["logits" if target.name == "head.fc" else target.name]
        ours_in, ours_out = node.input[0], node.output[0]
        act = [u for u in users.get(ours_out, []) if u.op_type in ("Relu", "Clip", "HardSwish")]
        t_users = [op(k) for k in tfl_users.get(t_out, [])]
        if act and len(t_users) == 1 and t_users[0][0] == "HARD_SWISH":  # activation as its own op
            t_act = int(t_users[0][1].Outputs(0))
            segs.append(([ours_in], ours_out, [t_in], t_out, 1.0))
            segs.append(([ours_out], act[0].output[0], [t_out], t_act, 1.0))
            match[ours_out] = t_out
            match[act[0].output[0]] = t_act
        else:  # fused activation (or none): the TFLite op's output is our activation's output
            final = act[0].output[0] if act else ours_out
            segs.append(([ours_in], final, [t_in], t_out, 1.0))
            match[final] = t_out
        match.setdefault(ours_in, t_in)
    # element-wise joins: squeeze-excite gate and scale, residual adds, pools
    tfl_producer = {int(op(k)[1].Outputs(0)): k for k in range(g.OperatorsLength())}
    for n in model.graph.node:
        if n.op_type == "Mul" and n.name.endswith(".se.scale") and n.input[0] in match and n.output[0] in match:
            # TFLite: scale = MUL(x, gate); gate = MUL(ADD(se.expand, 3) clamped to [0, 6], 1/6)
            _, mul = op(tfl_producer[match[n.output[0]]])
            t_gate = [int(t) for t in mul.InputsAsNumpy() if int(t) != match[n.input[0]]][0]
            gate = producers[n.input[1]]
            # the gate is rounded twice in TFLite (after +3 and after /6): up to ~1 step of its output
            segs.append(([gate.input[0]], gate.output[0], [match[gate.input[0]]], t_gate, 1.5))
            match[gate.output[0]] = t_gate
            segs.append((list(n.input), n.output[0], [match[i] for i in n.input], match[n.output[0]], 1.0))
        elif n.op_type in ("Add", "GlobalAveragePool"):
            if all(i in match for i in n.input) and n.output[0] in match:
                segs.append((list(n.input), n.output[0], [match[i] for i in n.input], match[n.output[0]], 1.0))
    return segs


def _nchw(x: np.ndarray, want_rank: int) -> np.ndarray:
    if x.ndim == 4 and want_rank == 4:
        return x.transpose(0, 3, 1, 2)
    return x.reshape(x.shape[0], -1)


@pytest.mark.parametrize(
    "arch,weights,tfl",
    [
        pytest.param("v3-small", "pretrained", V3S, id="v3-small-uint8"),
        pytest.param("v2", str(TF2), TF2, id="v2-tf2-int8-per-channel"),
        pytest.param("v2", "pretrained", V2, id="v2-quant-uint8"),
    ],
)
def test_every_layer_matches_litert_given_litert_inputs(samples, images, arch, weights, tfl):
    model = build_model(arch, 1.0, 224, weights=weights)
    meta = read_meta(model)
    cfg = decode(arch, 1.0, 224, 1001)
    ck = read_tflite(tfl)
    segs = _segments(model, ck, cfg)
    kinds = {seg[1].rsplit(".", 1)[-1] for seg in segs}
    assert len(segs) >= len(ck.layers) and {"add"} <= kinds
    if arch == "v3-small":
        assert {"scale", "gate", "pool"} <= kinds and sum(s[1].endswith(".se.scale") for s in segs) == 9

    it = _interpreter(tfl, experimental_preserve_all_tensors=True)
    details = {d["index"]: d for d in it.get_tensor_details()}
    crop = Preprocessor.from_meta(meta).resize_crop(images[7])
    it.set_tensor(it.get_input_details()[0]["index"], crop[None])
    it.invoke()

    def real(t):
        scale, zp = details[t]["quantization"]
        return (it.get_tensor(t).astype(np.float64) - zp) * scale

    ext = Extractor(onnx.shape_inference.infer_shapes(model))
    worst = []
    for ours_in, ours_out, t_in, t_out, tol in segs:
        sub = ext.extract_model(ours_in, [ours_out])
        sess = cpu_session(sub.SerializeToString())
        ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in sub.graph.input}
        feed = {name: _nchw(real(t), ranks[name]).astype(np.float32) for name, t in zip(ours_in, t_in)}
        got = sess.run(None, feed)[0].astype(np.float64)
        ref = real(t_out)
        got = got.transpose(0, 2, 3, 1) if got.ndim == 4 else got
        scale, zp = details[t_out]["quantization"]
        info = np.iinfo(details[t_out]["dtype"])
        got = np.clip(got.reshape(ref.shape), (info.min - zp) * scale, (info.max - zp) * scale)
        err = np.abs(got - ref).max() / scale
        worst.append((err, ours_out))
        assert err <= tol, f"{ours_out}: off by {err:.2f} quantization steps from LiteRT ({tfl.name})"
    assert max(worst)[0] > 0.05  # the comparison saw real rounding, not an empty tensor


# ------------------------------------------------------------------------------------------------
# V3-Small: its uint8 checkpoint's predictions hinge on integer rounding. LiteRT's own optimized and
# reference kernels agree on only ~87% of the val images (75.5% vs 73.0% top-1), so a >= 95% agreement
# with either is not a meaningful bar for it; its wiring is checked layer by layer above instead.


def test_v3_small_top1_within_litert_kernel_spread(tmp_path, samples, images):
    """LiteRT's optimized and reference kernels disagree on this checkpoint (different rounding of the
    same integer ops); our float import must score within 1.5 points of one of them, and at most 1.5
    points below the lower one."""
    model = build_model("v3-small", 1.0, 224, weights="pretrained")
    path = tmp_path / "v3s.onnx"
    save_model(model, path)
    meta = read_meta(model)
    ours = evaluate(path, samples, batch=50)
    crops = [Preprocessor.from_meta(meta).resize_crop(im) for im in images]
    labels = [s.label for s in samples]
    figures = {}
    for kernels in ("AUTO", "BUILTIN_REF"):
        resolver = getattr(litert.OpResolverType, kernels)
        tops = litert_top1_sets([V3S], crops, meta, experimental_op_resolver_type=resolver)
        figures[kernels] = 100.0 * np.mean([min(t) == y for t, y in zip(tops, labels)])
    top1 = 100.0 * ours.top1
    low, high = min(figures.values()), max(figures.values())
    assert low - 1.5 <= top1 <= high + 1.5, f"ours {top1:.1f}% vs LiteRT kernels {figures}"
