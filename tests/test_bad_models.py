"""Models that load but are not what mnetctl can use (wrong outputs, corrupt fields, missing external
data): one clean error line, exit 2, nothing written - checked like the rows of test_bad_inputs."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from mnetctl.cli import main

from .test_bad_inputs import TENCH, Case, _snapshot, check_clean_error


def _save(model, path: Path) -> None:
    onnx.save(model, str(path))


def _identity(root: Path) -> None:
    """[1,3,224,224] in, the same out: an image model that is not a classifier."""
    shape = [1, 3, 224, 224]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "identity.onnx")


def _symbolic_weight(root: Path, op: str) -> None:
    """A Gemm or Conv whose weight is a graph input with a symbolic dimension."""
    if op == "Gemm":
        nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
        w_shape: list = [10, "K"]
    else:
        nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
                 helper.make_node("Flatten", ["p"], ["y"])]
        w_shape = [10, "C", 3, 3]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                                           helper.make_tensor_value_info("W", TensorProto.FLOAT, w_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / f"{op.lower()}_symbolic.onnx")


def _mobilenets(root: Path) -> None:
    """Our V1 0.25 with a corrupt input type, NaN mean metadata, or external data missing / outside its folder."""
    from mnetctl.builder import build_model

    model = build_model("v1", 0.25, 32, classes=10)
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    bad.graph.input[0].type.tensor_type.elem_type = 99
    _save(bad, root / "elem99.onnx")
    bad.CopyFrom(model)
    next(p for p in bad.metadata_props if p.key == "mnetctl.mean").value = "[NaN, 127.5, 127.5]"
    _save(bad, root / "nan_mean.onnx")
    onnx.save(model, str(root / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0)
    (root / "nodata").mkdir()
    (root / "nodata" / "ext.onnx").write_bytes((root / "ext.onnx").read_bytes())  # ext.data not beside it
    stub = onnx.load(str(root / "ext.onnx"), load_external_data=False)
    for init in stub.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../ext.data"
    (root / "sub").mkdir()
    _save(stub, root / "sub" / "escape.onnx")
    # a foreign model with a 7x5 input and no metadata
    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 7, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "rect.onnx")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("badmodels")
    (root / "out").mkdir()
    (root / "cwd").mkdir()
    _identity(root)
    _symbolic_weight(root, "Gemm")
    _symbolic_weight(root, "Conv")
    _mobilenets(root)
    return {"root": str(root), "out": str(root / "out"), "cwd": str(root / "cwd"), "tench": str(TENCH)}


CASES = [
    Case("eval-identity-model", "eval {root}/identity.onnx --limit 2", ("identity.onnx", "not a class vector")),
    Case("predict-identity-model", "predict {root}/identity.onnx {tench}", ("identity.onnx", "not a class vector")),
    Case("build-over-the-protobuf-limit", "build v2 -w 4 --classes 100000 -o {out}/b.onnx", ("--width", "2 GiB")),
    Case("inspect-unknown-element-type", "inspect {root}/elem99.onnx", ("elem99.onnx", "unknown element type 99")),
    Case("predict-unknown-element-type", "predict {root}/elem99.onnx {tench}", ("elem99.onnx", "unknown element type 99")),
    Case("inspect-gemm-symbolic-weight", "inspect {root}/gemm_symbolic.onnx", ("gemm_symbolic.onnx", "symbolic shape")),
    Case("inspect-conv-symbolic-weight", "inspect {root}/conv_symbolic.onnx --json", ("conv_symbolic.onnx", "symbolic shape")),
    Case("predict-non-square-input", "predict {root}/rect.onnx {tench}", ("rect.onnx", "not a square image")),
    Case("eval-nan-mean-metadata", "eval {root}/nan_mean.onnx --limit 2", ("nan_mean.onnx", "mnetctl.mean")),
    Case("quantize-nan-mean-metadata", "quantize {root}/nan_mean.onnx --no-eval -o {out}/q.onnx",
         ("nan_mean.onnx", "mnetctl.mean", "not a finite number")),
    Case("inspect-missing-external-data", "inspect {root}/nodata/ext.onnx", ("ext.onnx", "ext.data", "does not exist")),
    Case("quantize-missing-external-data", "quantize {root}/nodata/ext.onnx --no-eval -o {out}/q.onnx",
         ("ext.data", "does not exist")),
    Case("inspect-external-data-outside-folder", "inspect {root}/sub/escape.onnx", ("escape.onnx", "outside its folder")),
    Case("eval-external-data-outside-folder", "eval {root}/sub/escape.onnx --limit 2", ("escape.onnx", "outside its folder")),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_model(case: Case, env, capsys, monkeypatch):
    root = Path(env["root"])
    monkeypatch.chdir(env["cwd"])
    monkeypatch.delenv("MNETCTL_DEBUG", raising=False)
    before = _snapshot(root)
    code = main([part.format(**env) for part in case.argv.split()])
    err = capsys.readouterr().err
    assert code == 2, err
    check_clean_error(err, case)
    assert _snapshot(root) == before


def test_external_data_beside_the_model_is_loaded_and_counted(env, tmp_path, capsys):
    """The good case of the rows above: inspect reads the weights; simplify and quantize report sizes that
    include the external data file (not only the .onnx stub)."""
    from mnetctl.quant.pipeline import quantize_model
    from mnetctl.simplify import simplify_model

    root = Path(env["root"])
    model = root / "ext.onnx"
    on_disk = model.stat().st_size + (root / "ext.data").stat().st_size
    assert main(["inspect", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] > 0
    assert simplify_model(model, tmp_path / "s.onnx", samples=2).size_before == on_disk
    rep = quantize_model(model, tmp_path / "q.onnx", samples=4)
    assert rep.size_before == on_disk and rep.size_after == (tmp_path / "q.onnx").stat().st_size
