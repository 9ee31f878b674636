"""Run inside a network namespace with only loopback (tests/test_cluster.py starts it with `unshare -n`): a real
Ray cluster of a head and worker nodes on 127.0.0.1, `mnetctl sweep --cluster` against it, worker processes killed
mid-bench. Every process it starts is recorded and stopped by pid at the end. Writes what it saw as JSON.

usage: python cluster_script.py CONFIG.json OUT.json
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from mnetctl.cluster import child_env, start_args
from mnetctl.runners import ray as rr

PORT = 6390
ADDRESS = f"127.0.0.1:{PORT}"


def main(config_path: str, out_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    if cfg.get("mode") == "openvino":
        return openvino(cfg, out_path)
    work = Path(cfg["work"])
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    nodes: dict[str, subprocess.Popen] = {}
    seen: dict = {"started_pids": [], "runs": {}}

    def start(name: str, devices: list[str], head: bool = False) -> None:
        args = start_args(devices, address=None if head else ADDRESS, port=PORT, node_ip="127.0.0.1", num_cpus=1,
                          object_store_mb=128)
        log = open(logs / f"{name}.log", "wb")
        proc = subprocess.Popen(args, env=child_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        nodes[name] = proc
        seen["started_pids"].append(proc.pid)
        deadline = time.monotonic() + 120
        while "will now block forever" not in (logs / f"{name}.log").read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {name} did not start: {(logs / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def node_ids() -> dict[str, list[str]]:
        """device -> alive node ids, read through a short-lived driver connection."""
        rr.connect(ADDRESS)
        try:
            out: dict[str, list[str]] = {}
            for n in rr.alive_nodes():
                for d in n["devices"] or ["-"]:
                    out.setdefault(d, []).append(n["node"])
            return out
        finally:
            rr.disconnect()

    def sweep(tag: str, *extra: str, kill_under: list[str] | None = None, interrupt: bool = False) -> None:
        cmd = [sys.executable, "-m", "mnetctl", "sweep", "--cluster", ADDRESS, "--device", "host,raspberry-pi-4",
               "--weights", "pretrained", "--arch", "v1", "--widths", "0.25", "--resolutions", "128", "--precisions",
               "fp32,int8", "--limit", "8", "--max-seconds", "0", "--cache", str(work / "cache"),
               "-o", str(work / tag), *extra]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, COLUMNS="200"))
        killed = None
        if kill_under:
            killed = _kill_bench_worker([roots[n] for n in kill_under], proc)
        if interrupt:  # Ctrl-C of the driver while a stage task runs: the task must be cancelled on its node
            killed = _kill_bench_worker(list(roots.values()), proc, kill=False)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
        if interrupt:
            seen["tasks_after_interrupt"] = _stage_tasks_after(list(roots.values()), 20.0)
        doc_path = work / tag / "sweep.json"
        seen["runs"][tag] = {"rc": proc.returncode, "stdout": out[-3000:], "stderr": err[-3000:],
                             "seconds": round(time.monotonic() - t0, 1), "killed": killed,
                             "sweep": json.loads(doc_path.read_text()) if doc_path.is_file() else None}

    env = dict(os.environ, MNETCTL_CLUSTER_STATE=str(work / "state.json"), COLUMNS="200")
    mnetctl = [sys.executable, "-m", "mnetctl"]
    roots: dict[str, int] = {}  # node name -> the pid of its `ray start --block`
    up_trees: list = []
    try:
        t0 = time.monotonic()
        # head + a node for host + a node for raspberry-pi-4, by the CLI (pids recorded in the state file)
        up = subprocess.run([*mnetctl, "cluster", "up", "--local", "host,raspberry-pi-4", "--port", str(PORT)],
                            capture_output=True, text=True, timeout=300, env=env)
        seen["up"] = {"rc": up.returncode, "stdout": up.stdout, "stderr": up.stderr[-2000:]}
        state = json.loads((work / "state.json").read_text())
        names = {"head": "head", "worker-host": "w-host", "worker-raspberry-pi-4": "w-pi-a"}
        for p in state["processes"]:
            roots[names[p["role"]]] = p["pid"]
            seen["started_pids"].append(p["pid"])
        seen["startup_s"] = round(time.monotonic() - t0, 1)
        status = subprocess.run([*mnetctl, "cluster", "status", "--json"], capture_output=True, text=True,
                                timeout=300, env=env)
        seen["status"] = {"rc": status.returncode, "stderr": status.stderr[-2000:],
                          "doc": json.loads(status.stdout) if status.returncode == 0 else None}
        seen["nodes_before"] = node_ids()
        sweep("first", "-n", "20")
        sweep("again", "-n", "20")
        # a second node for the Pi: a bench whose worker is killed is taken again there
        start("w-pi-b", ["raspberry-pi-4"])
        roots["w-pi-b"] = nodes["w-pi-b"].pid
        rr.connect(ADDRESS)
        rr.wait_for_nodes(4)
        rr.disconnect()
        seen["nodes_with_b"] = node_ids()
        sweep("retried", "-n", "400", kill_under=["w-pi-a", "w-pi-b"])
        # one Pi node left: the bench killed there has nowhere else to go
        nodes["w-pi-b"].send_signal(signal.SIGTERM)
        nodes["w-pi-b"].wait(timeout=60)
        time.sleep(1.0)
        seen["nodes_one_pi"] = node_ids()
        sweep("failed", "-n", "401", kill_under=["w-pi-a"])
        sweep("interrupted", "-n", "20000", interrupt=True)
    finally:
        for name in ("head", "w-host", "w-pi-a"):
            if name in roots:
                try:
                    up_trees += [psutil.Process(roots[name])] + psutil.Process(roots[name]).children(recursive=True)
                except psutil.NoSuchProcess:
                    pass
        down = subprocess.run([*mnetctl, "cluster", "down"], capture_output=True, text=True, timeout=120, env=env)
        seen["down"] = {"rc": down.returncode, "stdout": down.stdout, "stderr": down.stderr[-2000:]}
        _, alive = psutil.wait_procs(up_trees, timeout=10)
        seen["leftover"] = [p.pid for p in alive] + _stop(nodes)
        for p in alive:  # `cluster down` failed to stop them: this script started them, so it stops them
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        Path(out_path).write_text(json.dumps(seen, indent=1))
    return 0


def openvino(cfg: dict, out_path: str) -> int:
    """A head and one `mnetctl worker` serving host and host-ort-openvino (the latter from an OpenVINO environment);
    one sweep over both devices."""
    work = Path(cfg["work"])
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    seen: dict = {"started_pids": []}
    env = dict(os.environ, MNETCTL_ENVS=cfg["envs"])

    def start(name: str, args: list[str]) -> None:
        log = open(logs / f"{name}.log", "wb")
        procs[name] = subprocess.Popen(args, env=dict(child_env(), MNETCTL_ENVS=cfg["envs"]), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        seen["started_pids"].append(procs[name].pid)
        deadline = time.monotonic() + 150
        while "will now block forever" not in (logs / f"{name}.log").read_text(errors="replace"):
            if procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {(logs / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.2)

    try:
        start("head", start_args([], port=PORT, node_ip="127.0.0.1", num_cpus=1, object_store_mb=128))
        start("worker", [sys.executable, "-m", "mnetctl", "worker", "--address", ADDRESS, "--device",
                         "host,host-ort-openvino", "--node-ip-address", "127.0.0.1", "--num-cpus", "1"])
        seen["worker_log"] = (logs / "worker.log").read_text(errors="replace")[:2000]
        rr.connect(ADDRESS)
        rr.wait_for_nodes(2)
        seen["nodes"] = rr.alive_nodes()
        rr.disconnect()
        cmd = [sys.executable, "-m", "mnetctl", "sweep", "--cluster", ADDRESS, "--device", "host,host-ort-openvino",
               "--arch", "v1", "--widths", "0.25", "--resolutions", "128", "--precisions", "fp32,int8", "--limit", "8",
               "-n", "20", "--max-seconds", "0", "--cache", str(work / "cache"), "-o", str(work / "out")]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        seen["sweep_rc"], seen["sweep_stderr"] = res.returncode, res.stderr[-3000:]
        doc = work / "out" / "sweep.json"
        seen["sweep"] = json.loads(doc.read_text()) if doc.is_file() else None
    finally:
        seen["leftover"] = _stop(procs)
        Path(out_path).write_text(json.dumps(seen, indent=1))
    return 0


def _stage_task_pids(roots: list[int]) -> list[int]:
    """Ray worker processes under `roots` running a stage task (their title is `ray::_stage_task`)."""
    found = []
    for root in roots:
        try:
            tree = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for p in tree:
            try:
                if " ".join(p.cmdline()).startswith("ray::_stage_task"):
                    found.append(p.pid)
            except psutil.Error:
                continue
    return found


def _stage_tasks_after(roots: list[int], timeout_s: float) -> list[int]:
    """Stage-task processes still running `timeout_s` after the driver ended (none once they are cancelled)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = _stage_task_pids(roots)
        if not left:
            return []
        time.sleep(0.2)
    return _stage_task_pids(roots)


