"""Models that load but are not what mnetctl can use (wrong outputs, corrupt fields, missing external
data): one clean error line, exit 2, nothing written - checked like the rows of test_bad_inputs."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("badmodels")
    (root / "out").mkdir()
    (root / "cwd").mkdir()
    _identity(root)
    return {"root": str(root), "out": str(root / "out"), "cwd": str(root / "cwd"), "tench": str(TENCH)}


CASES = [
    Case("eval-identity-model", "eval {root}/identity.onnx --limit 2", ("identity.onnx", "not a class vector")),
    Case("predict-identity-model", "predict {root}/identity.onnx {tench}", ("identity.onnx", "not a class vector")),
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
