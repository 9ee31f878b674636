"""Sessions on the requested execution providers, with no silent fallback.

`create_session` fails with `EnvironmentMissing` (exit 3) when a requested provider cannot load or runs none of
the model's nodes, unless `allow_fallback` is set, in which case the returned `SessionInfo.fallback_dict()` says
what fell back. After creation it reports how many nodes each provider runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import BadInput, EnvironmentMissing, short
from .eps import CPU_PROVIDER, EP_REGISTRY, EPInfo, EPRequest, as_requests, provider_options
from .feeds import random_feeds
from .ort import CFG_DISABLE_CPU_FALLBACK, CFG_RECORD_ASSIGNMENT, _ort, cpu_session, session_options, source_of
from .probe import plugin_devices, plugin_library, simulated
from .profiling import NodeAssignment, assignment_from_profile, node_assignment, profile_events, summarize_op_events

@dataclass
class SessionInfo:
    """A created session with what was asked, what each provider runs and what fell back."""

    session: Any
    requested: list[EPRequest]
    used: list[str]  # provider names with at least one node
    provider_options: dict[str, dict[str, str]]
    assignment: NodeAssignment
    unavailable: list[str]  # requested short names that could not load (only with allow_fallback)
    no_nodes: list[str]  # requested short names that loaded but ran no node (only with allow_fallback)
    cpu_fallback_ops: dict[str, int]  # ops on CPU although CPU was not requested (only with allow_fallback)
    allow_fallback: bool
    create_ms: float
    notes: list[str] = field(default_factory=list)
    simulated: bool = False

    def fallback_dict(self) -> dict[str, Any]:
        """What fell back, as written into bench results."""
        return {
            "allowed": self.allow_fallback,
            "unavailable": list(self.unavailable),
            "no_nodes": list(self.no_nodes),
            "cpu_nodes": int(self.assignment.counts.get(CPU_PROVIDER, 0)),
            "cpu_fallback_ops": dict(self.cpu_fallback_ops),
            "fell_back": bool(self.unavailable or self.no_nodes or self.cpu_fallback_ops),
        }


def _dynamic_dims(model: Path | str | bytes) -> list[str]:
    """Names of symbolic dimensions on the first axis of the graph inputs (the batch axis)."""
    import onnx

    from ..modelio import load_onnx

    if isinstance(model, bytes):
        try:
            proto = onnx.load_from_string(model)
        except Exception:
            raise BadInput("the model bytes are not a valid ONNX model") from None
    else:
        proto = load_onnx(model, load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    names = []
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param") and dims[0].dim_param not in names:
            names.append(dims[0].dim_param)
    return names

def _session_options(
    threads: int | None,
    batch: int | None,
    batch_dims: Sequence[str],
    profile_prefix: str | None = None,
    config: Mapping[str, str] | None = None,
    stop_idle_spinning: bool = False,
    graph_optimization: str | None = None,
):
    """`ort.session_options` plus the batch-axis override, recorded node assignment and, if asked, profiling."""
    so = session_options(threads, config, stop_idle_spinning, graph_optimization)
    if batch:
        # Fixed shapes let accelerator EPs (QNN, NNAPI, TensorRT) take the whole graph.
        for dim in batch_dims:
            so.add_free_dimension_override_by_name(dim, int(batch))
    so.add_session_config_entry(CFG_RECORD_ASSIGNMENT, "1")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def _plan(requests: list[EPRequest], allow_fallback: bool, threads: int | None):
    """Decide how each requested provider is added; fail (or, with allow_fallback, record) those that cannot load.

    A provider with devices from `get_ep_devices()` (a registered plugin library) is added with
    `add_provider_for_devices`; one compiled into this onnxruntime build goes in the classic providers list.
    """
    ort = _ort()
    builtin = set(ort.get_available_providers())
    plan: list[tuple[EPInfo, dict[str, str], str, list[Any]]] = []  # (info, options, "builtin"|"plugin", devices)
    unavailable: list[str] = []
    for req in requests:
        info = req.info
        opts = provider_options(info.name, req.options, threads)
        if info.name == "cpu":
            plan.append((info, opts, "builtin", []))
            continue
        devices, _module = plugin_devices(info)
        if devices:
            plan.append((info, opts, "plugin", devices))
            continue
        if info.provider in builtin:
            plan.append((info, opts, "builtin", []))
            continue
        if allow_fallback:
            unavailable.append(info.name)
            continue
        lib, _ = plugin_library(info)
        why = "its plugin library found no device on this host" if lib else f"this onnxruntime {ort.__version__} ({ort.get_device()}) does not include it"
        raise EnvironmentMissing(
            f"{info.title} execution provider ({info.name}) is not available: {why}",
            f"{info.install_hint}; or pass --allow-fallback to run without it (reported as fallback)",
        )
    if not plan:  # everything requested is missing and fallback is allowed: run on the CPU
        plan.append((EP_REGISTRY["cpu"], {}, "builtin", []))
    return plan, unavailable


def _add_providers(so, plan) -> list[tuple[str, dict[str, str]]] | None:
    """Put the plan on the session options; returns the classic providers list, or None when the options hold them."""
    uses_plugin = any(kind == "plugin" for _, _, kind, _ in plan)
    for info, opts, _kind, _ in plan:
        for key, value in info.session_config.items():
            so.add_session_config_entry(key, value)
        if info.disable_mem_pattern:
            so.enable_mem_pattern = False
        _prepare_paths(opts)
    if not uses_plugin:
        return [(info.provider, opts) for info, opts, _, _ in plan]
    for info, opts, kind, devices in plan:
        if kind == "plugin":
            so.add_provider_for_devices(devices, opts)
        elif info.name != "cpu":  # the CPU provider is always there as the last resort
            if not hasattr(so, "add_provider"):
                raise BadInput(f"this onnxruntime cannot combine the plugin EP with {info.title} in one session")
            so.add_provider(info.provider, opts)
    return None


def _loads_on_cpu(source) -> bool:
    """Whether a plain CPU session accepts the model (tells a bad model from a provider that fails it)."""
    try:
        cpu_session(source)
    except Exception:
        return False
    return True


def _new_session(source, so, providers):
    """An InferenceSession from options that already hold the providers (`providers` None) or with this list."""
    ort = _ort()
    if providers is None:
        return ort.InferenceSession(source, sess_options=so)
    return ort.InferenceSession(source, sess_options=so, providers=[p for p, _ in providers], provider_options=[o for _, o in providers])



def create_session(
    model: Path | str | bytes,
    eps: Sequence[str | EPRequest] | str | None = None,
    threads: int | None = None,
    batch: int | None = 1,
    allow_fallback: bool = False,
    profile_prefix: str | None = None,
    config: Mapping[str, str] | None = None,
    stop_idle_spinning: bool = False,
    graph_optimization: str | None = None,
) -> SessionInfo:
    """Create a session on the requested providers (in priority order) and report node assignment.

    Raises EnvironmentMissing (exit 3) when a requested provider is unavailable, loads but takes no node, or when
    nodes land on the CPU although "cpu" was not requested; with `allow_fallback` the session is kept and the
    returned SessionInfo lists what fell back. `config` (session config entries), `stop_idle_spinning` and
    `graph_optimization` are as in `ort.session_options`; `profile_prefix` turns on onnxruntime's profiler with that file prefix.
    """
    ort = _ort()
    requests = as_requests(eps)
    plan, unavailable = _plan(requests, allow_fallback, threads)
    batch_dims = _dynamic_dims(model) if batch else []
    cpu_requested = any(info.name == "cpu" for info, *_ in plan) or allow_fallback
    has_assignment_api = hasattr(ort.InferenceSession, "get_provider_graph_assignment_info")

    so = _session_options(threads, batch, batch_dims, profile_prefix, config, stop_idle_spinning, graph_optimization)
    if not cpu_requested and not has_assignment_api:
        so.add_session_config_entry(CFG_DISABLE_CPU_FALLBACK, "1")
    providers = _add_providers(so, plan)
    source = source_of(model)
    t0 = time.perf_counter()
    try:
        session = _new_session(source, so, providers)
    except Exception as exc:
        msg = short(exc)
        names = ", ".join(info.title for info, *_ in plan)
        if "fallback to CPU EP has been explicitly disabled" in str(exc) or "disable_cpu_ep_fallback" in str(exc):
            raise EnvironmentMissing(
                f"some nodes cannot run on {names} and CPU fallback was not requested",
                "add cpu to --ep or pass --allow-fallback",
            ) from None
        what = source if isinstance(source, str) else "the model"
        if ("INVALID_GRAPH" in str(exc) or "INVALID_PROTOBUF" in str(exc) or "Unsupported model IR version" in str(exc)
                or all(info.name == "cpu" for info, *_ in plan) or not _loads_on_cpu(source)):
            # the model itself is the problem (the CPU provider is always there): bad input, not a missing provider
            raise BadInput(f"onnxruntime cannot load {what}: {msg}", "check the file with `mnetctl inspect`") from None
        raise EnvironmentMissing(f"session creation on {names} failed: {msg}", plan[0][0].install_hint) from None
    create_ms = (time.perf_counter() - t0) * 1000.0

    # A built-in provider that failed to initialise is silently dropped by onnxruntime: catch it here.
    active = set(session.get_providers())
    for info, opts, kind, _ in plan:
        if kind == "builtin" and info.provider not in active:
            if not allow_fallback:
                raise EnvironmentMissing(
                    f"{info.title} execution provider ({info.name}) failed to initialise (onnxruntime dropped it)", info.install_hint
                )
            unavailable.append(info.name)

    assignment = node_assignment(session)
    if assignment is None:
        assignment = _assignment_by_profiling(model, plan, threads, batch, batch_dims, config)
    requested_providers = [info.provider for info, *_ in plan if info.name not in unavailable]
    no_nodes: list[str] = []
    for info, *_ in plan:
        if info.name in unavailable or info.name == "cpu":
            continue
        if assignment.counts.get(info.provider, 0) == 0:
            if not allow_fallback:
                raise EnvironmentMissing(
                    f"{info.title} execution provider ({info.name}) loaded but runs none of the model's "
                    f"{assignment.total} nodes (all fell back to CPU)",
                    "check the provider options and that the model has fixed input shapes; --allow-fallback runs anyway",
                )
            no_nodes.append(info.name)
    cpu_listed = any(info.name == "cpu" for info, *_ in plan)
    cpu_ops: dict[str, int] = {}
    if not cpu_listed and assignment.counts.get(CPU_PROVIDER, 0):
        cpu_ops = dict(assignment.ops.get(CPU_PROVIDER, {}))
        if not allow_fallback:
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(cpu_ops.items()))
            titles = ", ".join(info.title for info, *_ in plan)
            raise EnvironmentMissing(
                f"{assignment.counts[CPU_PROVIDER]} nodes cannot run on {titles} and would fall back to CPU ({ops})",
                "add cpu to --ep to allow it, or pass --allow-fallback",
            )
    order = requested_providers + [CPU_PROVIDER] + sorted(assignment.counts)
    used = [p for p in dict.fromkeys(order) if assignment.counts.get(p, 0) > 0]
    notes = []
    is_sim = False
    for info, *_ in plan:
        if simulated(info) and info.name not in unavailable:
            is_sim = True
            notes.append(f"{info.title}: {info.note}")
    return SessionInfo(
        session=session,
        requested=requests,
        used=used,
        provider_options={info.provider: opts for info, opts, *_ in plan if info.name not in unavailable},
        assignment=assignment,
        unavailable=unavailable,
        no_nodes=no_nodes,
        cpu_fallback_ops=cpu_ops,
        allow_fallback=allow_fallback,
        create_ms=create_ms,
        notes=notes,
        simulated=is_sim,
    )


def _prepare_paths(opts: Mapping[str, str]) -> None:
    """Create cache folders named in provider options (TensorRT engine/timing caches)."""
    for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
        if opts.get(key):
            try:
                Path(opts[key]).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BadInput(f"provider option {key}={opts[key]}: cannot create the folder ({exc.strerror})") from None


def _assignment_by_profiling(model, plan, threads, batch, batch_dims, config) -> NodeAssignment:
    """Older onnxruntime without recorded assignment: run once with the profiler and read the kernels' providers."""
    with tempfile.TemporaryDirectory(prefix="mnetctl-assign-") as tmp:
        so = _session_options(threads, batch, batch_dims, os.path.join(tmp, "assign"), config)
        sess = _new_session(source_of(model), so, _add_providers(so, plan))
        sess.run(None, random_feeds(sess, batch or 1))
        return assignment_from_profile(profile_events(sess))


def op_profile(
    model: Path | str | bytes,
    eps: Sequence[str | EPRequest] | str | None,
    feeds: Mapping[str, Any],
    runs: int = 20,
    threads: int | None = None,
    batch: int | None = 1,
    allow_fallback: bool = True,
    top: int = 15,
) -> list[dict[str, Any]]:
    """Slowest nodes from onnxruntime's profiler over `runs` runs (a separate session, so timing is unaffected)."""
    with tempfile.TemporaryDirectory(prefix="mnetctl-prof-") as tmp:
        info = create_session(model, eps, threads=threads, batch=batch, allow_fallback=allow_fallback, profile_prefix=os.path.join(tmp, "ops"))
        sess = info.session
        for _ in range(max(1, runs)):
            sess.run(None, dict(feeds))
        events = profile_events(sess)
    return summarize_op_events(events, runs=max(1, runs), top=top)
