"""Which provider runs which nodes, read from a session's recorded graph assignment or from onnxruntime
profiler events, and the per-node timing summary of a profiled run."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass
class NodeAssignment:
    """Which provider runs how many nodes (after graph optimisation and partitioning)."""

    counts: dict[str, int]
    ops: dict[str, dict[str, int]]
    source: str  # "session" (recorded graph assignment) | "profiling" (kernels seen in a profiled run)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "ops": {k: dict(v) for k, v in self.ops.items()}, "source": self.source}


def node_assignment(session) -> NodeAssignment | None:
    """Provider -> node count from the session's recorded graph assignment (onnxruntime >= 1.23), else None."""
    getter = getattr(session, "get_provider_graph_assignment_info", None)
    if getter is None:
        return None
    try:
        subgraphs = getter()
    except Exception:
        return None
    counts: Counter[str] = Counter()
    ops: dict[str, Counter[str]] = {}
    for sub in subgraphs:
        nodes = sub.get_nodes()
        counts[sub.ep_name] += len(nodes)
        bucket = ops.setdefault(sub.ep_name, Counter())
        for node in nodes:
            bucket[node.op_type] += 1
    if not counts:
        return None
    return NodeAssignment(dict(counts), {k: dict(sorted(v.items())) for k, v in ops.items()}, "session")


def profile_events(session) -> list[dict[str, Any]]:
    """End profiling on `session` and return its events; the profile file is deleted."""
    path = session.end_profiling()
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def assignment_from_profile(events: list[dict[str, Any]]) -> NodeAssignment:
    """Provider -> kernel count from onnxruntime profiler events (a fused EP subgraph counts as one kernel)."""
    seen: dict[str, tuple[str, str]] = {}
    for ev in events:
        if ev.get("cat") != "Node":
            continue
        args = ev.get("args") or {}
        provider = args.get("provider")
        if not provider:
            continue
        name = str(ev.get("name", ""))
        for suffix in ("_kernel_time", "_fence_before", "_fence_after"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        seen[name] = (provider, str(args.get("op_name", "?")))
    counts: Counter[str] = Counter(p for p, _ in seen.values())
    ops: dict[str, Counter[str]] = {}
    for provider, op in seen.values():
        ops.setdefault(provider, Counter())[op] += 1
    return NodeAssignment(dict(counts), {k: dict(sorted(v.items())) for k, v in ops.items()}, "profiling")


def summarize_op_events(events: list[dict[str, Any]], runs: int, top: int = 15) -> list[dict[str, Any]]:
    """The `top` nodes by total kernel time: op, provider, mean and total ms, calls and share of all kernel time."""
    per_node: dict[str, dict[str, Any]] = {}
    total_us = 0.0
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        args = ev.get("args") or {}
        name = str(ev["name"])[: -len("_kernel_time")]
        row = per_node.setdefault(name, {"node": name, "op": args.get("op_name", "?"), "provider": args.get("provider", "?"), "total_us": 0.0, "calls": 0})
        row["total_us"] += float(ev.get("dur", 0))
        row["calls"] += 1
        total_us += float(ev.get("dur", 0))
    rows = sorted(per_node.values(), key=lambda r: -r["total_us"])[:top]
    out = []
    for r in rows:
        out.append(
            {
                "node": r["node"],
                "op": r["op"],
                "provider": r["provider"],
                "mean_ms": round(r["total_us"] / max(1, r["calls"]) / 1000.0, 4),
                "total_ms": round(r["total_us"] / 1000.0, 3),
                "calls": r["calls"],
                "share": round(r["total_us"] / total_us, 4) if total_us else 0.0,
            }
        )
    return out
