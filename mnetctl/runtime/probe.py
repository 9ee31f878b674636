"""Which execution providers this Python environment can use: built-in providers, plugin EP libraries
(found through their Python packages and registered once per process) and their devices. No session is created.
"""

from __future__ import annotations

import importlib
import os
import platform
from dataclasses import dataclass
from typing import Any

from ..errors import EnvironmentMissing, short
from .eps import EPInfo, resolve_ep
from .ort import _ort

_REGISTERED_PLUGINS: dict[str, str] = {}  # provider name -> library path registered in this process


def plugin_library(info: EPInfo) -> tuple[str | None, str]:
    """(library path, python module) of the first importable plugin package of `info`."""
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
    lib, module_name = plugin_library(info)
    if lib is None:
        return [], ""
    try:
        ort.register_execution_provider_library(info.provider, lib)
    except Exception as exc:
        if "already registered" not in str(exc).lower():
            raise EnvironmentMissing(
                f"{info.title} plugin library {lib} failed to register: {short(exc)}", info.install_hint
            ) from None
    _REGISTERED_PLUGINS[info.provider] = module_name
    return [d for d in ort.get_ep_devices() if d.ep_name == info.provider], module_name


@dataclass
class EPStatus:
    """Whether one provider can be used here, how it is provided, and the install hint."""

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
    lib, module = plugin_library(info)
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
    """Version, device, built-in providers and installed onnxruntime packages, and which newer APIs exist."""
    from importlib import metadata

    ort = _ort()

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
