"""onnxsim simplification, verified on real images (mnetctl.simplify)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mnetctl.errors import GateFailed
from mnetctl.meta import read_meta_file
from mnetctl.simplify import simplify_model


def test_simplify_verified(tiny_model, tmp_path):
    out = tmp_path / "tiny.sim.onnx"
    rep = simplify_model(tiny_model, out)
    assert out.exists() and rep.output == str(out)
    assert rep.max_abs_diff <= 1e-4 and rep.check_images == 8
    assert rep.nodes_after <= rep.nodes_before
    assert read_meta_file(out) == read_meta_file(tiny_model)
    onnx.checker.check_model(onnx.load(out))


def test_simplify_that_changes_outputs_fails_and_writes_nothing(tiny_model, tmp_path, monkeypatch):
    import onnxsim

    def broken(model, **_):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        bias = next(i for i in model.graph.initializer if i.name == "head.fc.bias")
        values = numpy_helper.to_array(bias) + np.float32(1e-3)
        bias.CopyFrom(numpy_helper.from_array(values, bias.name))
        return model, True

    monkeypatch.setattr(onnxsim, "simplify", broken)
    out = tmp_path / "bad.sim.onnx"
    with pytest.raises(GateFailed, match="changes the logits"):
        simplify_model(tiny_model, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tolerance", [float("nan"), -1.0, float("inf")])
def test_library_refuses_a_tolerance_that_would_turn_the_check_off(tiny_model, tmp_path, tolerance):
    from mnetctl.errors import BadInput

    with pytest.raises(BadInput, match="^tolerance must be a finite number"):
        simplify_model(tiny_model, tmp_path / "s.onnx", tolerance=tolerance)
    assert not (tmp_path / "s.onnx").exists()
