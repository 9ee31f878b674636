"""Weights that already lie on an 8-bit grid (imported from a quantized checkpoint), and how to keep them there.

`plan_weights` turns the detected grids into ORT `TensorQuantOverrides`, so that quantizing such a weight
again reproduces the checkpoint's values instead of rounding them onto a new grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .settings import TYPES, QuantSettings


def find_grid(w: np.ndarray, levels: int = 256) -> tuple[float, int, int] | None:
    """(scale, kmin, kmax) if every value of `w` is k * scale with integer k spanning at most `levels` levels.

    Weights imported from an 8-bit checkpoint (TFLite uint8: w = (q - zero_point) * scale) pass;
    trained float weights (thousands of distinct values) do not. The step is the smallest gap between
    distinct values (or an integer fraction of it), refined by least squares over all values.
    """
    w = np.asarray(w, np.float64).ravel()
    values = np.unique(w)
    if len(values) < 2 or len(values) > levels:
        return None
    step = float(np.diff(values).min())
    for div in (1, 2, 3, 4):
        scale = step / div
        k = np.round(w / scale)
        if k.max() - k.min() > levels - 1:
            return None
        scale = float(np.dot(w, k) / np.dot(k, k))  # least-squares refinement of the step
        if np.abs(w / scale - k).max() < 1e-2:
            return scale, int(k.min()), int(k.max())
    return None


@dataclass
class WeightPlan:
    """How each Conv/Gemm weight is quantized: ORT `TensorQuantOverrides` plus what ORT decides alone."""

    overrides: dict[str, list[dict[str, Any]]]
    on_grid: int  # weights quantized onto their checkpoint grid
    off_grid: int  # quantized weights on no grid
    per_channel: bool  # the per_channel flag quantize_static must get


def plan_weights(model, excluded: Sequence[str], qs: QuantSettings) -> WeightPlan:
    """Scales and zero points for the weights that lie on a checkpoint grid (see `QuantSettings.weight_grid`)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    qtype = TYPES[qs.weights]
    mode = qs.weight_grid
    if mode == "channel" and qs.weights != "int8":
        mode = "exact"  # symmetric per-channel grids are an int8 layout
    levels = 128 if qs.reduce_range else 256
    lo, hi = (-(levels // 2), levels // 2 - 1) if qs.weights == "int8" else (0, levels - 1)
    mid = 0 if qs.weights == "int8" else levels // 2
    out: dict[str, list[dict[str, Any]]] = {}
    axes: dict[str, int] = {}
    off_grid: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.name in excluded or len(node.input) < 2:
            continue
        init = inits.get(node.input[1])
        if init is None:
            continue
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 1 if node.op_type == "Gemm" and not trans_b else 0
        w = numpy_helper.to_array(init)
        grid = find_grid(w, levels) if mode != "off" else None
        if grid is None:
            off_grid[init.name] = w
            axes[init.name] = axis
            continue
        step, kmin, kmax = grid
        if mode == "channel":
            k = np.abs(np.moveaxis(np.round(w / step), axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
            mult = np.maximum(1.0, np.ceil(k / hi))
            out[init.name] = [{"axis": axis, "scale": np.array(step * m, np.float32), "zero_point": np.array(0, np.int8),
                               "quant_type": qtype} for m in mult]
            continue
        zp_lo, zp_hi = lo - kmin, hi - kmax
        if zp_lo > zp_hi:
            off_grid[init.name] = w
            axes[init.name] = axis
            continue
        zp = min(max(mid, zp_lo), zp_hi)
        out[init.name] = [{"scale": np.array(step, np.float32), "zero_point": np.array(zp, np.int8 if qs.weights == "int8" else np.uint8),
                           "quant_type": qtype}]
        axes[init.name] = axis
    on_grid = len(out)
    if mode == "channel" and out:
        per_channel = True
        if not qs.per_channel:  # off-grid weights keep one symmetric scale, spelled as a per-channel override
            for name, w in off_grid.items():
                scale = float(np.abs(w).max()) / hi or 1.0
                out[name] = [{"axis": axes[name], "scale": np.array(scale, np.float32), "zero_point": np.array(0, np.int8),
                              "quant_type": qtype}]
    else:
        per_channel = qs.per_channel and bool(off_grid)  # on-grid weights are per-tensor by nature
        if per_channel and qs.fmt == "qoperator":
            # QOperator's per-channel mode wants a channel axis on every override: one grid serves all channels
            for name in list(out):
                out[name][0]["axis"] = axes[name]
    return WeightPlan(out, on_grid, len(off_grid), per_channel)
