"""Models whose input fixes the batch size or takes float16: quantize and simplify run them one
batch-sized chunk at a time, cast to the input's type, as eval does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mnetctl.data import default_val_dir
from mnetctl.model import InputSpec, fit_batches
from mnetctl.quant.pipeline import quantize_model
from mnetctl.quant.speed import SpeedOptions
from mnetctl.simplify import simplify_model


def _v1(path: Path, batch: int | None = None, fp16: bool = False) -> Path:
    """Our V1 0.25 at 64 px, its input's batch dim rewritten to `batch` or its input made float16 (+ a Cast)."""
    from mnetctl.builder import build_model, save_model

    model = build_model("v1", 0.25, 64)
    inp = model.graph.input[0]
    if batch is not None:
        dim = inp.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    if fp16:
        inner = inp.name
        inp.name = inner + "_fp16"
        inp.type.tensor_type.elem_type = TensorProto.FLOAT16
        model.graph.node.insert(0, helper.make_node("Cast", [inp.name], [inner], to=TensorProto.FLOAT, name="cast_in"))
    onnx.checker.check_model(model)
    return save_model(model, path)


@pytest.mark.parametrize("kind", ["batch1", "batch3", "fp16"])
def test_quantize_and_simplify_fixed_batch_and_fp16_inputs(tmp_path, kind):
    model = _v1(tmp_path / f"{kind}.onnx", batch={"batch1": 1, "batch3": 3}.get(kind), fp16=kind == "fp16")
    rep = quantize_model(model, tmp_path / "q.onnx", samples=7, eval_data=default_val_dir(), eval_limit=5,
                         speed=SpeedOptions(rounds=1, warmup=0))  # the timing feeds the same fixed input
    assert rep.calib_samples == 7 and rep.eval_n == 5 and (tmp_path / "q.onnx").is_file()
    assert rep.speed["rounds"] == 1 and rep.speed["int8_p50_ms"] > 0
    sim = simplify_model(model, tmp_path / "s.onnx", samples=5)  # 5 check images: batch 3 pads the second chunk
    assert sim.check_images == 5 and sim.max_abs_diff <= sim.tolerance


def test_fit_batches_casts_chunks_and_pads():
    x = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1)
    chunks = list(fit_batches(x, InputSpec("x", np.dtype(np.float16), (2, 1, 1, 1), 2)))
    assert [m for _, m in chunks] == [2, 2, 1]
    assert all(c.shape[0] == 2 and c.dtype == np.float16 for c, _ in chunks)
    assert chunks[-1][0].ravel().tolist() == [4, 4]  # padded with its own rows
    ((whole, n),) = fit_batches(x, InputSpec("x", np.dtype(np.float32), (None, 1, 1, 1), None))
    assert whole is x and n == 5
