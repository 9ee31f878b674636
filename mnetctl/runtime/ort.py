"""The onnxruntime import, session options and the plain CPU session: what every other runtime module builds on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ..errors import BadInput, EnvironmentMissing, MnetctlError, debug_enabled, short
from .eps import CPU_PROVIDER

# Session config keys (onnxruntime_session_options_config_keys.h).
CFG_RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"
CFG_DISABLE_CPU_FALLBACK = "session.disable_cpu_ep_fallback"
CFG_FORCE_SPINNING_STOP = "session.force_spinning_stop"
CFG_ALLOW_SPINNING = "session.intra_op.allow_spinning"  # "0": pool threads never spin, not even inside a run

# Graph optimisation levels by name (None anywhere below: onnxruntime's default, "all").
GRAPH_OPT_LEVELS = ("disabled", "basic", "extended", "all")

THREADS_PER_CORE_LIMIT = 4  # more intra-op threads than this per core only makes them starve each other


def _ort():
    """The onnxruntime module, imported on first use (EnvironmentMissing when it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise EnvironmentMissing("onnxruntime is not installed", "pip install onnxruntime") from exc
    return ort


def ort_log_level() -> int:
    """Severity for onnxruntime's own log: its error lines repeat what mnetctl reports as one clean error
    (exit 2 or 3), so they are shown only with MNETCTL_DEBUG=1."""
    return 3 if debug_enabled() else 4


def check_threads(threads: int) -> int:
    """A usable intra-op thread count, or BadInput: ORT takes minutes to start (and then crawls) with
    thousands of spinning threads, so an absurd --threads is refused rather than left to hang."""
    n = int(threads)
    if n < 1:
        raise BadInput(f"threads must be >= 1, got {threads}")
    cores = os.cpu_count() or 1
    limit = max(16, THREADS_PER_CORE_LIMIT * cores)
    if n > limit:
        raise BadInput(f"threads {n} is more than this host can use (at most {limit} for {cores} cores)",
                       "lower --threads, or leave it out for onnxruntime's default")
    return n


def graph_opt_level(name: str):
    """onnxruntime's GraphOptimizationLevel for one of GRAPH_OPT_LEVELS (BadInput for anything else)."""
    levels = _ort().GraphOptimizationLevel
    table = {"disabled": levels.ORT_DISABLE_ALL, "basic": levels.ORT_ENABLE_BASIC,
             "extended": levels.ORT_ENABLE_EXTENDED, "all": levels.ORT_ENABLE_ALL}
    if name not in table:
        raise BadInput(f"graph_optimization must be one of {', '.join(GRAPH_OPT_LEVELS)}, got {name!r}")
    return table[name]


def session_options(threads: int | None = None, config: Mapping[str, str] | None = None, stop_idle_spinning: bool = False,
                    graph_optimization: str | None = None):
    """SessionOptions with mnetctl's log level, `threads` intra-op threads (None: onnxruntime's default),
    the session config entries in `config` and the graph optimisation level (None: onnxruntime's default).

    `stop_idle_spinning` makes the pool threads stop spinning as soon as a run returns (they still spin inside
    a run), so a session that is idle between runs does not take CPU time from whatever runs next.
    """
    so = _ort().SessionOptions()
    so.log_severity_level = ort_log_level()
    if threads:
        so.intra_op_num_threads = check_threads(threads)
    if graph_optimization is not None:
        so.graph_optimization_level = graph_opt_level(graph_optimization)
    if stop_idle_spinning:
        so.add_session_config_entry(CFG_FORCE_SPINNING_STOP, "1")
    for key, value in (config or {}).items():
        so.add_session_config_entry(str(key), str(value))
    return so


def source_of(model: Path | str | bytes) -> str | bytes:
    """What InferenceSession takes: the bytes of an in-memory model, else the path as a string."""
    return model if isinstance(model, bytes) else str(model)


def cpu_session(
    model: Path | str | bytes,
    threads: int | None = None,
    config: Mapping[str, str] | None = None,
    stop_idle_spinning: bool = False,
    graph_optimization: str | None = None,
):
    """A plain CPU execution-provider session (eval, predict, verification, compare); options as in `session_options`."""
    so = session_options(threads, config, stop_idle_spinning, graph_optimization)
    return _ort().InferenceSession(source_of(model), sess_options=so, providers=[CPU_PROVIDER])


def open_cpu_session(model: Path | str | bytes, name: str, threads: int | None = None, **options):
    """`cpu_session`, with onnxruntime's own load errors as one BadInput naming `name` (mnetctl's pass through)."""
    try:
        return cpu_session(model, threads=threads, **options)
    except MnetctlError:
        raise
    except Exception as exc:  # onnxruntime's own exception types (unsupported op, invalid graph)
        raise BadInput(f"ONNX Runtime cannot load {name}: {short(exc)}") from None
