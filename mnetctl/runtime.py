"""ONNX Runtime sessions and the execution-provider registry (the one module that creates sessions).

The registry is data: each short name (cpu, cuda, tensorrt, openvino, nnapi, qnn, xnnpack, coreml, dml) maps to
the ONNX Runtime provider name, its default provider options, how it is obtained (built into a particular
onnxruntime package, or a plugin EP library registered at run time) and an install hint.

Nothing falls back silently: `create_session` fails with `EnvironmentMissing` (exit 3) when a requested provider
cannot load or runs none of the model's nodes, unless `allow_fallback` is set, in which case the returned
`SessionInfo.fallback` says what fell back. After creation it reports how many nodes each provider runs.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import BadInput, EnvironmentMissing

CPU_PROVIDER = "CPUExecutionProvider"

# Session config keys (onnxruntime_session_options_config_keys.h).
CFG_RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"
CFG_DISABLE_CPU_FALLBACK = "session.disable_cpu_ep_fallback"


@dataclass(frozen=True)
class EPInfo:
    """One execution provider as data."""

    name: str  # short name used on the command line and in profiles
    provider: str  # ONNX Runtime provider name
    title: str  # human name used in messages
    hardware: str  # what it runs on
    kind: str  # "builtin": compiled into an onnxruntime package; "plugin": a library registered at run time
    packages: tuple[str, ...]  # pip packages (or builds) that provide it
    install_hint: str
    default_options: Mapping[str, str] = field(default_factory=dict)
    plugin_modules: tuple[str, ...] = ()  # Python modules exposing get_library_path() for the plugin library
    bool_values: tuple[str, str] = ("True", "False")  # how this provider spells booleans in its options
    threads_option: str | None = None  # provider option that takes the thread count, if any
    session_config: Mapping[str, str] = field(default_factory=dict)  # session config entries it needs
    disable_mem_pattern: bool = False
    note: str = ""


EP_REGISTRY: dict[str, EPInfo] = {
    info.name: info
    for info in (
        EPInfo(
            name="cpu",
            provider=CPU_PROVIDER,
            title="CPU",
            hardware="any CPU (MLAS kernels)",
            kind="builtin",
            packages=("onnxruntime",),
            install_hint="pip install onnxruntime",
        ),
        EPInfo(
            name="cuda",
            provider="CUDAExecutionProvider",
            title="CUDA",
            hardware="NVIDIA GPU",
            kind="builtin",
            packages=("onnxruntime-gpu",),
            install_hint=(
                "pip install onnxruntime-gpu (replaces onnxruntime; needs an NVIDIA driver, CUDA 12 and cuDNN 9); "
                "on Jetson install the JetPack onnxruntime-gpu wheel"
            ),
            default_options={"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": "1"},
        ),
        EPInfo(
            name="tensorrt",
            provider="TensorrtExecutionProvider",
            title="TensorRT",
            hardware="NVIDIA GPU (TensorRT engines)",
            kind="builtin",
            packages=("onnxruntime-gpu", "tensorrt"),
            install_hint=(
                "pip install onnxruntime-gpu tensorrt on a host with an NVIDIA GPU and driver "
                "(on Jetson: JetPack ships TensorRT; use its onnxruntime-gpu wheel)"
            ),
            default_options={"device_id": "0", "trt_max_workspace_size": str(1 << 30)},
            note="first session builds the TensorRT engine (minutes on Jetson): enable trt_engine_cache_enable",
        ),
        EPInfo(
            name="openvino",
            provider="OpenVINOExecutionProvider",
            title="OpenVINO",
            hardware="Intel CPU/GPU/NPU (the CPU plugin also runs on AMD x86-64)",
            kind="builtin",
            packages=("onnxruntime-openvino", "onnxruntime-ep-openvino"),
            install_hint=(
                "pip install onnxruntime-openvino in its own virtual environment (it replaces the onnxruntime module; "
                "models must have IR <= 13, e.g. mnetctl build --opset 21 or lower)"
            ),
            default_options={"device_type": "CPU"},
            plugin_modules=("onnxruntime_ep_openvino",),
            note="the plugin package onnxruntime-ep-openvino finds devices on Intel hardware only",
        ),
        EPInfo(
            name="nnapi",
            provider="NnapiExecutionProvider",
            title="NNAPI",
            hardware="Android NPU/GPU/DSP through the Android Neural Networks API",
            kind="builtin",
            packages=("onnxruntime-android",),
            install_hint="NNAPI exists only in the Android onnxruntime builds (onnxruntime-android AAR); run on the phone",
            default_options={"NNAPI_FLAG_USE_FP16": "0"},
            bool_values=("1", "0"),
            note="NNAPI is deprecated from Android 15; flags are NNAPI_FLAG_USE_FP16, _USE_NCHW, _CPU_DISABLED, _CPU_ONLY",
        ),
        EPInfo(
            name="qnn",
            provider="QNNExecutionProvider",
            title="QNN",
            hardware="Qualcomm Hexagon NPU (HTP), Adreno GPU or CPU",
            kind="plugin",
            packages=("onnxruntime-qnn",),
            install_hint=(
                "pip install onnxruntime-qnn (2.x: a plugin EP library registered at run time next to the standard "
                "onnxruntime package)"
            ),
            default_options={"backend_type": "htp"},
            plugin_modules=("onnxruntime_qnn",),
            bool_values=("1", "0"),
            note="on x86-64 the HTP backend is a simulator: partitioning and op support are real, latency is not",
        ),
        EPInfo(
            name="xnnpack",
            provider="XnnpackExecutionProvider",
            title="XNNPACK",
            hardware="Arm/x86 CPU (XNNPACK kernels)",
            kind="builtin",
            packages=("onnxruntime-android", "onnxruntime (custom build --use_xnnpack)"),
            install_hint="XNNPACK is in the Android/iOS onnxruntime packages or a build with --use_xnnpack",
            threads_option="intra_op_num_threads",
        ),
        EPInfo(
            name="coreml",
            provider="CoreMLExecutionProvider",
            title="CoreML",
            hardware="Apple Neural Engine/GPU/CPU",
            kind="builtin",
            packages=("onnxruntime (macOS/iOS)",),
            install_hint="CoreML is in the macOS and iOS onnxruntime packages: pip install onnxruntime on a Mac",
            default_options={"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"},
            bool_values=("1", "0"),
        ),
        EPInfo(
            name="dml",
            provider="DmlExecutionProvider",
            title="DirectML",
            hardware="any DirectX 12 GPU on Windows",
            kind="builtin",
            packages=("onnxruntime-directml",),
            install_hint="pip install onnxruntime-directml on Windows",
            default_options={"device_id": "0"},
            disable_mem_pattern=True,
        ),
    )
}


def resolve_ep(name: str) -> EPInfo:
    """Short name (case-insensitive) or ONNX Runtime provider name -> registry entry."""
    key = name.strip().lower()
    if key in EP_REGISTRY:
        return EP_REGISTRY[key]
    for info in EP_REGISTRY.values():
        if info.provider.lower() == key or info.provider.lower() == key + "executionprovider":
            return info
    known = ", ".join(EP_REGISTRY)
    raise BadInput(f"unknown execution provider {name!r}", f"use one of: {known}")


def parse_ep_list(text: str | Sequence[str]) -> list[str]:
    """'openvino,cpu' -> ['openvino', 'cpu'] (validated, duplicates removed, order kept)."""
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    names: list[str] = []
    for item in items:
        if not item.strip():
            continue
        short = resolve_ep(item).name
        if short not in names:
            names.append(short)
    if not names:
        raise BadInput("--ep needs at least one execution provider", f"use one of: {', '.join(EP_REGISTRY)}")
    return names


def option_value(info: EPInfo, value: Any) -> str:
    """Provider options are strings; booleans are spelled the way this provider parses them."""
    if isinstance(value, bool):
        return info.bool_values[0] if value else info.bool_values[1]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def provider_options(name: str, overrides: Mapping[str, Any] | None = None, threads: int | None = None) -> dict[str, str]:
    """Default options of `name` merged with `overrides`, all as strings; the thread count where the EP takes one."""
    info = resolve_ep(name)
    opts = {k: option_value(info, v) for k, v in info.default_options.items()}
    for key, value in (overrides or {}).items():
        opts[str(key)] = option_value(info, value)
    if threads and info.threads_option and info.threads_option not in opts:
        opts[info.threads_option] = str(int(threads))
    return dict(sorted(opts.items()))


@dataclass
class EPRequest:
    """One requested provider with its options (from --ep, a profile or the API)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> EPInfo:
        return resolve_ep(self.name)


