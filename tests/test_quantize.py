"""Static int8 quantization and simplification: real checkpoints, real images, real ORT sessions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mnetctl.errors import BadInput, GateFailed
from mnetctl.meta import read_meta_file
from mnetctl.quant.calibrate import calibration_hash
from mnetctl.quant.grid import find_grid
from mnetctl.quant.pipeline import quantize_model
from mnetctl.quant.settings import ARCH_DEFAULTS, WIDTH_DEFAULTS, QuantSettings, default_settings, resolve_settings
from mnetctl.simplify import simplify_model

from .conftest import CALIB, REPO, VAL, optimized_ops

PRETRAINED_CASES = {  # every shipped ImageNet checkpoint
    "v2-1.0-224": ("v2", 1.0, 224),
    "v1-0.25-128": ("v1", 0.25, 128),
    "v1-0.5-160": ("v1", 0.5, 160),
    "v1-0.75-192": ("v1", 0.75, 192),
    "v1-1.0-224": ("v1", 1.0, 224),
    "v3-small-1.0-224": ("v3-small", 1.0, 224),
}


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory) -> Path:
    from mnetctl.builder import build_model, save_model

    folder = tmp_path_factory.mktemp("pretrained")
    for name, (arch, width, res) in PRETRAINED_CASES.items():
        save_model(build_model(arch, width, res, weights="pretrained"), folder / f"{name}.onnx")
    save_model(build_model("v1", 0.25, 128, weights="pretrained", input_format="uint8-nhwc"), folder / "v1-0.25-128-u8.onnx")
    return folder


@pytest.fixture(scope="session")
def quantized(pretrained_dir, tmp_path_factory):
    """Each pretrained model quantized once with the default settings, evaluated on the full val sample."""
    out = tmp_path_factory.mktemp("int8")
    reports = {}
    for name in PRETRAINED_CASES:
        reports[name] = quantize_model(pretrained_dir / f"{name}.onnx", out / f"{name}.int8.onnx", eval_data=VAL)
    return reports


# --------------------------------------------------------------------------------------------
# Acceptance: <= 1 point of top-1 lost, >= 3.5x smaller, on the shipped 200-image val sample


@pytest.mark.parametrize("name", list(PRETRAINED_CASES))
def test_int8_keeps_accuracy_and_shrinks(quantized, name):
    rep = quantized[name]
    assert rep.eval_n == 200
    assert rep.top1_drop is not None and rep.top1_drop <= 1.0, rep.as_dict()
    assert rep.size_ratio >= 3.5, rep.as_dict()
    assert Path(rep.output).stat().st_size == rep.size_after
    assert 0.8 <= rep.agreement <= 1.0
    assert rep.calib_samples == 100 and rep.calib_failed == 0
    assert rep.simplify_max_abs_diff <= 1e-4


@pytest.mark.parametrize("name", list(PRETRAINED_CASES))
def test_metadata_records_settings_and_calibration_hash(quantized, name):
    from mnetctl.data import find_samples

    rep = quantized[name]
    meta = read_meta_file(rep.output)
    assert meta.precision == "int8"
    assert meta.arch == PRETRAINED_CASES[name][0]
    assert meta.extra["quant.calib_sha256"] == calibration_hash(find_samples(CALIB, 100)) == rep.calib_sha256
    assert meta.extra["quant.calib_samples"] == "100"
    settings = json.loads(meta.extra["quant.settings"])
    assert settings == rep.settings == default_settings(meta.arch, meta.width).as_dict()
    assert meta.extra["quant.weights_on_checkpoint_grid"] == str(rep.weights_on_checkpoint_grid)
    assert meta.extra["quant.method"] == settings["method"]
    # the float model's own metadata (preprocessing, weights source) is carried over
    float_meta = read_meta_file(rep.model)
    assert (meta.mean, meta.std, meta.label_offset, meta.weights) == (float_meta.mean, float_meta.std, float_meta.label_offset, float_meta.weights)


def _weight_dequantizers(model_path):
    """(weight name, float weight, dequantized int8 weight, scale, zero point) for every quantized weight."""
    q = onnx.load(model_path)
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    for node in q.graph.node:
        if node.op_type != "DequantizeLinear" or not node.input[0].endswith(".weight.q8"):
            continue
        x, scale = inits[node.input[0]], inits[node.input[1]]
        zp = inits[node.input[2]] if len(node.input) > 2 else np.zeros_like(scale, dtype=x.dtype)  # absent: 0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * x.ndim
        if scale.ndim:
            shape[axis] = -1
        deq = (x.astype(np.float64) - zp.astype(np.float64).reshape(shape)) * scale.astype(np.float64).reshape(shape)
        yield node.input[0][: -len(".q8")], deq, scale, zp, axis


def test_exact_grid_reproduces_checkpoint_weights_bit_for_bit(pretrained_dir, tmp_path):
    """weight_grid=exact: weights from an 8-bit checkpoint go back onto the very same per-tensor grid."""
    rep = quantize_model(pretrained_dir / "v1-0.5-160.onnx", tmp_path / "exact.onnx",
                         {"weight_grid": "exact", "keep_float": [], "float_max_channels": 0})
    float_w = {i.name: numpy_helper.to_array(i) for i in onnx.load(rep.model).graph.initializer}
    checked = 0
    for name, deq, scale, _, _ in _weight_dequantizers(rep.output):
        w = float_w[name]
        assert scale.size == 1
        assert np.max(np.abs(deq - w)) <= 1e-6 * float(np.abs(w).max()), name
        checked += 1
    assert checked == rep.weights_on_checkpoint_grid == 28  # every Conv/Gemm weight of V1


def test_channel_grid_keeps_checkpoint_values_with_zero_points_of_zero(quantized):
    """V2 default: symmetric per-channel scales that are multiples of the checkpoint's grid step."""
    rep = quantized["v2-1.0-224"]
    assert rep.settings["weight_grid"] == "channel"
    float_w = {i.name: numpy_helper.to_array(i) for i in onnx.load(rep.model).graph.initializer}
    channels = exact = 0
    for name, deq, scale, zp, axis in _weight_dequantizers(rep.output):
        w = float_w[name]
        step, _, _ = find_grid(w)
        assert not zp.any()  # ORT's symmetric (fast) kernels
        mult = scale.astype(np.float64) / step
        assert np.allclose(mult, np.round(mult), atol=1e-4) and mult.min() > 0.5, name
        err = np.abs(np.moveaxis(deq - w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
        assert np.all(err <= 0.5 * scale * (1 + 1e-4)), name  # rounding onto the coarser grid only
        assert np.all(err[np.round(mult) == 1] <= 1e-6 * max(1.0, float(np.abs(w).max()))), name
        channels += w.shape[axis]
        exact += int(np.sum(np.round(mult) == 1))
    assert rep.weights_on_checkpoint_grid == sum(1 for _ in _weight_dequantizers(rep.output)) >= 45  # of 53
    assert exact / channels > 0.95  # almost every channel keeps the checkpoint's values exactly


@pytest.mark.parametrize("name", list(PRETRAINED_CASES))
def test_float_layers_keep_int8_storage_and_run_float_kernels(quantized, name, tmp_path):
    """Layers the defaults keep float store int8 weights that ORT folds back at load; the rest runs int8."""
    rep = quantized[name]
    q = onnx.load(rep.output)
    inits = {t.name: t for t in q.graph.initializer}
    nodes = {n.name: n for n in q.graph.node}
    kept_convs = [n for n in rep.nodes_kept_float if nodes[n].op_type in ("Conv", "Gemm")]
    assert kept_convs and "stem.conv" in kept_convs
    for layer in kept_convs:
        weight = nodes[layer].input[1]
        assert weight not in inits, layer  # not a float initializer any more ...
        assert inits[f"{weight}.int8"].data_type == onnx.TensorProto.INT8  # ... but int8 + scale, Cast, Mul
    ops = optimized_ops(rep.output, tmp_path)
    assert "Cast" not in ops  # folded at load: the float layers read constant float weights
    assert ops["QLinearConv"] + ops["QGemm"] > 0
    # no all-zero zero point is stored for Conv weights and biases (ONNX's default is 0)
    conv_inputs = {x for n in q.graph.node if n.op_type == "Conv" for x in n.input[1:]}
    for node in q.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in conv_inputs:
            assert len(node.input) == 2 or numpy_helper.to_array(inits[node.input[2]]).any(), node.name


def test_defaults_are_data():
    """The per-architecture choices are plain settings; width rows change named fields only."""
    for arch in ("v1", "v2", "v3-small", "v3-large"):
        qs = ARCH_DEFAULTS[arch]
        assert qs.weight_grid == "channel" and qs.weights == "int8" and qs.activations == "uint8"
        assert "stem.*" in qs.keep_float and qs.int8_storage
    assert ARCH_DEFAULTS["v3-small"].keep_float == ("stem.*", "blocks.*")  # V3: only the head in int8
    for arch, up_to, changes in WIDTH_DEFAULTS:
        assert set(changes) <= set(QuantSettings.__dataclass_fields__)
        assert default_settings(arch, up_to) == resolve_settings(arch, None, **changes)
        assert default_settings(arch, 1.0) == ARCH_DEFAULTS[arch]
    assert "head.fc" in default_settings("v1", 0.25).keep_float and "head.fc" not in default_settings("v1", 0.5).keep_float
    with pytest.raises(BadInput, match="^float_max_channels"):
        QuantSettings(float_max_channels=-1)


def test_narrow_layers_rule(pretrained_dir):
    from mnetctl.quant.nodes import float_node_names

    model = onnx.load(pretrained_dir / "v1-0.25-128.onnx")
    names = float_node_names(model, (), 16)
    # V1 0.25: stem (8), blocks.0.dw (8), blocks.0.project (16) and blocks.1.dw (16), each with its activation
    assert names == ["stem.conv", "stem.act", "blocks.0.dw", "blocks.0.dw.act", "blocks.0.project",
                     "blocks.0.project.act", "blocks.1.dw", "blocks.1.dw.act"]
    assert float_node_names(model, (), 0) == []


def test_grid_detection():
    rng = np.random.default_rng(0)
    scale = 0.0123
    k = rng.integers(-100, 156, size=(32, 16, 3, 3))
    found = find_grid((k * scale).astype(np.float32))
    assert found is not None
    assert abs(found[0] - scale) / scale < 1e-5 and (found[1], found[2]) == (int(k.min()), int(k.max()))
    # every other level only: the step is still the grid's
    even = find_grid((2 * k[:, :, :1] * scale).astype(np.float32))
    assert even is not None
    assert find_grid(rng.standard_normal((64, 32)).astype(np.float32)) is None  # trained float weights
    assert find_grid((np.arange(300) * scale).astype(np.float32)) is None  # more than 256 levels
    assert find_grid((np.arange(200) * scale).astype(np.float32), levels=128) is None  # 7-bit target


# --------------------------------------------------------------------------------------------
# Options, formats, input layouts


def test_settings_resolution():
    assert resolve_settings("v2").per_channel == ARCH_DEFAULTS["v2"].per_channel
    assert resolve_settings("v2", per_channel=False).per_channel is False
    assert resolve_settings("unknown-arch", method="entropy").method == "entropy"
    assert resolve_settings("v3-small", keep_float=None).keep_float == ARCH_DEFAULTS["v3-small"].keep_float  # None: default
    with pytest.raises(BadInput, match="^method must be one of"):  # the library names parameters, the CLI flags
        resolve_settings("v2", method="kl")
    with pytest.raises(BadInput, match="^fmt must be one of"):
        resolve_settings("v2", fmt="onnx")
    with pytest.raises(BadInput, match="unknown quantization setting"):
        resolve_settings("v2", bogus=True)


def test_uint8_input_model_keeps_preprocessing_float(pretrained_dir, tmp_path):
    rep = quantize_model(pretrained_dir / "v1-0.25-128-u8.onnx", tmp_path / "u8.int8.onnx", eval_data=VAL)
    assert rep.top1_drop <= 1.0, rep.as_dict()
    assert "preprocess.sub_mean" in rep.nodes_kept_float
    q = onnx.load(rep.output)
    assert q.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert read_meta_file(rep.output).input_format == "uint8-nhwc"


@pytest.mark.parametrize(
    "opts, op, act_zp_type",
    [
        ({"fmt": "qoperator"}, "QLinearConv", onnx.TensorProto.UINT8),
        ({"activations": "int8", "method": "percentile", "samples": 30}, "DequantizeLinear", onnx.TensorProto.INT8),
        ({"per_channel": False, "weight_grid": "off", "method": "entropy", "samples": 10}, "DequantizeLinear", onnx.TensorProto.UINT8),
    ],
)
def test_formats_types_and_methods(pretrained_dir, tiny_model, tmp_path, opts, op, act_zp_type):
    opts = dict(opts)
    samples = opts.pop("samples", 100)
    source = tiny_model if opts.get("method") == "entropy" else pretrained_dir / "v1-0.5-160.onnx"  # entropy is slow
    rep = quantize_model(source, tmp_path / "m.int8.onnx", opts, samples=samples)
    q = onnx.load(rep.output)
    ops = {n.op_type for n in q.graph.node}
    assert op in ops
    inits = {i.name: i for i in q.graph.initializer}
    first_q = next(n for n in q.graph.node if n.op_type == "QuantizeLinear")
    assert inits[first_q.input[2]].data_type == act_zp_type
    meta = read_meta_file(rep.output)
    assert json.loads(meta.extra["quant.settings"])["method"] == opts.get("method", "minmax")
    assert rep.top1_before is None and rep.calib_samples == samples
    if opts.get("weight_grid") == "off":
        assert rep.weights_on_checkpoint_grid == 0


def test_same_input_same_bytes(tiny_model, tmp_path):
    from mnetctl.model import Model

    a = quantize_model(tiny_model, tmp_path / "a.onnx", samples=20)
    b = quantize_model(Model.open(tiny_model), tmp_path / "b.onnx", samples=20)  # a handle works like its path
    assert Path(a.output).read_bytes() == Path(b.output).read_bytes()
    assert a.weights_on_checkpoint_grid == 0  # random init lies on no 8-bit grid


def test_default_output_name(tiny_model, tmp_path):
    src = tmp_path / "tiny.onnx"
    src.write_bytes(tiny_model.read_bytes())
    rep = quantize_model(src, settings=QuantSettings(per_channel=False), samples=10)
    assert Path(rep.output) == tmp_path / "tiny.int8.onnx" and Path(rep.output).exists()
    assert rep.settings == QuantSettings(per_channel=False).as_dict()  # a QuantSettings is used as is


def test_model_is_opened_once_and_each_folder_walked_once(tiny_model, tmp_path, monkeypatch):
    """One parse of the model file, one ModelMeta and Preprocessor, one walk of the calibration and eval folders;
    progress arrives through the callback."""
    import collections

    import mnetctl.data
    import mnetctl.meta
    import mnetctl.model

    counts: collections.Counter = collections.Counter()
    real_load, real_meta = onnx.load, mnetctl.meta.read_meta
    real_pre, real_walk = mnetctl.data.Preprocessor.from_meta.__func__, mnetctl.data._from_folder

    def load(f, *args, **kwargs):
        counts["parse"] += str(f) == str(tiny_model)
        return real_load(f, *args, **kwargs)

    def read_meta(proto, *args):
        counts["meta"] += 1
        return real_meta(proto, *args)

    def from_meta(cls, meta):
        counts["preprocessor"] += 1
        return real_pre(cls, meta)

    def walk(root, *args):
        counts[f"walk {Path(root).name}"] += 1
        return real_walk(root, *args)

    monkeypatch.setattr(onnx, "load", load)
    monkeypatch.setattr(mnetctl.meta, "read_meta", read_meta)
    monkeypatch.setattr(mnetctl.model, "read_meta", read_meta)
    monkeypatch.setattr(mnetctl.data.Preprocessor, "from_meta", classmethod(from_meta))
    monkeypatch.setattr(mnetctl.data, "_from_folder", walk)
    events = []
    rep = quantize_model(tiny_model, tmp_path / "q.onnx", samples=10, eval_data=VAL, eval_limit=8,
                         on_progress=lambda done, total, label: events.append((done, total, label)))
    assert counts == {"parse": 1, "meta": 1, "preprocessor": 1, "walk calib": 1, "walk val": 1}
    assert rep.eval_n == 8 and rep.calib_samples == 10
    last = {label: (done, total) for done, total, label in events}
    assert last == {"calibrate v1-0.25-128.onnx (minmax)": (10, 10), "eval v1-0.25-128.onnx (float)": (8, 8),
                    "eval v1-0.25-128.onnx (int8)": (8, 8)}


# --------------------------------------------------------------------------------------------
# Failures leave nothing behind


def test_refuses_bad_inputs(quantized, tiny_model, tmp_path):
    with pytest.raises(BadInput, match="already quantized"):
        quantize_model(quantized["v1-0.5-160"].output, tmp_path / "x.onnx")
    with pytest.raises(BadInput, match="does not exist"):
        quantize_model(tiny_model, tmp_path / "x.onnx", calib=tmp_path / "missing")
    with pytest.raises(BadInput, match="overwrite the input"):
        quantize_model(tiny_model, tiny_model)
    with pytest.raises(BadInput, match="^samples must be"):
        quantize_model(tiny_model, tmp_path / "x.onnx", samples=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="no images"):
        quantize_model(tiny_model, tmp_path / "x.onnx", calib=empty)
    assert not (tmp_path / "x.onnx").exists()


def test_refuses_models_that_are_not_runnable_image_classifiers(tmp_path):
    from mnetctl.builder import build_model

    h = onnx.helper
    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", 1, [1, 3])],
                         [h.make_tensor_value_info("y", 1, [1, 3])])
    relu = tmp_path / "relu.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(relu))
    with pytest.raises(BadInput, match="4-D image batch"):
        quantize_model(relu, tmp_path / "q.onnx")
    with pytest.raises(BadInput, match="4-D image batch"):
        simplify_model(relu, tmp_path / "s.onnx")
    broken = build_model("v3-small", 0.25, 32, classes=10)  # loads, but ORT fails when it runs
    conv = next(n for n in broken.graph.node if n.op_type == "Conv" and ".se." in n.name)
    next(a for a in conv.attribute if a.name == "group").i = 0
    group0 = tmp_path / "group0.onnx"
    group0.write_bytes(broken.SerializeToString())
    with pytest.raises(BadInput, match="ONNX Runtime cannot run"):
        quantize_model(group0, tmp_path / "q.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group0.onnx", "relu.onnx"]


def test_unreadable_calibration_images_are_skipped_or_refused(tiny_model, tmp_path):
    good = sorted(CALIB.iterdir())[:3]
    folder = tmp_path / "calib"
    folder.mkdir()
    for src in good:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "n01440764_cut.JPEG").write_bytes(good[0].read_bytes()[:2000])  # truncated JPEG
    rep = quantize_model(tiny_model, tmp_path / "a.onnx", calib=folder)
    assert (rep.calib_samples, rep.calib_failed) == (3, 1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "n01440764_cut.JPEG").write_bytes(good[0].read_bytes()[:2000])
    with pytest.raises(BadInput, match="could be read"):
        quantize_model(tiny_model, tmp_path / "b.onnx", calib=broken)
    assert not (tmp_path / "b.onnx").exists()


