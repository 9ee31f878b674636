"""The execution-provider registry as data, and the parsing of provider names and options.

Each short name (cpu, cuda, tensorrt, openvino, nnapi, qnn, xnnpack, coreml, dml) maps to the ONNX Runtime
provider name, its default provider options, how it is obtained (built into a particular onnxruntime package,
or a plugin EP library registered at run time) and an install hint. Nothing here imports onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..errors import BadInput

CPU_PROVIDER = "CPUExecutionProvider"

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
    # option key -> "bool" | "int" | "str" where the provider's options are a known, closed set (unknown keys
    # are refused); None: open-ended or version-dependent options, passed through for onnxruntime to judge
    known_options: Mapping[str, str] | None = None


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
            bool_values=("1", "0"),
            known_options={"use_arena": "bool"},  # onnxruntime ignores any other key without a word
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
        raise BadInput("eps needs at least one execution provider", f"use one of: {', '.join(EP_REGISTRY)}")
    return names


def option_value(info: EPInfo, value: Any) -> str:
    """Provider options are strings; booleans are spelled the way this provider parses them."""
    if isinstance(value, bool):
        return info.bool_values[0] if value else info.bool_values[1]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_BOOL_TEXT = {"0", "1", "true", "false"}


def check_ep_options(name: str, options: Mapping[str, Any]) -> None:
    """BadInput for an option key the provider does not have, or a value of the wrong kind, where the registry
    knows the provider's options (`EPInfo.known_options`); other providers' options pass through."""
    info = resolve_ep(name)
    known = info.known_options
    if known is None:
        return
    for key, value in options.items():
        kind = known.get(str(key))
        if kind is None:
            raise BadInput(f"ep_options for {info.name}: unknown option {str(key)!r}",
                           f"{info.title} options: {', '.join(sorted(known)) or 'none'}")
        text = str(value).strip().lower()
        ok = {"bool": isinstance(value, bool) or text in _BOOL_TEXT,
              "int": not isinstance(value, bool) and text.lstrip("-").isdigit()}.get(kind, True)
        if not ok:
            raise BadInput(f"ep_options for {info.name}: {key} must be {'0 or 1' if kind == 'bool' else 'an integer'}, "
                           f"got {value!r}")


def provider_options(name: str, overrides: Mapping[str, Any] | None = None, threads: int | None = None) -> dict[str, str]:
    """Default options of `name` merged with `overrides`, all as strings; the thread count where the EP takes one."""
    info = resolve_ep(name)
    check_ep_options(info.name, overrides or {})
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
    """Names, requests or (name, options) pairs -> validated requests, first of each provider kept; None -> cpu."""
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



def parse_ep_option(item: str) -> tuple[str, str, str]:
    """'openvino.device_type=GPU' -> ('openvino', 'device_type', 'GPU'), all stripped."""
    key, eq, value = item.partition("=")
    ep, dot, opt = key.partition(".")
    if not eq or not dot or not ep.strip() or not opt.strip():
        raise BadInput(f"ep_options item {item!r} must look like EP.KEY=VALUE", "e.g. openvino.device_type=CPU")
    return ep.strip(), opt.strip(), value.strip()


def parse_ep_options(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """['openvino.device_type=GPU', ...] -> {'openvino': {'device_type': 'GPU'}} (a later KEY wins)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        ep, opt, value = parse_ep_option(item)
        out.setdefault(ep, {})[opt] = value
    return out
