"""`mnetctl bench` on the CPU provider: statistics, JSON/JUnit/Markdown, budgets, regression gate, exit codes."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mnetctl.bench import BenchResult, bench, latency_stats, parse_duration
from mnetctl.budgets import Gates, check_budgets, parse_tolerance
from mnetctl.cli import main
from mnetctl.errors import BadInput

STAT_KEYS = ["min", "mean", "std", "p50", "p90", "p95", "p99", "max"]


@pytest.fixture(scope="module")
def cpu_result(tiny_model) -> BenchResult:
    return bench(tiny_model, eps="cpu", iterations=40, warmup=3, threads=1)


def test_bench_api_result(cpu_result, tiny_model):
    r = cpu_result
    assert list(r.latency_ms) == STAT_KEYS
    lat = r.latency_ms
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
    assert r.iterations == 40 and r.warmup_runs == 3
    assert r.providers == ["CPUExecutionProvider"] and r.node_assignment["CPUExecutionProvider"] > 0
    assert r.session_create_ms > 0 and r.cold_run_ms > 0
    assert r.throughput_ips == pytest.approx(1000.0 / lat["mean"])
    assert r.model_size_bytes == tiny_model.stat().st_size
    assert r.model["arch"] == "v1" and r.model["resolution"] == 128 and r.model["opset"] == 17
    assert r.model["input"]["input"] == {"shape": [1, 3, 128, 128], "dtype": "float32"}
    assert r.peak_rss_mb > 10
    assert 0 <= r.loop_overhead_pct < 50
    assert r.checks == [] and r.passed  # no profile, no budgets
    doc = r.as_dict()
    json.dumps(doc)  # serialisable
    assert doc["profile"] is None and doc["host_matches_profile"] is None


def test_check_budgets_directly(cpu_result):
    r = cpu_result
    checks = check_budgets(r, gates=Gates(latency_ms=1e6, metric="p99", size_mb=100, min_top1=0.5, top1=71.5))
    assert [c.name for c in checks] == ["latency", "size", "top1"]
    assert all(c.status == "pass" for c in checks) and checks[2].actual == pytest.approx(0.715)
    checks = check_budgets(r, gates=Gates(latency_ms=1e-6, size_mb=1e-3, min_top1=0.9, top1=0.5))
    assert [c.status for c in checks] == ["fail", "fail", "fail"]
    assert check_budgets(r, gates=Gates(min_top1=0.5))[0].status == "skip"  # no top-1 figure supplied
    with pytest.raises(BadInput):
        check_budgets(r, gates=Gates(latency_ms=1, metric="p42"))
    # Regression: against itself within tolerance passes; a baseline 10x faster fails.
    doc = r.as_dict()
    assert check_budgets(r, gates=Gates(baseline=doc, tolerance="10%"))[0].status == "pass"
    fast = {**doc, "latency_ms": {k: v / 10 for k, v in doc["latency_ms"].items()}}
    reg = check_budgets(r, gates=Gates(baseline=fast, tolerance="10%"))[0]
    assert reg.status == "fail" and re.search(r"\(\+(899|900)\.\d%, tolerance 10%\)", reg.message), reg.message


def test_profile_budgets_and_compat_checks(tiny_model):
    r = bench(tiny_model, profile="raspberry-pi-4", iterations=5, warmup=0)
    names = [c.name for c in r.checks]
    assert names == ["latency", "size", "top1", "opset", "ir_version"]
    assert r.threads == 4 and r.profile == "raspberry-pi-4"
    assert r.host_matches_profile is False and r.host_mismatch
    assert any("not a raspberry-pi-4" in n for n in r.notes)
    status = {c.name: c.status for c in r.checks}
    assert status["top1"] == "skip" and status["opset"] == "pass" and status["size"] == "pass"


def test_cli_json_keys(tiny_model, tmp_path):
    out = tmp_path / "r.json"
    assert main(["bench", str(tiny_model), "-n", "20", "--warmup", "2", "--threads", "1", "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    for key in ("p50", "p90", "p99", "mean"):
        assert doc["latency_ms"][key] > 0
    assert doc["providers"] == ["CPUExecutionProvider"]
    assert doc["passed"] is True and doc["iterations"] == 20
    assert doc["node_assignment"]["CPUExecutionProvider"] > 0
    assert doc["schema"] == "mnetctl.bench/1" and doc["host"]["cores_logical"] >= 1


def test_tiny_budget_fails_with_junit_failure(tiny_model, tmp_path, capsys):
    junit, js, md = tmp_path / "r.xml", tmp_path / "r.json", tmp_path / "r.md"
    rc = main(["bench", str(tiny_model), "-n", "10", "--budget-ms", "0.0001", "--budget-size-mb", "100",
               "--junit", str(junit), "--json", str(js), "--markdown", str(md)])
    assert rc == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "latency" in out
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 2
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 and "p90" in failed[0].get("name")
    assert "0.0001" in failed[0].find("failure").get("message")
    assert root.get("failures") == "1" and root.get("tests") == "2"
    doc = json.loads(js.read_text())
    assert doc["passed"] is False and [c["status"] for c in doc["checks"]] == ["fail", "pass"]
    assert "**FAIL**" in md.read_text()


def test_tensorrt_exits_3_without_running(tiny_model, tmp_path, capsys):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT is available here")
    js = tmp_path / "r.json"
    assert main(["bench", str(tiny_model), "--ep", "tensorrt", "--json", str(js)]) == 3
    cap = capsys.readouterr()
    assert "TensorRT" in cap.err and "Traceback" not in cap.err
    assert len([line for line in cap.err.splitlines() if line.startswith("error:")]) == 1
    assert not js.exists()  # nothing ran on the CPU instead, nothing written
    assert main(["bench", str(tiny_model), "--device", "jetson-nano", "-n", "3"]) == 3
    assert "TensorRT" in capsys.readouterr().err


def test_allow_fallback_is_reported(tiny_model, tmp_path):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT is available here")
    js = tmp_path / "r.json"
    rc = main(["bench", str(tiny_model), "--device", "jetson-nano", "--allow-fallback", "-n", "5", "--warmup", "0",
               "--json", str(js), "-q"])
    doc = json.loads(js.read_text())
    assert rc == 1  # opset 17 / IR 8 is newer than JetPack 4.6's runtime loads
    assert doc["host_matches_profile"] is False and doc["host_mismatch"]
    assert doc["fallback"]["fell_back"] and doc["fallback"]["unavailable"] == ["tensorrt", "cuda"]
    assert doc["providers"] == ["CPUExecutionProvider"]
    assert {c["name"]: c["status"] for c in doc["checks"]}["opset"] == "fail"
    assert any("fell back" in n for n in doc["notes"])


def test_baseline_regression_gate(tiny_model, tmp_path):
    base = tmp_path / "base.json"
    assert main(["bench", str(tiny_model), "-n", "20", "--json", str(base), "-q"]) == 0
    doc = json.loads(base.read_text())
    assert main(["bench", str(tiny_model), "-n", "20", "--baseline", str(base), "--tolerance", "1000%", "-q"]) == 0
    doc["latency_ms"] = {k: v / 100 for k, v in doc["latency_ms"].items()}
    fast = tmp_path / "fast.json"
    fast.write_text(json.dumps(doc))
    junit = tmp_path / "r.xml"
    assert main(["bench", str(tiny_model), "-n", "20", "--baseline", str(fast), "--tolerance", "10%", "--junit", str(junit), "-q"]) == 1
    case = ET.parse(junit).getroot().find(".//testcase")
    assert "regression" in case.get("name") and case.find("failure") is not None
    broken = tmp_path / "broken.json"
    broken.write_text('{"providers": []}')
    assert main(["bench", str(tiny_model), "--baseline", str(broken)]) == 2


def test_duration_batch_and_op_profile(tiny_model):
    r = bench(tiny_model, duration="0.3s", batch=2, warmup=1, op_profile=True)
    assert r.iterations >= 1 and 0.25 < r.measured_s < 5
    assert r.batch == 2 and r.model["input"]["input"]["shape"] == [2, 3, 128, 128]
    assert r.throughput_ips == pytest.approx(2000.0 / r.latency_ms["mean"])
    ops = r.op_profile
    assert ops and {"node", "op", "provider", "mean_ms", "share"} <= set(ops[0])
    assert ops[0]["mean_ms"] >= ops[-1]["mean_ms"]
    assert any(o["op"] in ("Conv", "FusedConv") for o in ops)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--iterations", "0"], "--iterations"),
        (["--tolerance", "lots"], "--tolerance"),
        (["--duration", "soon"], "--duration"),
        (["--device", "host", "--profile", "x.toml"], "not both"),
        (["--device", "nosuchdevice"], "unknown device profile"),
        (["--ep", "tpu"], "unknown execution provider"),
        (["--budget-metric", "p42", "--budget-ms", "1"], "--budget-metric"),
        (["--ep-option", "device_type=GPU"], "--ep-option"),
        (["--ep-option", "cuda.device_id=1"], "cuda is not among"),
    ],
)
def test_bad_usage_exits_2(tiny_model, capsys, args, fragment):
    assert main(["bench", str(tiny_model), "-n", "2", *args]) == 2
    assert fragment in capsys.readouterr().err


def test_bad_model_files_exit_2(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing.onnx")]) == 2
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["bench", str(bad)]) == 2
    assert "bad.onnx" in capsys.readouterr().err


def test_top1_budget_from_cli(tiny_model, capsys):
    assert main(["bench", str(tiny_model), "-n", "3", "--min-top1", "0.7", "--top1", "0.5", "-q"]) == 1
    assert "top-1 0.5000 < minimum 0.7000" in capsys.readouterr().err
    assert main(["bench", str(tiny_model), "-n", "3", "--min-top1", "70", "--top1", "71.2", "-q"]) == 0


def test_uint8_model_bench(tmp_path):
    from mnetctl.builder import build_model, save_model

    path = tmp_path / "u8.onnx"
    save_model(build_model("v2", 0.35, 96, input_format="uint8-nhwc"), path)
    r = bench(path, iterations=5, warmup=0)
    assert r.model["input"]["input"] == {"shape": [1, 96, 96, 3], "dtype": "uint8"}
    assert r.model["input_format"] == "uint8-nhwc"


def test_statistics_and_parsers():
    s = latency_stats([float(i) for i in range(1, 101)])
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == 50.5
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert latency_stats([3.0])["std"] == 0.0
    assert parse_tolerance("10%") == pytest.approx(0.1) and parse_tolerance("0.25") == 0.25 and parse_tolerance("0") == 0
    for ambiguous in ("1", "1.01", "5"):  # 100 %? 1.01 %? a plain number must be a fraction below 1
        with pytest.raises(BadInput, match="ambiguous"):
            parse_tolerance(ambiguous)
    assert parse_duration("500ms") == 0.5 and parse_duration("2m") == 120 and parse_duration(3) == 3
    with pytest.raises(BadInput):
        parse_duration("-1s")


def test_doctor_json(capsys):
    assert main(["doctor", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    eps = {row["name"]: row for row in doc["eps"]}
    assert eps["cpu"]["loads"] and eps["cpu"]["nodes"]["CPUExecutionProvider"] > 0
    assert set(eps) == {"cpu", "cuda", "tensorrt", "openvino", "nnapi", "qnn", "xnnpack", "coreml", "dml"}
    profs = {row["name"]: row for row in doc["profiles"]}
    assert profs["host"]["verdict"] == "native"
    if not eps["tensorrt"]["loads"]:
        assert profs["jetson-nano"]["verdict"] == "fallback" and "tensorrt" in profs["jetson-nano"]["missing"]
    assert main(["doctor"]) == 0
    assert "execution providers" in capsys.readouterr().out
