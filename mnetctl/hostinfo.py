"""What this machine is: CPU, cores, memory, board model, accelerators (for reports and profile matching)."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def board_model() -> str:
    """The board's own name where the kernel exposes one (Raspberry Pi, Jetson, ...)."""
    return _read("/proc/device-tree/model") or _read("/sys/firmware/devicetree/base/model")


def accelerators() -> list[str]:
    """Accelerator kinds visible on this host: gpu (NVIDIA/Jetson), npu (Intel NPU, Qualcomm DSP), vpu (Movidius USB)."""
    found: set[str] = set()
    if os.path.exists("/proc/driver/nvidia/gpus") or os.path.exists("/dev/nvidia0") or os.path.exists("/etc/nv_tegra_release"):
        found.add("gpu")
    if glob.glob("/dev/accel/accel*") or os.path.exists("/dev/fastrpc-cdsp") or os.path.exists("/dev/adsprpc-smd"):
        found.add("npu")
    for vendor_file in glob.glob("/sys/bus/usb/devices/*/idVendor"):
        if _read(vendor_file).lower() == "03e7":  # Intel Movidius (Neural Compute Stick 2)
            found.add("vpu")
    return sorted(found)


def available_memory() -> int:
    """Bytes of memory available to new allocations now (psutil; sysconf as a fallback)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def host_info() -> dict[str, Any]:
    """A fresh copy of the (cached) description of this host."""
    return dict(_host_info())


@lru_cache(maxsize=1)
def _host_info() -> dict[str, Any]:
    try:
        import psutil

        cores_physical = psutil.cpu_count(logical=False)
        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # pragma: no cover - psutil is a dependency
        cores_physical, memory_gb = None, None
    return {
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": cores_physical,
        "memory_gb": memory_gb,
        "board": board_model() or None,
        "accelerators": accelerators(),
        "nvidia_smi": bool(shutil.which("nvidia-smi")),
        "python": sys.version.split()[0],
    }
