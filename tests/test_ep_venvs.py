"""Real QNN and OpenVINO execution providers, each in its own virtual environment.

`onnxruntime-qnn` (a plugin EP library next to the standard onnxruntime) and `onnxruntime-openvino` (which replaces
the onnxruntime module) cannot share the project's environment, so a session fixture builds one venv per package
under `.cache/venvs/<name>` with `mnetctl.envs.create_env` (reused while its marker matches: mnetctl installed
editable, with its dependencies but without replacing that venv's onnxruntime) and the tests run `mnetctl bench` in it.
A test is skipped, with pip's reason, only when the package cannot be installed.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".cache" / "venvs"
PACKAGES = ("qnn", "openvino")

pytestmark = pytest.mark.venv


def build_venv(name: str) -> tuple[Path | None, str, float]:
    """(venv dir or None, why not, seconds spent): `mnetctl env create NAME --path .cache/venvs/NAME` (reused while
    its marker matches)."""
    from mnetctl.envs import create_env
    from mnetctl.errors import EnvironmentMissing

    try:
        path, seconds = create_env(name, VENVS / name)
    except EnvironmentMissing as exc:
        return None, exc.message, 0.0
    return path, "", seconds


@pytest.fixture(scope="session")
def ep_venvs() -> dict[str, tuple[Path | None, str]]:
    with ThreadPoolExecutor(max_workers=len(PACKAGES)) as pool:
        results = dict(zip(PACKAGES, pool.map(build_venv, PACKAGES)))
    for name, (_, why, seconds) in results.items():
        if seconds:
            print(f"\n[ep venv] {name}: built in {seconds:.1f} s {why}")
    return {name: (path, why) for name, (path, why, _) in results.items()}


def _venv(ep_venvs, name: str) -> Path:
    path, why = ep_venvs[name]
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def opset21_model(tmp_path_factory) -> Path:
    """V1 0.25 at 128 px, opset 21 -> IR 10 (onnxruntime-openvino accepts IR <= 13)."""
    from mnetctl.builder import build_model, save_model

    path = tmp_path_factory.mktemp("epmodels") / "v1-0.25-128-op21.onnx"
    save_model(build_model("v1", 0.25, 128, opset=21), path)
    return path


def _mnetctl(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "mnetctl"), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _bench_json(venv: Path, model: Path, tmp_path: Path, *args: str, rc: int = 0) -> dict:
    out = tmp_path / "r.json"
    res = _mnetctl(venv, "bench", str(model), "-n", "5", "--warmup", "1", "--json", str(out), "-q", *args, cwd=tmp_path)
    assert res.returncode == rc, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    return json.loads(out.read_text())


def test_qnn_plugin_runs_the_graph(ep_venvs, opset21_model, tmp_path):
    venv = _venv(ep_venvs, "qnn")
    doc = _bench_json(venv, opset21_model, tmp_path, "--ep", "qnn")
    assert doc["providers"] == ["QNNExecutionProvider"]
    nodes = doc["node_assignment"]
    assert nodes.get("QNNExecutionProvider", 0) >= 50 and "CPUExecutionProvider" not in nodes
    assert doc["ops_by_provider"]["QNNExecutionProvider"]["Conv"] == 27
    assert doc["simulated"] is True and any("simulator" in n for n in doc["notes"])
    assert doc["onnxruntime"]["packages"].get("onnxruntime-qnn", "").startswith("2.")
    assert doc["provider_options"]["QNNExecutionProvider"]["backend_type"] == "htp"


def test_qnn_snapdragon_profile(ep_venvs, opset21_model, tmp_path):
    venv = _venv(ep_venvs, "qnn")
    doc = _bench_json(venv, opset21_model, tmp_path, "--device", "snapdragon-8-gen-2")
    assert doc["profile"] == "snapdragon-8-gen-2" and doc["host_matches_profile"] is False
    opts = doc["provider_options"]["QNNExecutionProvider"]
    assert opts["soc_model"] == "SM8550" and opts["enable_htp_fp16_precision"] == "1"
    assert doc["node_assignment"]["QNNExecutionProvider"] >= 50
    status = {c["name"]: c["status"] for c in doc["checks"]}
    assert status["latency"] == "skip"  # simulated HTP latency is never gated on
    assert status["opset"] == "pass" and status["ir_version"] == "pass"


def test_qnn_no_silent_fallback(ep_venvs, opset21_model, tmp_path):
    venv = _venv(ep_venvs, "qnn")
    # The CPU backend library is not shipped for x86-64 Linux: QNN loads but takes no node.
    res = _mnetctl(venv, "bench", str(opset21_model), "-n", "2", "--ep", "qnn", "--ep-option", "qnn.backend_type=cpu", cwd=tmp_path)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "QNN" in res.stderr and "none of the model's" in res.stderr and "Traceback" not in res.stderr
    doc = _bench_json(venv, opset21_model, tmp_path, "--ep", "qnn", "--ep-option", "qnn.backend_type=cpu", "--allow-fallback")
    assert doc["fallback"]["fell_back"] and doc["fallback"]["no_nodes"] == ["qnn"]
    assert doc["providers"] == ["CPUExecutionProvider"]


def test_openvino_runs_the_graph(ep_venvs, opset21_model, tmp_path):
    venv = _venv(ep_venvs, "openvino")
    doc = _bench_json(venv, opset21_model, tmp_path, "--ep", "openvino")
    assert doc["providers"] == ["OpenVINOExecutionProvider"]
    nodes = doc["node_assignment"]
    assert nodes.get("OpenVINOExecutionProvider", 0) >= 50 and "CPUExecutionProvider" not in nodes
    assert "onnxruntime-openvino" in doc["onnxruntime"]["packages"]
    assert doc["provider_options"]["OpenVINOExecutionProvider"]["device_type"] == "CPU"
    assert doc["latency_ms"]["p50"] > 0 and doc["simulated"] is False
    doc = _bench_json(venv, opset21_model, tmp_path, "--ep", "openvino,cpu", "--threads", "1")
    assert doc["providers"][0] == "OpenVINOExecutionProvider"


def test_openvino_doctor(ep_venvs, tmp_path):
    venv = _venv(ep_venvs, "openvino")
    res = _mnetctl(venv, "doctor", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    ov = next(r for r in doc["eps"] if r["name"] == "openvino")
    assert ov["loads"] and ov["nodes"]["OpenVINOExecutionProvider"] > 0
    assert "OpenVINOExecutionProvider" in doc["onnxruntime"]["builtin_providers"]
