"""How a quantized file stores what it stores: int8 weights for float nodes, and no all-zero zero points.

Two passes over a quantized (QDQ) proto, both in place:

* `store_float_weights_int8`: a Conv/Gemm kept in float gets its weight as int8 + one float scale per
  output channel (on a checkpoint's grid: multiples of its step, so the values stay exact), turned back
  into float by Cast and Mul.
  Both inputs are constants, so ONNX Runtime folds them at load: the node runs its float kernel (fused
  activation, NCHWc layout) while the file keeps int8 size. A DequantizeLinear would not do: ORT keeps
  DequantizeLinear unfolded for its QDQ fusions and then runs the convolution on a non-constant weight.
* `drop_zero_points`: DequantizeLinear nodes of Conv weights and biases whose zero point is all zeros lose
  that input (ONNX's default is 0; ORT fuses them all the same). Gemm keeps it: ORT's QGemm fusion needs it.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .grid import find_grid


def _int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 values and one scale per output channel: multiples of the checkpoint's grid step for a weight
    on one (exact where the channel fits +-127 steps), else max|w| / 127 per channel."""
    grid = find_grid(w)
    c = np.moveaxis(w, axis, 0).astype(np.float64)
    if grid is not None:
        step = grid[0]
        k = np.round(c / step)
        mult = np.maximum(1.0, np.ceil(np.abs(k.reshape(k.shape[0], -1)).max(axis=1) / 127))
    else:
        step = 1.0
        mult = np.abs(c.reshape(c.shape[0], -1)).max(axis=1) / 127
        mult[mult == 0] = 1.0
        k = c
    q = np.clip(np.round(k / mult.reshape(-1, *[1] * (k.ndim - 1))), -127, 127).astype(np.int8)
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.moveaxis(q, 0, axis), (step * mult).astype(np.float32).reshape(shape)


def store_float_weights_int8(model, node_names: Iterable[str]) -> int:
    """Store the weights of these float Conv/Gemm nodes as int8 (see the module doc); returns how many."""
    from onnx import helper, numpy_helper

    wanted = set(node_names)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, int] = {}
    for node in g.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    done = 0
    inserts: list[tuple[int, list]] = []
    for at, node in enumerate(g.node):
        if node.name not in wanted or node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
            continue
        name = node.input[1]
        init = inits.get(name)
        if init is None or init.data_type != 1 or readers.get(name) != 1:  # float32, read by this node only
            continue
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 1 if node.op_type == "Gemm" and not trans_b else 0
        q, scale = _int8(numpy_helper.to_array(init), axis)
        g.initializer.remove(init)
        g.initializer.extend([numpy_helper.from_array(q, f"{name}.int8"), numpy_helper.from_array(scale, f"{name}.scale")])
        inserts.append((at, [
            helper.make_node("Cast", [f"{name}.int8"], [f"{name}.float"], name=f"{name}.cast", to=1),
            helper.make_node("Mul", [f"{name}.float", f"{name}.scale"], [name], name=f"{name}.rescale"),
        ]))
        done += 1
    for at, nodes in sorted(inserts, key=lambda item: -item[0]):  # from the back, so positions stay valid
        for k, new in enumerate(nodes):
            g.node.insert(at + k, new)
    return done


def drop_zero_points(model) -> int:
    """Remove all-zero zero points of the DequantizeLinear nodes that feed Conv weights/biases; returns how many."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    conv_inputs = {name for n in g.node if n.op_type == "Conv" for name in n.input[1:]}
    dropped = 0
    for node in g.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.output[0] not in conv_inputs:
            continue
        if node.input[0] not in inits or node.input[2] not in inits:
            continue
        if numpy_helper.to_array(inits[node.input[2]]).any():
            continue
        del node.input[2]
        dropped += 1
    used = {name for n in g.node for name in n.input}
    unused = [t for t in g.initializer if t.name not in used]
    for t in unused:
        g.initializer.remove(t)
    return dropped


# ORT's quantizer names every tensor and node it adds with a long suffix; these shorter ones read as well.
_SUFFIXES = (
    ("_DequantizeLinear_Output", ".dq"), ("_QuantizeLinear_Output", ".q"), ("_DequantizeLinear", ".dequantize"),
    ("_QuantizeLinear", ".quantize"), ("_quantized_scale", ".qscale"), ("_quantized_zero_point", ".qzero"),
    ("_quantized", ".q8"), ("_zero_point", ".zero"), ("_scale", ".scale"),
)


def _shorter(name: str) -> str:
    for long, short in _SUFFIXES:
        if name.endswith(long):
            return name[: -len(long)] + short
    return name


def compact_names(model) -> int:
    """Shorten the names ORT's quantizer gave the tensors and nodes it added, and drop `value_info` (shape
    hints every runtime infers again); graph inputs and outputs keep their names. Returns the bytes saved."""
    g = model.graph
    before = model.ByteSize()
    fixed = {v.name for v in (*g.input, *g.output)}
    tensors = {t.name for t in g.initializer} | {o for n in g.node for o in n.output} | {i for n in g.node for i in n.input}
    rename: dict[str, str] = {}
    taken = set(tensors)
    for name in sorted(tensors - fixed):
        new = _shorter(name)
        if new != name and new not in taken:
            rename[name] = new
            taken.add(new)
    for t in g.initializer:
        t.name = rename.get(t.name, t.name)
    node_names = {n.name for n in g.node}
    for node in g.node:
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
        new = _shorter(node.name)
        if new != node.name and new not in node_names:
            node_names.add(new)
            node.name = new
    del g.value_info[:]
    return before - model.ByteSize()