def as_requests(eps: Sequence[str | EPRequest | tuple[str, Mapping[str, Any]]] | str | None) -> list[EPRequest]:
    if eps is None:
        return [EPRequest("cpu")]
    if isinstance(eps, str):
        return [EPRequest(n) for n in parse_ep_list(eps)]
    out: list[EPRequest] = []
    for item in eps:
        if isinstance(item, EPRequest):
            req = EPRequest(resolve_ep(item.name).name, dict(item.options))
        elif isinstance(item, tuple):
            req = EPRequest(resolve_ep(item[0]).name, dict(item[1]))
        else:
            req = EPRequest(resolve_ep(str(item)).name)
        if all(r.name != req.name for r in out):
            out.append(req)
    if not out:
        raise BadInput("no execution provider requested", f"use one of: {', '.join(EP_REGISTRY)}")
    return out


# --------------------------------------------------------------------------------------------------------------
# Availability


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise EnvironmentMissing("onnxruntime is not installed", "pip install onnxruntime") from exc
    return ort


_REGISTERED_PLUGINS: dict[str, str] = {}  # provider name -> library path registered in this process


def _plugin_library(info: EPInfo) -> tuple[str | None, str]:
    """(library path, python module) of the first importable plugin package of `info`."""
    import importlib

    for module_name in info.plugin_modules:
        try:
            module = importlib.import_module(module_name)
        except Exception:
            continue
        getter = getattr(module, "get_library_path", None)
        if getter is None:
            continue
        try:
            path = getter()
        except Exception:
            continue
        if path and os.path.exists(path):
            return str(path), module_name
    return None, ""


