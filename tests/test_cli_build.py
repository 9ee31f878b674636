"""`mnetctl build`, `inspect`, `archs` through the real CLI entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mnetctl.cli import main


def test_build_default_output_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["build", "v2", "--width", "0.75", "--resolution", "96"]) == 0
    out = tmp_path / "models" / "v2-0.75-96.onnx"
    assert out.is_file()
    onnx.checker.check_model(onnx.load(str(out)))
    assert "v2-0.75-96.onnx" in capsys.readouterr().out


def test_build_is_byte_identical(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    for p in (a, b):
        assert main(["build", "v3-small", "--resolution", "64", "--seed", "3", "-o", str(p), "-q"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_build_options_reach_the_model(tmp_path):
    out = tmp_path / "small.onnx"
    assert main(["build", "v3-small", "--width", "1.0", "--resolution", "160", "--classes", "1001",
                 "--opset", "13", "--input-format", "uint8-nhwc", "--padding", "same", "-o", str(out)]) == 0
    m = onnx.load(str(out))
    props = {p.key: p.value for p in m.metadata_props}
    assert props["mnetctl.classes"] == "1001" and props["mnetctl.padding"] == "same"
    assert props["mnetctl.input_format"] == "uint8-nhwc" and props["mnetctl.opset"] == "13"
    assert m.opset_import[0].version == 13 and m.ir_version == 7
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8


def test_inspect_json_totals(tmp_path, capsys):
    out = tmp_path / "v2.onnx"
    main(["build", "v2", "-r", "224", "--classes", "1001", "-o", str(out), "-q"])
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc["macs"], int) and isinstance(doc["params"], int)
    assert doc["macs"] / 1e6 == pytest.approx(300.8, rel=0.01)
    assert doc["params"] / 1e6 == pytest.approx(3.489, rel=0.01)
    assert doc["layers"][0]["name"] == "stem.conv" and doc["layers"][-1]["name"] == "head.fc"
    assert sum(layer["macs"] for layer in doc["layers"]) == doc["macs"]



def test_inspect_human_table(tiny_model, capsys):
    assert main(["inspect", str(tiny_model)]) == 0
    text = capsys.readouterr().out
    assert "stem.conv" in text and "head.fc" in text and "total" in text


def _foreign_classifier(path):
    """A non-mnetctl classifier: Conv (no bias) -> Relu -> ReduceMean -> MatMul + Add, fixed batch 1."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "fc")
    b = numpy_helper.from_array(np.zeros(5, np.float32), "b")
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r", "axes"], ["p"], name="pool", keepdims=0),
        helper.make_node("MatMul", ["p", "fc"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "b"], ["y"], name="bias"),
    ]
    g = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [w, fc, b, axes])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_inspect_foreign_model(tmp_path, capsys):
    path = tmp_path / "foreign.onnx"
    _foreign_classifier(path)
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    conv_macs = 16 * 16 * 8 * 3 * 3 * 3
    fc_macs = 8 * 5
    assert doc["macs"] == conv_macs + fc_macs
    assert doc["params"] == 8 * 3 * 3 * 3 + 8 * 5  # weights of conv and matmul (the Add bias is not a layer input)


def test_archs_lists_family_and_pretrained(capsys):
    assert main(["archs", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [a["arch"] for a in doc["archs"]]
    assert names == ["v1", "v2", "v3-large", "v3-small", "v4-conv-s", "v4-conv-m", "v4-conv-l", "v4-hybrid-m",
                     "mobilenet-edgetpu", "ssd-v1", "ssdlite-v2", "ssdlite-v3-large", "ssdlite-v3-small",
                     "deeplabv3-v2"]  # classifier families, then detectors, then segmenters
    v1 = doc["archs"][0]
    assert sorted(p["width"] for p in v1["pretrained"]) == [0.25, 0.5, 0.75, 1.0]
    assert doc["archs"][2]["pretrained"] == []
    assert main(["archs"]) == 0
    assert "v3-large" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["build", "v9"], "unknown architecture"),
        (["build", "v2", "--width", "0"], "--width"),
        (["build", "v2", "--width", "-0.5"], "--width"),
        (["build", "v2", "--width", "nan"], "--width"),
        (["build", "v2", "--width", "inf"], "--width"),
        (["build", "v2", "--resolution", "31"], "--resolution"),
        (["build", "v2", "--opset", "12"], "--opset"),
        (["build", "v2", "--input-format", "rgb"], "--input-format"),
        (["build", "v2", "--padding", "valid"], "--padding"),
        (["build", "v2", "--weights", "no/such.tflite"], "--weights"),
        (["build", "v2", "--crop-fraction", "0"], "--crop-fraction"),
        (["build", "v2", "--std", "0"], "--std"),
        (["build", "v2", "--mean", "1,2"], "--mean"),
        (["build", "v2", "--labels", "no/such.txt"], "--labels"),
        (["inspect", "no/such.onnx"], "does not exist"),
    ],
)
def test_bad_input_one_line_exit_2_no_file(tmp_path, capsys, args, needle):
    out = tmp_path / "out.onnx"
    full = args + (["-o", str(out)] if args[0] == "build" else [])
    assert main(full) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_corrupt_and_empty_model_files(tmp_path, capsys):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 100)
    for path, needle in ((empty, "empty"), (junk, "not a valid ONNX model")):
        assert main(["inspect", str(path)]) == 2
        assert needle in capsys.readouterr().err


def test_unwritable_output_exit_2(tmp_path, capsys):
    target = tmp_path / "dir.onnx"
    target.mkdir()
    assert main(["build", "v1", "-w", "0.25", "-r", "64", "-o", str(target)]) == 2
    assert "directory" in capsys.readouterr().err
    assert main(["build", "v1", "-w", "0.25", "-r", "64", "-o", "/proc/nope/x.onnx"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_console_script_exit_code_and_no_traceback(tmp_path):
    env = dict(os.environ, MNETCTL_DEBUG="")
    res = subprocess.run([sys.executable, "-m", "mnetctl", "build", "v2", "--width", "nan", "-o", str(tmp_path / "x.onnx")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = subprocess.run([sys.executable, "-m", "mnetctl", "build", "v2", "--width", "nan"], capture_output=True, text=True,
                         env=dict(os.environ, MNETCTL_DEBUG="1"), cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" in res.stderr
