"""Node names in the graph being quantized: ORT's optimiser leaves some nameless; settings select nodes by pattern."""

from __future__ import annotations

import fnmatch
from typing import Sequence


def name_unnamed_nodes(model) -> int:
    """Give nameless nodes a name so that node patterns can select them; returns how many were named.

    ORT's graph optimiser inlines HardSwish as HardSigmoid + Mul without node names: the Mul keeps the
    HardSwish's output (and so gets its name, e.g. `blocks.3.expand.act`); a node whose output is an
    internal `_inlfunc_*` tensor is named after its consumer (`blocks.3.expand.act.hardsigmoid`).
    """
    taken = {n.name for n in model.graph.node if n.name}
    consumers = {}
    for node in model.graph.node:
        for inp in node.input:
            consumers.setdefault(inp, node)

    def unique(base: str) -> str:
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}.{k}"
        taken.add(name)
        return name

    pending = []
    renamed = 0
    for node in model.graph.node:
        if node.name or not node.output:
            continue
        renamed += 1
        if node.output[0].startswith("_"):
            pending.append(node)
        else:
            node.name = unique(node.output[0] if node.output[0] not in taken else f"{node.output[0]}.{node.op_type.lower()}")
    for node in pending:  # internal tensors: name after the consumer, which is named by now
        consumer = consumers.get(node.output[0])
        base = f"{consumer.name}.{node.op_type.lower()}" if consumer is not None and consumer.name else node.output[0]
        node.name = unique(base)
    return renamed


def match_nodes(model, patterns: Sequence[str]) -> list[str]:
    """Names of the nodes that match any of the glob patterns, in graph order."""
    names = [n.name for n in model.graph.node if n.name]
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


_ACTIVATIONS = frozenset({"Relu", "Clip", "HardSwish", "HardSigmoid"})


def narrow_conv_nodes(model, max_channels: int) -> list[str]:
    """Conv nodes with at most `max_channels` output channels, with their activations (a hard-swish that ORT
    inlined as HardSigmoid + Mul included)."""
    if max_channels <= 0:
        return []
    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for x in node.input:
            readers.setdefault(x, []).append(node)
    chosen: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        dims = inits[node.input[1]].dims
        if not dims or dims[0] > max_channels:
            continue
        chosen.add(node.name)
        acts = [r for r in readers.get(node.output[0], ()) if r.op_type in _ACTIVATIONS]
        gates = {o for a in acts if a.op_type == "HardSigmoid" for o in a.output}
        chosen.update(a.name for a in acts)
        chosen.update(r.name for r in readers.get(node.output[0], ())
                      if r.op_type == "Mul" and any(x in gates for x in r.input))
    return [n.name for n in model.graph.node if n.name in chosen]


def float_node_names(model, patterns: Sequence[str], max_channels: int) -> list[str]:
    """The nodes a quantization keeps in float: those matching `patterns` and the narrow Conv layers, in graph order."""
    chosen = set(match_nodes(model, patterns)) | set(narrow_conv_nodes(model, max_channels))
    return [n.name for n in model.graph.node if n.name in chosen]


def int8_edges(model, tensors, float_nodes: Sequence[str]) -> set[str]:
    """The tensors (of `tensors`) that an int8 node produces or reads: only those need a QuantizeLinear/
    DequantizeLinear pair once `float_nodes` run in float (a graph input counts as produced in float)."""
    floating = set(float_nodes)
    producer = {o: n.name for n in model.graph.node for o in n.output}
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for x in node.input:
            readers.setdefault(x, []).append(node.name)
    keep = set()
    for t in tensors:
        made_int8 = t in producer and producer[t] not in floating
        read_int8 = any(r not in floating for r in readers.get(t, ()))
        if made_int8 or read_int8:
            keep.add(t)
    return keep
