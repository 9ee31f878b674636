"""The pretrained model with its classifier replaced by the trained head: same backbone bytes, `head.fc`'s
weight and bias swapped (a hidden layer becomes `head.train_hidden` Gemm + Relu before it), the output
resized, metadata saying what the classes are and how the head was made."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from ..meta import read_meta, write_meta
from ..labels import labels_extra
from .features import HEAD_NODE, feature_input
from .head import Head


def export_model(proto, head: Head, names: list[str], extra: dict[str, str]):
    """A new proto: `proto`'s backbone, `head` as its classifier, `names` as its labels, `extra` in metadata."""
    from onnx import TensorProto, helper, numpy_helper

    model = type(proto)()
    model.CopyFrom(proto)
    g = model.graph
    feat, _ = feature_input(model)
    fc = next(n for n in g.node if n.name == HEAD_NODE)
    old = set(fc.input[1:])
    inits = [i for i in g.initializer if i.name not in old]
    x = feat
    nodes_before = []
    for i, (w, b) in enumerate(head.layers[:-1]):
        name = f"head.train_hidden{'' if i == 0 else i}"
        inits += [numpy_helper.from_array(w.astype(np.float32), f"{name}.weight"),
                  numpy_helper.from_array(b.astype(np.float32), f"{name}.bias")]
        nodes_before += [helper.make_node("Gemm", [x, f"{name}.weight", f"{name}.bias"], [f"{name}.out"], name=name, transB=1),
                         helper.make_node("Relu", [f"{name}.out"], [f"{name}.act"], name=f"{name}.act")]
        x = f"{name}.act"
    w, b = head.layers[-1]
    inits += [numpy_helper.from_array(w.astype(np.float32), f"{HEAD_NODE}.weight"),
              numpy_helper.from_array(b.astype(np.float32), f"{HEAD_NODE}.bias")]
    new_fc = helper.make_node("Gemm", [x, f"{HEAD_NODE}.weight", f"{HEAD_NODE}.bias"], list(fc.output), name=HEAD_NODE,
                              transB=1)
    nodes = []
    for n in g.node:
        if n.name == HEAD_NODE:
            nodes += nodes_before + [new_fc]
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    out = g.output[0]
    out_name = out.name
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", len(names)]))
    keep_vi = [vi for vi in g.value_info if vi.name != out_name]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    meta = read_meta(proto)
    meta = replace(meta, classes=len(names), label_offset=0, precision="fp32")
    meta = meta.with_extra(**labels_extra(names), **extra)
    write_meta(model, meta)
    return model


def settings_json(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)
