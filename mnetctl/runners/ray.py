"""The cluster runner: stages as Ray tasks on a fleet of nodes (the one module that imports ray).

Build, quantize and eval run on any node with a free CPU, spread over the nodes (Ray retries them elsewhere when
a node dies). A device
stage (bench, bench_group, bench_report, facts) runs on a node holding the device's resource
`mnetctl.device.<profile>` (advertised by `mnetctl worker`); the task takes the resource (count 1) and all the
node's CPUs, so two benches never overlap on one device and no other task shares the node while it is timed.
Devices whose nodes share a machine (the same node IP, as in `mnetctl cluster up --local`) are benched one at a
time. When a device stage's node or worker dies, it is retried on another node with that device; when none is
left it fails with `StageFailed`, naming each node tried and why.

Files travel as bytes through Ray's object store: the model (and images) a stage reads are put there by the
driver and written to a temporary folder on the node; a model a stage writes comes back as bytes and is stored in
the driver's cache. Results are the stages' plain data, plus `where` (node id, host) for device stages. Nothing
needs a path both sides see.
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading
from pathlib import Path
from typing import Any

from .. import __version__
from ..cluster import RESOURCE_PREFIX, check_address, device_resource
from ..errors import EXIT_INTERNAL, BadInput, EnvironmentMissing, GateFailed, MnetctlError, StageFailed, short

os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # the driver's share of Ray's C++ warnings stays quiet
try:
    import ray
    from ray import exceptions as rex
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError:
    raise EnvironmentMissing("a cluster needs Ray, which is not installed here", "pip install 'mnetctl[cluster]'") from None
from ..stages import DEVICE_STAGES

NAMESPACE = "mnetctl"
MAX_SHIPPED_BYTES = 2 << 30  # the most a stage's input files may total
# a node or worker lost under a task, or the task never placed on its node: the device stage is tried elsewhere
_LOST = (rex.WorkerCrashedError, rex.NodeDiedError, rex.RaySystemError, rex.ObjectLostError, rex.LocalRayletDiedError,
         rex.TaskUnschedulableError, rex.OutOfMemoryError)
_KINDS = {"BadInput": BadInput, "EnvironmentMissing": EnvironmentMissing, "GateFailed": GateFailed}


def connect(address: str, node_ip: str | None = None) -> None:
    """Join the Ray cluster at `address` (HOST:PORT) as a driver; never starts a cluster of its own."""
    if ray.is_initialized():
        return
    check_address(address, "--cluster")
    host, port = address.rsplit(":", 1)
    from ..cluster import port_open

    if not port_open(host, int(port)):  # ray.init would wait for minutes
        raise EnvironmentMissing(f"cluster {address}: nothing answers there",
                                 "start one: mnetctl cluster up --local DEVICES, or check the head's address")
    if node_ip is None and host in ("127.0.0.1", "localhost"):
        node_ip = "127.0.0.1"  # a local cluster: Ray need not look for this machine's outward address
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True, _node_ip_address=node_ip)
    except ConnectionError as exc:
        raise EnvironmentMissing(f"cluster {address}: cannot connect ({short(exc)})",
                                 "start one: mnetctl cluster up --local DEVICES, or check the head's address") from None


def disconnect() -> None:
    if ray.is_initialized():
        ray.shutdown()


def wait_for_nodes(count: int, timeout_s: float = 60.0) -> list[dict]:
    """Block until `count` nodes are alive (or raise EnvironmentMissing), then return them."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        alive = alive_nodes()
        if len(alive) >= count:
            return alive
        if time.monotonic() > deadline:
            raise EnvironmentMissing(f"only {len(alive)} of {count} cluster nodes came up within {timeout_s:g} s")
        time.sleep(0.3)


def alive_nodes() -> list[dict]:
    """Alive nodes: node id, IP, CPUs, the devices they serve."""
    rows = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        rows.append({"node": n["NodeID"], "ip": n.get("NodeManagerAddress"), "cpus": int(res.get("CPU", 0)),
                     "devices": sorted(k[len(RESOURCE_PREFIX):] for k in res if k.startswith(RESOURCE_PREFIX)),
                     "head": "node:__internal_head__" in res})
    return rows


# ------------------------------------------------------------------------------------------------
# On the node