def plugin_devices(info: EPInfo) -> tuple[list[Any], str]:
    """Register the plugin library of `info` (once per process) and return its OrtEpDevice list and the module."""
    ort = _ort()
    if not hasattr(ort, "get_ep_devices"):
        return [], ""
    devices = [d for d in ort.get_ep_devices() if d.ep_name == info.provider]
    if devices:  # already registered (by us, or bundled with this onnxruntime build)
        return devices, _REGISTERED_PLUGINS.get(info.provider, "onnxruntime")
    if not info.plugin_modules or not hasattr(ort, "register_execution_provider_library"):
        return [], ""
    lib, module_name = _plugin_library(info)
    if lib is None:
        return [], ""
    try:
        ort.register_execution_provider_library(info.provider, lib)
    except Exception as exc:
        if "already registered" not in str(exc).lower():
            raise EnvironmentMissing(
                f"{info.title} plugin library {lib} failed to register: {_first_line(exc)}", info.install_hint
            ) from None
    _REGISTERED_PLUGINS[info.provider] = module_name
    return [d for d in ort.get_ep_devices() if d.ep_name == info.provider], module_name


@dataclass
class EPStatus:
    name: str
    provider: str
    title: str
    available: bool
    how: str  # "built into onnxruntime X" | "plugin <module>" | ""
    detail: str
    hint: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ep_status(name: str) -> EPStatus:
    """Whether `name` can be used in this Python environment (no session is created)."""
    ort = _ort()
    info = resolve_ep(name)
    builtin = ort.get_available_providers()
    if info.provider in builtin:
        return EPStatus(info.name, info.provider, info.title, True, f"built into onnxruntime {ort.__version__}", "", info.install_hint)
    devices, module = plugin_devices(info)
    if devices:
        kinds = sorted({_device_kind(d) for d in devices})
        return EPStatus(
            info.name, info.provider, info.title, True, f"plugin library ({module})", f"devices: {', '.join(kinds)}", info.install_hint
        )
    lib, module = _plugin_library(info)
    if lib:
        return EPStatus(info.name, info.provider, info.title, False, f"plugin library ({module})", "registered but found no device on this host", info.install_hint)
    return EPStatus(info.name, info.provider, info.title, False, "", f"not in this onnxruntime {ort.__version__} ({ort.get_device()})", info.install_hint)


