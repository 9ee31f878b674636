"""What this machine is and how busy it is: CPU, cores, memory, board, accelerators, other processes' load.

The one home for host facts: reports, profile matching, sweep.json, compare and interleaved timing all read
them here. psutil (a dependency) serves counts, memory and CPU times; the CPU's name comes from
/proc/cpuinfo on Linux (psutil has none) and from `platform.processor()` elsewhere.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's name: /proc/cpuinfo's 'model name' (ARM boards: 'Hardware' / 'Model'), else platform's guess."""
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 'flags', ARM 'Features'); empty where there is none."""
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), which can be fewer than the machine has."""
    try:
        import psutil

        return len(psutil.Process().cpu_affinity()) or 1
    except Exception:  # no cpu_affinity on macOS
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def cpu_summary() -> str:
    """One line for report headers: 'NAME, N CPUs' (N = usable CPUs)."""
    return f"{cpu_model()}, {usable_cpus()} CPUs"


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


class LoadMeter:
    """CPU time other processes used, as a fraction of one core (0.5 = half a core busy on average).

    System busy time (psutil.cpu_times: all CPUs, idle and I/O wait excluded) minus this process's own
    user + system time, over wall time. The kernel counts in ticks (10 ms on Linux), so a window of a
    few milliseconds reads as 0 or a spike; over ~100 ms and more the figure is usable. None where
    psutil cannot read CPU times.
    """

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            import psutil

            times = psutil.cpu_times()
            own = psutil.Process().cpu_times()
        except Exception:  # psutil missing or CPU times unreadable here
            return None
        idle = times.idle + getattr(times, "iowait", 0.0)
        guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # already inside user/nice
        busy = sum(times) - idle - guest
        return busy, own.user + own.system, time.monotonic()

    def other_load(self) -> float | None:
        """Other processes' load since the meter started (or since the last `lap`)."""
        end = self._snapshot()
        if self._start is None or end is None:
            return None
        wall = end[2] - self._start[2]
        if wall <= 0:
            return None
        other = (end[0] - self._start[0]) - (end[1] - self._start[1])
        return round(max(0.0, other / wall), 3)

    def lap(self) -> float | None:
        """`other_load()`, then start a new window."""
        load = self.other_load()
        self._start = self._snapshot()
        return load