def test_accuracy_gate_failure_writes_nothing(pretrained_dir, tmp_path):
    out = tmp_path / "gate.int8.onnx"
    # a limit no quantized model can meet (int8 would have to beat float by 100 points)
    with pytest.raises(GateFailed, match="not written"):
        quantize_model(pretrained_dir / "v1-0.5-160.onnx", out, eval_data=VAL, eval_limit=20, max_drop=-100)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_interrupt_during_calibration_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    import tempfile

    import mnetctl.quant.calibrate as q

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    calls = {"n": 0}
    real = q.ImageCalibrationReader.get_next

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(q.ImageCalibrationReader, "get_next", interrupted)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        quantize_model(tiny_model, out_dir / "m.int8.onnx", samples=50)
    assert calls["n"] == 3
    assert list(out_dir.iterdir()) == []
    assert _leftovers(scratch) == []  # our temp folder and ORT's are gone


def test_sigint_to_cli_leaves_nothing(pretrained_dir, tmp_path):
    """A real Ctrl-C (SIGINT) in the middle of `mnetctl quantize`: exit 130, no output, no temp files."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "out" / "v2.int8.onnx"
    env = {**os.environ, "TMPDIR": str(scratch), "MNETCTL_DEBUG": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnetctl", "quantize", str(pretrained_dir / "v2-1.0-224.onnx"), "-o", str(out), "--json",
         "--no-bench"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(scratch.glob("*/augmented.onnx")):  # the calibration model is written: calibration starts
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "calibration did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    assert _leftovers(scratch) == []


def _leftovers(folder: Path) -> list[str]:
    """What is left in a temp folder, minus the session marker `import onnxruntime` itself drops there."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".ses")


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_quantize_and_simplify(tiny_model, tmp_path, capsys):
    from mnetctl.cli import main

    out = tmp_path / "cli.int8.onnx"
    rc = main(["quantize", str(tiny_model), "-o", str(out), "--samples", "10", "--eval-limit", "16", "--json", "--no-bench"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and out.exists()
    assert report["output"] == str(out) and report["eval_n"] == 16 and report["calib_samples"] == 10
    assert report["size_ratio"] > 3.0 and "top1_drop" in report and "agreement" in report and report["speed"] is None

    rc = main(["quantize", str(tiny_model), "-o", str(tmp_path / "x.onnx"), "--method", "kl"])
    assert rc == 2 and "--method" in capsys.readouterr().err
    rc = main(["quantize", str(out), "-o", str(tmp_path / "y.onnx"), "--no-eval"])
    assert rc == 2 and "already quantized" in capsys.readouterr().err

    rc = main(["simplify", str(tiny_model), "-o", str(tmp_path / "s.onnx")])
    assert rc == 0 and (tmp_path / "s.onnx").exists()
    assert "max |diff|" in capsys.readouterr().out


@pytest.mark.parametrize("max_drop", [float("nan"), float("inf"), 101.0])
def test_library_refuses_a_max_drop_that_would_turn_the_gate_off(tiny_model, tmp_path, max_drop):
    with pytest.raises(BadInput, match="^max_drop must be"):
        quantize_model(tiny_model, tmp_path / "q.onnx", eval_data=VAL, max_drop=max_drop)
    assert not (tmp_path / "q.onnx").exists()