def _device_kind(dev: Any) -> str:
    try:
        kind = str(dev.device.type).rsplit(".", 1)[-1]
        vendor = getattr(dev.device, "vendor", "") or ""
        return f"{kind}{' ' + vendor if vendor else ''}"
    except Exception:
        return "device"


def onnxruntime_info() -> dict[str, Any]:
    ort = _ort()
    from importlib import metadata

    packages = {}
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-qnn", "onnxruntime-ep-openvino"):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "version": ort.__version__,
        "device": ort.get_device(),
        "builtin_providers": list(ort.get_available_providers()),
        "packages": packages,
        "assignment_api": hasattr(ort.InferenceSession, "get_provider_graph_assignment_info"),
        "plugin_api": hasattr(ort, "register_execution_provider_library"),
    }


def simulated(info: EPInfo) -> bool:
    """QNN's HTP backend on an x86-64 host is Qualcomm's simulator."""
    return info.name == "qnn" and platform.machine().lower() in ("x86_64", "amd64")


# --------------------------------------------------------------------------------------------------------------
# Sessions


def ort_log_level() -> int:
    """Severity for onnxruntime's own log: its error lines repeat what mnetctl reports as one clean error
    (exit 2 or 3), so they are shown only with MNETCTL_DEBUG=1."""
    return 3 if os.environ.get("MNETCTL_DEBUG", "") not in ("", "0", "false", "no") else 4


THREADS_PER_CORE_LIMIT = 4  # more intra-op threads than this per core only makes them starve each other


def check_threads(threads: int) -> int:
    """A usable intra-op thread count, or BadInput: ORT takes minutes to start (and then crawls) with
    thousands of spinning threads, so an absurd --threads is refused rather than left to hang."""
    n = int(threads)
    if n < 1:
        raise BadInput(f"--threads must be >= 1, got {threads}")
    cores = os.cpu_count() or 1
    limit = max(16, THREADS_PER_CORE_LIMIT * cores)
    if n > limit:
        raise BadInput(f"--threads {n} is more than this host can use (at most {limit} for {cores} cores)",
                       "lower --threads, or leave it out for onnxruntime's default")
    return n


