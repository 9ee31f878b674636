"""The environment runner's protocol, on a stand-in environment whose `bin/python` is this Python: a device stage
runs in a subprocess, results and mnetctl's errors come back as plain data, a missing environment is named."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mnetctl.errors import BadInput, EnvironmentMissing
from mnetctl.profiles import load_profile
from mnetctl.runners import EnvRunner, LocalRunner


@pytest.fixture(scope="module")
def stand_in_env(tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("env") / "py"
    (env / "bin").mkdir(parents=True)
    py = env / "bin" / "python"
    py.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    py.chmod(0o755)
    return env


def _bench_in(model: Path, profile: dict) -> dict:
    return {"model": str(model), "profile": profile, "threads": 1, "iterations": 5}


def test_bench_runs_in_the_environment(stand_in_env, tiny_model, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    host = load_profile("host").model_dump(mode="json")
    res = EnvRunner(stand_in_env).run("bench", _bench_in(tiny_model, host))
    json.dumps(res)
    assert res["providers"] == ["CPUExecutionProvider"] and res["latency_ms"]["p50"] > 0
    # a profile naming the environment by path sends its device stages there (LocalRunner), other stages stay here
    named = dict(host, env=str(stand_in_env))
    assert LocalRunner().env_for("bench", _bench_in(tiny_model, named)) == str(stand_in_env)
    assert LocalRunner().env_for("eval", {"model": str(tiny_model)}) is None
    assert LocalRunner().run("bench", _bench_in(tiny_model, named))["providers"] == ["CPUExecutionProvider"]


def test_errors_come_back_as_themselves(stand_in_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    host = load_profile("host").model_dump(mode="json")
    with pytest.raises(BadInput, match=r"nowhere\.onnx.*in env"):
        EnvRunner(stand_in_env).run("bench", _bench_in(tmp_path / "nowhere.onnx", host))


def test_missing_environment_is_named(tiny_model, tmp_path):
    prof = dict(load_profile("host").model_dump(mode="json"), env=str(tmp_path / "no-such-env"))
    with pytest.raises(EnvironmentMissing, match="no-such-env") as info:
        LocalRunner().run("bench", _bench_in(tiny_model, prof))
    assert "mnetctl env create" in info.value.hint
    assert load_profile("host-ort-openvino").env == "openvino"


@pytest.mark.venv
def test_sweep_over_cpu_and_openvino_in_process(tmp_path):
    """`--device host,host-ort-openvino` in one in-process sweep: the OpenVINO bench runs in the environment that
    `mnetctl env create openvino` made (tests/test_ep_venvs.py builds it under .cache/venvs)."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    envs = repo / ".cache" / "venvs"
    env = dict(os.environ, MNETCTL_ENVS=str(envs), PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    made = subprocess.run([sys.executable, "-m", "mnetctl", "env", "create", "openvino", "--path", str(envs / "openvino")],
                          capture_output=True, text=True, timeout=1500, env=env)
    if made.returncode == 3:
        pytest.skip(made.stderr.strip()[-300:])
    res = subprocess.run([sys.executable, "-m", "mnetctl", "sweep", "--device", "host,host-ort-openvino", "--arch", "v1",
                          "--widths", "0.25", "--precisions", "fp32", "--limit", "8", "-n", "20", "--max-seconds", "0",
                          "--cache", str(tmp_path / "c"), "-o", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "o" / "sweep.json").read_text())
    providers = {v["device"]: v["providers"] for v in doc["variants"]}
    assert providers == {"host": ["CPUExecutionProvider"], "host-ort-openvino": ["OpenVINOExecutionProvider"]}
    assert all(v["node"] is None and v["host"] for v in doc["variants"])  # in-process: no cluster node
    assert set(doc["devices"]) == {"host", "host-ort-openvino"}
