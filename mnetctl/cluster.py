"""A fleet's processes: `mnetctl worker` and `mnetctl cluster up/down` wrap `ray start` (the Ray CLI; this module
does not import ray, `runners/ray.py` does).

A worker node advertises one custom resource per device profile it serves, `mnetctl.device.<profile>: 1`, after
checking that this host is that device (`host_matches_profile`) and that the profile's execution providers load
here (the `doctor` facts, in the profile's Python environment when it names one). It joins only the address it
is given. Ray has no authentication: a cluster must stay on a trusted network, its nodes bound to a private
interface (`--node-ip-address`); see docs/fleet.md.

`cluster up --local` starts a head and one worker node per device on this machine (all bound to 127.0.0.1) and
records the process ids it started in a state file; `cluster down` stops exactly those processes (and the
processes they started), by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .errors import BadInput, EnvironmentMissing

RESOURCE_PREFIX = "mnetctl.device."
DEFAULT_PORT = 6379
LOCAL_IP = "127.0.0.1"
LOCAL_OBJECT_STORE_MB = 256  # per node of a local cluster (Ray's default is 30% of memory, per node)


def device_resource(profile_name: str) -> str:
    return RESOURCE_PREFIX + profile_name


def ray_cli() -> str:
    """The `ray` command of this Python (the `cluster` extra), else EnvironmentMissing."""
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise EnvironmentMissing("ray is not installed in this environment", "pip install 'mnetctl[cluster]'")
    return found


def child_env() -> dict[str, str]:
    """The environment for `ray start`: its worker processes import this mnetctl (a source checkout is put on
    PYTHONPATH), and Ray sends no usage statistics."""
    from .envs import source_checkout

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    root = source_checkout()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    return env


def check_address(address: str, flag: str = "--address") -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"{flag} {address!r} must be HOST:PORT", "e.g. 192.168.1.10:6379")
    return address


def check_devices(devices: list[str], emulate: bool = False, facts: dict | None = None) -> list[dict[str, Any]]:
    """Per device: profile loaded, whether this host is that device and whether its EPs load here (`facts`: the
    `doctor` facts for the profiles, as `stages.run_facts` returns them). Raises EnvironmentMissing, saying why,
    for a device this host is not (unless `emulate`) or whose EPs do not load."""
    from .profiles import host_matches_profile, load_profile

    if not devices:
        raise BadInput("--device: name at least one device profile")
    rows = []
    verdicts = {p["name"]: p for p in (facts or {}).get("profiles", [])}
    for name in devices:
        prof = load_profile(name)
        matches, reasons = host_matches_profile(prof)
        if not matches and not emulate:
            raise EnvironmentMissing(f"--device {name}: this host is not that device ({'; '.join(reasons)})",
                                     "run the worker on the board itself, or pass --emulate to serve it from this "
                                     "host (latencies are then this host's)")
        v = verdicts.get(prof.name)
        if v is not None and v["missing"]:
            raise EnvironmentMissing(f"--device {name}: execution providers {', '.join(v['missing'])} do not load here"
                                     + (f" ({v['error']})" if v.get("error") else ""),
                                     "mnetctl doctor shows what loads; an EP build may need: mnetctl env create KIND")
        rows.append({"name": prof.name, "profile": prof.model_dump(mode="json"), "matches": matches,
                     "reasons": reasons, "verdict": v["verdict"] if v else None, "env": prof.env})
    return rows


def start_args(devices: list[str], address: str | None = None, port: int = DEFAULT_PORT, node_ip: str | None = None,
               num_cpus: int | None = None, object_store_mb: int | None = None, temp_dir: str | None = None) -> list[str]:
    """`ray start --block` for a worker joining `address`, or for a head (address None) listening on `port`."""
    args = [ray_cli(), "start", "--block", "--disable-usage-stats"]
    if address is None:
        args += ["--head", f"--port={port}", "--include-dashboard=false"]
    else:
        args += [f"--address={check_address(address)}"]
    if node_ip:
        args += [f"--node-ip-address={node_ip}"]
    if num_cpus is not None:
        args += [f"--num-cpus={num_cpus}"]
    if object_store_mb is not None:
        args += [f"--object-store-memory={object_store_mb * 2**20}"]
    if temp_dir:
        args += [f"--temp-dir={temp_dir}"]
    if devices:
        args += ["--resources", json.dumps({device_resource(d): 1 for d in devices})]
    return args


def run_worker(args: list[str]) -> int:
    """Run `ray start --block` in the foreground until it ends (Ctrl-C stops the node)."""
    proc = subprocess.Popen(args, env=child_env())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


# ------------------------------------------------------------------------------------------------
# A local cluster: head + one worker node per device on this machine


def state_path() -> Path:
    env = os.environ.get("MNETCTL_CLUSTER_STATE")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mnetctl" / "cluster" / "local.json"


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    path = path or state_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BadInput(f"cluster state {path}: unreadable ({exc})", "remove it once no local cluster runs") from None


def _alive(entry: dict[str, Any]) -> bool:
    import psutil

    try:
        return psutil.Process(entry["pid"]).create_time() == entry["created"]
    except psutil.Error:
        return False


def start_local(devices: list[str], port: int = DEFAULT_PORT, num_cpus: int = 1, emulate: bool = True,
                state: Path | None = None) -> dict[str, Any]:
    """Start a head and one worker node per device on this machine, bound to 127.0.0.1; the state (address, the
    pids started, their logs) is written before this returns. The nodes may still be registering."""
    import psutil

    from .fsutil import write_text

    state = state or state_path()
    old = read_state(state)
    if old and any(_alive(e) for e in old.get("processes", [])):
        raise BadInput(f"a local cluster started by mnetctl is already up at {old['address']}",
                       "stop it first: mnetctl cluster down")
    check_devices(devices, emulate=emulate)
    logs = state.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    address = f"{LOCAL_IP}:{port}"
    if port_open(LOCAL_IP, port, 1.0):
        raise BadInput(f"--port {port}: something already listens on {address}", "choose another --port")
    doc: dict[str, Any] = {"address": address, "devices": devices, "processes": [], "logs": str(logs)}
    plan = [("head", [], None)] + [(f"worker-{d}", [d], address) for d in devices]
    try:
        for role, devs, join in plan:
            args = start_args(devs, address=join, port=port, node_ip=LOCAL_IP, num_cpus=num_cpus,
                              object_store_mb=LOCAL_OBJECT_STORE_MB)
            with open(logs / f"{role}.log", "wb") as log:
                proc = subprocess.Popen(args, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)  # outlives this command
            doc["processes"].append({"role": role, "devices": devs, "pid": proc.pid,
                                     "created": psutil.Process(proc.pid).create_time()})
            write_text(state, json.dumps(doc, indent=1))
            _wait_ready(role, proc, logs / f"{role}.log")
    except BaseException:
        stop_local(state)
        raise
    return doc


READY_LINE = "will now block forever"  # what `ray start --block` prints once its node has started


def _wait_ready(role: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    """Wait until the node `proc` starts has joined (its log says so); nodes start one after another, since Ray
    gives a starting node only 30 s to register and a busy small machine can take that long for several."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if READY_LINE in text:
            return
        if proc.poll() is not None:
            tail = " | ".join(line for line in text.strip().splitlines()[-2:])
            raise EnvironmentMissing(f"the Ray {role} node did not start (exit code {proc.returncode}): {tail}",
                                     f"see {log}; another cluster may hold the port (--port)")
        time.sleep(0.2)
    raise EnvironmentMissing(f"the Ray {role} node did not start within {timeout_s:g} s", f"see {log}")


def port_open(host: str, port: int, timeout_s: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def stop_local(state: Path | None = None, timeout_s: float = 20.0) -> list[int]:
    """Stop the processes `start_local` recorded, workers first, and the processes they started; by pid only,
    each checked to be the process recorded (same start time). Returns the pids stopped."""
    import psutil

    state = state or state_path()
    doc = read_state(state)
    if not doc:
        return []
    stopped: list[int] = []
    for entry in reversed(doc.get("processes", [])):
        if not _alive(entry):
            continue
        root = psutil.Process(entry["pid"])
        tree = [root] + root.children(recursive=True)
        root.send_signal(signal.SIGTERM)  # `ray start --block` stops the node's processes on SIGTERM
        _, survivors = psutil.wait_procs(tree, timeout=timeout_s)
        for p in survivors:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(survivors, timeout=5)
        stopped += [p.pid for p in tree]
    state.unlink(missing_ok=True)
    return stopped