def _kill_bench_worker(roots: list[int], sweep_proc: subprocess.Popen, timeout_s: float = 180.0,
                       kill: bool = True) -> dict | None:
    """SIGKILL the first Ray worker process under `roots` that runs a stage task (its title is
    `ray::_stage_task`): with every other stage cached, that is the device's bench. kill=False: only wait for one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sweep_proc.poll() is None:
        for root in roots:
            try:
                tree = psutil.Process(root).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for p in tree:
                try:
                    title = " ".join(p.cmdline())
                except psutil.Error:
                    continue
                if title.startswith("ray::_stage_task"):
                    time.sleep(0.3)  # well inside the bench
                    if not kill:
                        return {"pid": p.pid, "node_root": root}
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        continue
                    return {"pid": p.pid, "node_root": root}
        time.sleep(0.05)
    return None


def _stop(nodes: dict[str, subprocess.Popen]) -> list[int]:
    """Stop every node this script started, by pid (each `ray start --block` stops its own processes on SIGTERM);
    returns the pids of any process of theirs still alive afterwards (should be none)."""
    trees = {}
    for name, proc in nodes.items():
        try:
            trees[name] = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            trees[name] = []
    for name in reversed(list(nodes)):
        if nodes[name].poll() is None:
            nodes[name].send_signal(signal.SIGTERM)
    for name, proc in nodes.items():
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    every = [p for tree in trees.values() for p in tree]
    _, alive = psutil.wait_procs(every, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return [p.pid for p in alive]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
