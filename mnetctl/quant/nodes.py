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