@ray.remote(max_retries=0)
def _stage_task(stage: str, inputs: dict[str, Any], files: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    """Run one stage here: shipped files written to a temporary folder, the stage's written models read back."""
    from .local import LocalRunner

    doc: dict[str, Any] = {"version": __version__, "node": ray.get_runtime_context().get_node_id(),
                           "host": platform.node()}
    with tempfile.TemporaryDirectory(prefix="mnetctl-stage-") as tmp:
        root = Path(tmp)
        contents = dict(zip(files, ray.get(list(files.values())))) if files else {}
        for token, data in contents.items():
            path = root / token
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        local = _localize(inputs, root)
        for key in outputs:
            local[key] = str(root / "out" / Path(inputs[key]).name)
            Path(local[key]).parent.mkdir(parents=True, exist_ok=True)
        try:
            doc["result"] = LocalRunner().run(stage, local)
            doc["artifacts"] = {key: Path(local[key]).read_bytes() for key in outputs}
        except MnetctlError as exc:
            doc["error"] = {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                            "exit_code": exc.exit_code}
        except Exception as exc:  # a bug or a runtime's failure on the node
            doc["error"] = {"kind": "internal", "message": f"{type(exc).__name__}: {short(exc)}",
                            "exit_code": EXIT_INTERNAL}
    return doc


def _localize(inputs: dict[str, Any], root: Path) -> dict[str, Any]:
    """Inputs with each shipped file's driver path replaced by its copy under `root` (tokens as `_pack` made them)."""
    out = dict(inputs)
    if "model" in out:
        out["model"] = str(root / "model" / Path(out["model"]).name)
    if "models" in out:
        out["models"] = [str(root / "models" / str(i) / Path(m).name) for i, m in enumerate(out["models"])]
    if "samples" in out:
        out["samples"] = [[str(root / "samples" / str(i) / Path(p).name), label] for i, (p, label) in enumerate(out["samples"])]
    if out.get("calib"):
        out["calib"] = str(root / "calib")
    return out


# ------------------------------------------------------------------------------------------------
# On the driver


class RayRunner:
    """Runs stages on the cluster this process is connected to (`connect`)."""

    name = "ray"

    def __init__(self, max_parallel: int = 16):
        self._lock = threading.Lock()
        self._inflight: set = set()
        self._turn: dict[str, int] = {}
        self._machine_locks: dict[str, threading.Lock] = {}
        self._objects: dict[tuple, Any] = {}  # (path, size, mtime) -> object ref: each file put once
        self._cancelled = False
        self.parallel = max(1, min(max_parallel, sum(n["cpus"] for n in alive_nodes())))

    # -- what the sweep asks --------------------------------------------------------------------

    def bench_host(self, profile: dict[str, Any]) -> dict[str, Any]:
        """What stands for the host in a bench's cache key: the device, whichever of its nodes benches it."""
        return {"cluster_device": profile["name"]}

    def check_devices(self, names: list[str]) -> None:
        """EnvironmentMissing unless every device is served by an alive node."""
        served = {d for n in alive_nodes() for d in n["devices"]}
        missing = [d for d in names if d not in served]
        if missing:
            raise EnvironmentMissing(f"device: no node of the cluster serves {', '.join(missing)}"
                                     f" (served: {', '.join(sorted(served)) or 'none'})",
                                     "on a board: mnetctl worker --address HEAD:PORT --device " + missing[0])

    def run(self, stage: str, inputs: dict[str, Any]) -> dict[str, Any]:
        from ..stages import STAGES

        outputs = ["out"] if stage in STAGES and STAGES[stage].artifact else []
        files = self._pack(inputs)
        if stage in DEVICE_STAGES:
            return self._run_on_device(stage, inputs, files, outputs)
        # SPREAD: the variants' stages go round the nodes rather than filling the first one
        task = _stage_task.options(num_cpus=1, max_retries=2, retry_exceptions=False, scheduling_strategy="SPREAD")
        doc = self._wait(task.remote(stage, inputs, files, outputs))
        result = self._finish(doc, inputs, outputs)
        result["where"] = {"node": doc["node"], "host": doc["host"]}
        return result

    def cancel(self) -> None:
        """Cancel every task in flight (Ctrl-C of the driver); later `run`s raise KeyboardInterrupt."""
        with self._lock:
            self._cancelled = True
            refs = list(self._inflight)
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished or its node gone
                pass

    # -- internals ------------------------------------------------------------------------------

    def _wait(self, ref):
        with self._lock:
            if self._cancelled:
                raise KeyboardInterrupt
            self._inflight.add(ref)
        try:
            return ray.get(ref)
        except KeyboardInterrupt:
            self.cancel()
            raise
        except rex.TaskCancelledError:
            raise KeyboardInterrupt from None
        finally:
            with self._lock:
                self._inflight.discard(ref)

    def _finish(self, doc: dict[str, Any], inputs: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
        if doc.get("version") != __version__:
            raise EnvironmentMissing(f"cluster node {doc.get('host')} runs mnetctl {doc.get('version')}, "
                                     f"this driver {__version__}", "install the same mnetctl on every node")
        if "error" in doc:
            e = doc["error"]
            exc = _KINDS.get(e["kind"], MnetctlError)(f"{e['message']} (on node {doc['host']})", e.get("hint"))
            if exc.__class__ is MnetctlError:
                exc.exit_code = int(e.get("exit_code", EXIT_INTERNAL))
            raise exc
        from ..fsutil import write_bytes

        result = doc["result"]
        for key in outputs:
            write_bytes(inputs[key], doc["artifacts"][key])
            if result.get("model") is not None:
                result["model"] = inputs[key]  # the model's path on the driver, not on the node
        return result

    def _put(self, path: str) -> Any:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            ref = self._objects.get(key)
        if ref is None:
            ref = ray.put(Path(path).read_bytes())
            with self._lock:
                self._objects[key] = ref
        return ref

    def _pack(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """token -> object ref of every file the stage reads (the tokens `_localize` resolves on the node)."""
        files: dict[str, Any] = {}
        if "model" in inputs:
            files[f"model/{Path(inputs['model']).name}"] = inputs["model"]
        for i, m in enumerate(inputs.get("models") or []):
            files[f"models/{i}/{Path(m).name}"] = m
        for i, (p, _) in enumerate(inputs.get("samples") or []):
            files[f"samples/{i}/{Path(p).name}"] = p
        if inputs.get("calib"):
            root = Path(inputs["calib"])
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    files[f"calib/{p.relative_to(root).as_posix()}"] = str(p)
        total = sum(os.stat(p).st_size for p in files.values())
        if total > MAX_SHIPPED_BYTES:
            raise BadInput(f"data: a stage would ship {total / 2**30:.1f} GiB to a node (limit "
                           f"{MAX_SHIPPED_BYTES / 2**30:.0f} GiB)", "use fewer images (--limit)")
        return {token: self._put(p) for token, p in files.items()}

    def _candidates(self, device: str, tried: set[str]) -> list[dict]:
        return [n for n in alive_nodes() if device in n["devices"] and n["node"] not in tried]

    def _run_on_device(self, stage: str, inputs: dict[str, Any], files: dict[str, Any], outputs: list[str]) -> dict:
        device = (inputs.get("profile") or {}).get("name") or (inputs.get("profiles") or [{}])[0].get("name")
        node_filter = inputs.pop("_node", None) if "_node" in inputs else None
        resource = device_resource(device)
        attempts: list[dict[str, str]] = []
        while True:
            nodes = self._candidates(device, {a["node"] for a in attempts})
            if node_filter:
                nodes = [n for n in nodes if n["node"] == node_filter]
            if not nodes:
                tried = "; ".join(f"node {a['node'][:12]} ({a['ip']}): {a['reason']}" for a in attempts)
                raise StageFailed(f"{stage} on device {device}: " + (tried or "no alive node serves it"))
            with self._lock:
                turn = self._turn.get(device, 0)
                self._turn[device] = turn + 1
            node = nodes[turn % len(nodes)]
            strategy = NodeAffinitySchedulingStrategy(node["node"], soft=False)
            task = _stage_task.options(num_cpus=max(1, node["cpus"]), resources={resource: 1}, max_retries=0,
                                       scheduling_strategy=strategy)
            with self._machine(node["ip"]):
                try:
                    doc = self._wait(task.remote(stage, inputs, files, outputs))
                except _LOST as exc:
                    attempts.append({"node": node["node"], "ip": node["ip"], "reason": f"{type(exc).__name__}: "
                                     f"{short(exc, 160)}"})
                    continue
            result = self._finish(doc, inputs, outputs)
            result["where"] = {"node": doc["node"], "host": doc["host"], "ip": node["ip"], "failed_attempts": attempts}
            return result

    def _machine(self, ip: str) -> threading.Lock:
        with self._lock:
            return self._machine_locks.setdefault(ip, threading.Lock())


def cluster_facts(profiles: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per alive node: its id, IP, CPUs, devices and, per Python environment it serves devices from, the `doctor`
    facts (onnxruntime build, EPs that load, each served profile's verdict). profiles: device name -> profile data."""
    runner = RayRunner()
    rows = []
    for node in alive_nodes():
        row = dict(node, facts=[], error=None)
        by_env: dict[Any, list] = {}
        for d in node["devices"]:
            prof = profiles.get(d)
            if prof is not None:
                by_env.setdefault(prof.get("env"), []).append(prof)
        try:
            if not by_env:  # a node without a device: what its own Python runs
                strategy = NodeAffinitySchedulingStrategy(node["node"], soft=False)
                doc = runner._wait(_stage_task.options(num_cpus=0, scheduling_strategy=strategy)
                                   .remote("facts", {"profiles": []}, {}, []))
                row["facts"].append(runner._finish(doc, {}, []))
            for env, profs in by_env.items():
                row["facts"].append(dict(runner._run_on_device("facts", {"profiles": profs, "_node": node["node"]}, {}, []),
                                         env=env))
        except (MnetctlError, *_LOST) as exc:
            row["error"] = exc.message if isinstance(exc, MnetctlError) else short(exc)
        rows.append(row)
    return rows
