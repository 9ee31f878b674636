"""A real multi-node Ray cluster on this machine, inside a network namespace of its own with only loopback
(`unshare -n`, as root), so its traffic stays on 127.0.0.1: a head and worker nodes serving different devices,
sweeps against it, worker processes killed mid-bench (tests/cluster_script.py does the cluster side and stops every
process it started, by pid). Skipped where ray is not installed or no network namespace can be made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _netns_ok() -> str | None:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "needs unshare and ip (util-linux, iproute2)"
    res = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up && ip -o link"], capture_output=True, text=True)
    if res.returncode:
        return f"cannot make a network namespace here (root needed): {res.stderr.strip()[-200:]}"
    if [ln.split(":")[1].strip() for ln in res.stdout.splitlines()] != ["lo"]:
        return f"the namespace has more than loopback: {res.stdout}"
    return None


def _in_netns(script: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    cmd = f"ip link set lo up && exec {sys.executable} {script} " + " ".join(args)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               RAY_USAGE_STATS_ENABLED="0")
    return subprocess.run(["unshare", "-n", "sh", "-c", cmd], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> dict:
    why = _netns_ok()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("fleet")
    cfg = work / "config.json"
    cfg.write_text(json.dumps({"work": str(work)}))
    out = work / "seen.json"
    res = _in_netns(REPO / "tests" / "cluster_script.py", str(cfg), str(out), timeout=400)
    assert out.is_file(), res.stdout[-3000:] + res.stderr[-3000:]
    seen = json.loads(out.read_text())
    seen["work"] = str(work)
    assert res.returncode == 0, res.stderr[-3000:]
    return seen


def _variants(run: dict) -> list[dict]:
    assert run["sweep"] is not None, run["stderr"]
    return run["sweep"]["variants"]


def test_cluster_up_and_status(fleet):
    assert fleet["up"]["rc"] == 0, fleet["up"]["stderr"]
    assert fleet["up"]["stdout"].strip().endswith("127.0.0.1:6390")
    status = fleet["status"]
    assert status["rc"] == 0, status["stderr"]
    nodes = {tuple(n["devices"]): n for n in status["doc"]["nodes"]}
    assert set(nodes) == {(), ("host",), ("raspberry-pi-4",)} and nodes[()]["head"]
    verdicts = {p["name"]: p["verdict"] for n in nodes.values() for f in n["facts"] for p in f["profiles"]}
    assert verdicts == {"host": "native", "raspberry-pi-4": "emulated"}  # doctor ran on each node
    for n in nodes.values():
        assert n["error"] is None and n["ip"] == "127.0.0.1"
        assert any(e["name"] == "cpu" and e["loads"] for f in n["facts"] for e in f["eps"])


def test_benches_run_on_nodes_with_the_device(fleet):
    run = fleet["runs"]["first"]
    assert run["rc"] == 0, run["stderr"]
    nodes = fleet["nodes_before"]
    assert len(nodes["host"]) == 1 and len(nodes["raspberry-pi-4"]) == 1 and len(nodes["-"]) == 1  # head: no device
    variants = _variants(run)
    assert sorted((v["name"], v["device"]) for v in variants) == sorted(
        (f"v1-0.25-128-{p}", d) for p in ("fp32", "int8") for d in ("host", "raspberry-pi-4"))
    for v in variants:
        assert v["node"] in nodes[v["device"]], v  # benched on a node holding that device's resource
        assert v["stage_nodes"]["bench"] == v["node"] and v["other_load"] is not None and v["host"]
    # build/quantize/eval went to nodes with a free CPU, not only to one
    cpu_nodes = {n for v in variants for s, n in v["stage_nodes"].items() if s != "bench" and n}
    every = {n for ids in nodes.values() for n in ids}
    assert cpu_nodes <= every and len(cpu_nodes) >= 2
    assert set(run["sweep"]["devices"]) == {"host", "raspberry-pi-4"} and run["sweep"]["failed"] == []


def test_results_equal_an_in_process_sweep(fleet, tmp_path):
    from mnetctl.sweep import SweepSettings, plan_variants, run_sweep

    variants, _ = plan_variants(["v1"], [0.25], [128], ["fp32", "int8"], weights="pretrained")
    local = run_sweep(variants, SweepSettings(weights="pretrained", limit=8, iterations=20, max_seconds=0,
                                              device=["host", "raspberry-pi-4"]), cache_dir=tmp_path / "c")
    here = {(v.name, v.device): (v.top1, v.top5, v.macs, v.size_mb) for v in local.variants}
    there = {(v["name"], v["device"]): (v["top1"], v["top5"], v["macs"], v["size_mb"])
             for v in _variants(fleet["runs"]["first"])}
    assert here == there  # top-1 exactly (the same model bytes and images evaluated on another node)
    for v in _variants(fleet["runs"]["first"]):
        assert v["latency_ms"]["p50"] > 0 and v["p50_ci95_ms"][0] <= v["p50_ms"] <= v["p50_ci95_ms"][1]


def test_second_run_fully_cached(fleet):
    first, again = fleet["runs"]["first"], fleet["runs"]["again"]
    assert again["rc"] == 0, again["stderr"]
    for v in _variants(again):
        assert all(v["cached"].values()), v["cached"]
    assert [(v["name"], v["device"], v["p50_ms"], v["node"]) for v in _variants(again)] == \
           [(v["name"], v["device"], v["p50_ms"], v["node"]) for v in _variants(first)]
    assert all(t["cached"] for t in again["sweep"]["devices"].values())


def test_killed_bench_is_retried_on_the_other_node(fleet):
    run = fleet["runs"]["retried"]
    assert run["killed"] is not None, "no bench worker was seen to kill"
    assert run["rc"] == 0, run["stderr"]
    pis = fleet["nodes_with_b"]["raspberry-pi-4"]
    assert len(pis) == 2
    variants = _variants(run)
    assert len(variants) == 4 and len({(v["name"], v["device"]) for v in variants}) == 4  # nothing duplicated
    pi = [v for v in variants if v["device"] == "raspberry-pi-4"]
    for v in pi:
        assert len(v["failed_attempts"]) == 1, v
        lost = v["failed_attempts"][0]["node"]
        assert lost in pis and v["node"] in pis and v["node"] != lost
        assert "Worker" in v["failed_attempts"][0]["reason"] or "died" in v["failed_attempts"][0]["reason"]
    assert "retried:" in run["stderr"]
    host = [v for v in variants if v["device"] == "host"]
    assert all(not v["failed_attempts"] for v in host)


def test_killed_bench_with_no_other_node_is_reported_failed(fleet):
    run = fleet["runs"]["failed"]
    assert run["killed"] is not None, "no bench worker was seen to kill"
    assert run["rc"] == 5, run["stderr"]  # the sweep ended; exit 5: part of it failed where it ran
    assert len(fleet["nodes_one_pi"]["raspberry-pi-4"]) == 1
    doc = run["sweep"]
    assert sorted(f["variant"] for f in doc["failed"]) == ["v1-0.25-128-fp32", "v1-0.25-128-int8"]
    node = fleet["nodes_one_pi"]["raspberry-pi-4"][0]
    for f in doc["failed"]:
        assert f["device"] == "raspberry-pi-4" and node[:12] in f["reason"]
    assert {v["device"] for v in doc["variants"]} == {"host"} and len(doc["variants"]) == 2
    assert "failed:" in run["stderr"] and "Traceback" not in run["stderr"]


def test_ctrl_c_cancels_the_cluster_tasks(fleet):
    run = fleet["runs"]["interrupted"]
    assert run["killed"] is not None, "no stage task was seen running before the interrupt"
    assert run["rc"] == 130, run["stderr"]
    assert "interrupted" in run["stderr"]
    assert fleet["tasks_after_interrupt"] == []  # the bench task on its node was cancelled, not left running


def test_every_process_started_is_stopped(fleet):
    assert fleet["down"]["rc"] == 0 and fleet["down"]["stdout"].startswith("stopped"), fleet["down"]
    assert fleet["leftover"] == []
    import psutil

    alive = [p for p in fleet["started_pids"] if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []


@pytest.mark.venv
def test_openvino_environment_benches_beside_the_cpu_ep(tmp_path):
    """`mnetctl env create openvino` (reused while it matches), a worker serving host and host-ort-openvino, one sweep
    over both: the OpenVINO EP's bench runs in that environment on the worker node, the CPU EP's beside it."""
    why = _netns_ok()
    if why:
        pytest.skip(why)
    envs = REPO / ".cache" / "venvs"
    made = subprocess.run([sys.executable, "-m", "mnetctl", "env", "create", "openvino", "--path", str(envs / "openvino")],
                          capture_output=True, text=True, timeout=1500,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])))
    if made.returncode == 3:
        pytest.skip(made.stderr.strip()[-300:])
    assert made.returncode == 0, made.stderr
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"work": str(tmp_path), "mode": "openvino", "envs": str(envs)}))
    out = tmp_path / "seen.json"
    res = _in_netns(REPO / "tests" / "cluster_script.py", str(cfg), str(out), timeout=400)
    assert out.is_file(), res.stdout[-3000:] + res.stderr[-3000:]
    seen = json.loads(out.read_text())
    assert res.returncode == 0 and seen["leftover"] == [], res.stderr[-3000:]
    assert "serving host-ort-openvino" in seen["worker_log"] and "in env openvino" in seen["worker_log"]
    assert seen["sweep_rc"] == 0, seen["sweep_stderr"]
    worker = next(n for n in seen["nodes"] if not n["head"])
    assert worker["devices"] == ["host", "host-ort-openvino"]
    by_device = {}
    for v in seen["sweep"]["variants"]:
        by_device.setdefault(v["device"], []).append(v)
        assert v["node"] == worker["node"]
    assert {v["providers"][0] for v in by_device["host"]} == {"CPUExecutionProvider"}
    assert {v["providers"][0] for v in by_device["host-ort-openvino"]} == {"OpenVINOExecutionProvider"}
    assert len(by_device["host"]) == len(by_device["host-ort-openvino"]) == 2