def cpu_session(model: Path | str | bytes, threads: int | None = None):
    """A plain CPU execution-provider session (used by eval/predict/verification)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = check_threads(threads)
    opts.log_severity_level = ort_log_level()
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


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


@dataclass
class SessionInfo:
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
        return {
            "allowed": self.allow_fallback,
            "unavailable": list(self.unavailable),
            "no_nodes": list(self.no_nodes),
            "cpu_nodes": int(self.assignment.counts.get(CPU_PROVIDER, 0)),
            "cpu_fallback_ops": dict(self.cpu_fallback_ops),
            "fell_back": bool(self.unavailable or self.no_nodes or self.cpu_fallback_ops),
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[-1] if text else type(exc).__name__
    return line if len(line) < 300 else line[:297] + "..."


def _dynamic_dims(model: Path | str | bytes) -> list[str]:
    """Names of symbolic dimensions on the first axis of the graph inputs (the batch axis)."""
    import onnx

    from .modelio import load_onnx

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


def _session_options(threads: int | None, batch: int | None, batch_dims: Sequence[str], profile_prefix: str | None = None):
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = ort_log_level()
    if threads:
        so.intra_op_num_threads = check_threads(threads)
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
        lib, _ = _plugin_library(info)
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
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        ort.InferenceSession(source, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception:
        return False
    return True


def _new_session(source, so, providers):
    ort = _ort()
    if providers is None:
        return ort.InferenceSession(source, sess_options=so)
    return ort.InferenceSession(source, sess_options=so, providers=[p for p, _ in providers], provider_options=[o for _, o in providers])


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


def _profile_events(session) -> list[dict[str, Any]]:
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


def random_feeds(session, batch: int = 1, seed: int = 0, sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Inputs of the right dtype/shape (symbolic batch -> `batch`, other symbolic dims from `sizes`)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = []
        for i, dim in enumerate(inp.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif i == 0:
                shape.append(int(batch))
            elif sizes and str(dim) in sizes:
                shape.append(int(sizes[str(dim)]))
            else:
                raise BadInput(f"model input {inp.name!r} has a free dimension {dim!r} at axis {i}", "export the model with a fixed input size")
        feeds[inp.name] = _random_tensor(rng, inp.type, tuple(shape))
    return feeds


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def bind_io(session, feeds: Mapping[str, Any]):
    """An IO binding with `feeds` bound as CPU inputs and every output bound to CPU memory, so a timed
    loop of `session.run_with_iobinding(binding)` measures the model, not input copies."""
    binding = session.io_binding()
    for name, arr in feeds.items():
        binding.bind_cpu_input(name, arr)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cpu")
    return binding


def _random_tensor(rng, ort_type: str, shape: tuple[int, ...]):
    import numpy as np

    dtype = _ORT_TYPES.get(ort_type)
    if dtype is None:
        raise BadInput(f"model input type {ort_type} is not supported by bench")
    if dtype in ("uint8",):
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dtype in ("int8", "int32", "int64"):
        return rng.integers(0, 100, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def create_session(
    model: Path | str | bytes,
    eps: Sequence[str | EPRequest] | str | None = None,
    threads: int | None = None,
    batch: int | None = 1,
    allow_fallback: bool = False,
    profile_prefix: str | None = None,
) -> SessionInfo:
    """Create a session on the requested providers (in priority order) and report node assignment.

    Raises EnvironmentMissing (exit 3) when a requested provider is unavailable, loads but takes no node, or when
    nodes land on the CPU although "cpu" was not requested; with `allow_fallback` the session is kept and the
    returned SessionInfo lists what fell back.
    """
    ort = _ort()
    requests = as_requests(eps)
    plan, unavailable = _plan(requests, allow_fallback, threads)
    batch_dims = _dynamic_dims(model) if batch else []
    cpu_requested = any(info.name == "cpu" for info, *_ in plan) or allow_fallback
    has_assignment_api = hasattr(ort.InferenceSession, "get_provider_graph_assignment_info")

    so = _session_options(threads, batch, batch_dims, profile_prefix)
    if not cpu_requested and not has_assignment_api:
        so.add_session_config_entry(CFG_DISABLE_CPU_FALLBACK, "1")
    providers = _add_providers(so, plan)
    source = model if isinstance(model, bytes) else str(model)
    t0 = time.perf_counter()
    try:
        session = _new_session(source, so, providers)
    except Exception as exc:
        msg = _first_line(exc)
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
        assignment = _assignment_by_profiling(model, plan, threads, batch, batch_dims)
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


def _assignment_by_profiling(model, plan, threads, batch, batch_dims) -> NodeAssignment:
    """Older onnxruntime without recorded assignment: run once with the profiler and read the kernels' providers."""
    ort = _ort()
    with tempfile.TemporaryDirectory(prefix="mnetctl-assign-") as tmp:
        so = _session_options(threads, batch, batch_dims, profile_prefix=os.path.join(tmp, "assign"))
        source = model if isinstance(model, bytes) else str(model)
        sess = _new_session(source, so, _add_providers(so, plan))
        sess.run(None, random_feeds(sess, batch or 1))
        return assignment_from_profile(_profile_events(sess))


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
        events = _profile_events(sess)
    return summarize_op_events(events, runs=max(1, runs), top=top)


def summarize_op_events(events: list[dict[str, Any]], runs: int, top: int = 15) -> list[dict[str, Any]]:
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
