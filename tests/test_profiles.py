"""Device profiles: every shipped one validates; broken ones fail with the file and key named (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mnetctl.cli import main
from mnetctl.errors import BadInput
from mnetctl.profiles import host_matches_profile, list_profiles, load_profile, parse_profile, profiles_dir

REQUIRED = {"host", "jetson-nano", "jetson-orin-nano", "raspberry-pi-4", "raspberry-pi-5", "pixel-7", "snapdragon-8-gen-2", "intel-ncs2", "intel-npu"}

GOOD = """
name = "my-board"
description = "a user's board"
threads = 2
max_opset = 17
max_ir = 8
[hardware]
arch = "aarch64"
cores = 4
[[eps]]
name = "cpu"
[budgets]
latency_ms = 12.5
percentile = "p95"
size_mb = 8
min_top1 = 0.6
"""


def test_every_shipped_profile_validates():
    profiles = {p.name: p for p in list_profiles()}
    assert REQUIRED <= set(profiles)
    for path in sorted(profiles_dir().glob("*.toml")):
        prof = parse_profile(path)
        assert prof.name == path.stem
        assert prof.description and prof.eps
        assert load_profile(prof.name).name == prof.name


def test_profiles_carry_the_device_specific_options():
    jetson = load_profile("jetson-nano")
    assert jetson.ep_names == ["tensorrt", "cuda", "cpu"]
    assert jetson.eps[0].options["trt_fp16_enable"] is True and jetson.eps[0].options["trt_engine_cache_enable"] is True
    assert load_profile("pixel-7").ep_names[0] == "nnapi"
    snap = load_profile("snapdragon-8-gen-2")
    assert snap.ep_names[0] == "qnn" and snap.eps[0].options["backend_type"] == "htp"
    ncs2 = load_profile("intel-ncs2")
    assert ncs2.ep_names[0] == "openvino" and "MYRIAD" in ncs2.eps[0].options["device_type"]
    for pi in ("raspberry-pi-4", "raspberry-pi-5"):
        prof = load_profile(pi)
        assert prof.ep_names == ["cpu"] and prof.threads == 4
    for prof in list_profiles():
        if prof.name != "host":
            assert prof.max_opset and prof.max_ir and prof.budgets.latency_ms


def test_user_profile_file(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text(GOOD)
    prof = load_profile(path)
    assert prof.name == "my-board" and prof.source == path
    assert prof.budgets.percentile == "p95" and prof.budgets.latency_ms == 12.5


@pytest.mark.parametrize(
    "edit,key",
    [
        (("threads = 2", "threads = 2\nthreds = 3"), "unknown key 'threds'"),
        (("cores = 4", "cores = 4\ngpu = true"), "unknown key 'hardware.gpu'"),
        (('name = "cpu"', 'name = "cpu"\noptoins = {}'), "unknown key 'eps[0].optoins'"),
        (('name = "cpu"', 'name = "tpu"'), "key 'eps[0].name'"),
        (('percentile = "p95"', 'percentile = "p97"'), "key 'budgets.percentile'"),
        (("latency_ms = 12.5", "latency_ms = -1"), "key 'budgets.latency_ms'"),
        (('description = "a user\'s board"\n', ""), "missing key 'description'"),
    ],
)
def test_broken_profile_names_file_and_key(tmp_path, edit, key):
    path = tmp_path / "broken.toml"
    path.write_text(GOOD.replace(*edit, 1))
    with pytest.raises(BadInput) as err:
        load_profile(path)
    assert str(path) in err.value.message and key in err.value.message


def test_not_toml_and_unknown_name(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("name = [unclosed")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_profile(path)
    with pytest.raises(BadInput, match="unknown device profile 'jetson-nanoo'"):
        load_profile("jetson-nanoo")


def test_cli_unknown_key_exits_2_naming_key(tmp_path, tiny_model, capsys):
    path = tmp_path / "broken.toml"
    path.write_text(GOOD.replace("cores = 4", "cores = 4\nnpu = \"hexagon\""))
    assert main(["profiles", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "hardware.npu" in err and "broken.toml" in err and "Traceback" not in err
    assert main(["bench", str(tiny_model), "--profile", str(path), "-n", "3"]) == 2
    assert "hardware.npu" in capsys.readouterr().err


def test_cli_list_and_show(capsys):
    assert main(["profiles", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert REQUIRED <= {r["name"] for r in rows}
    assert all(isinstance(r["host_matches_profile"], bool) for r in rows)
    assert main(["profiles", "show", "jetson-nano", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["eps"][0]["name"] == "tensorrt" and shown["host_matches_profile"] is False
    assert main(["profiles", "show", "jetson-nano"]) == 0
    assert "Cortex-A57" in capsys.readouterr().out


def test_host_matching():
    pi4 = load_profile("raspberry-pi-4")
    pi_host = {"arch": "aarch64", "cores_logical": 4, "board": "Raspberry Pi 4 Model B Rev 1.4", "accelerators": []}
    assert host_matches_profile(pi4, pi_host) == (True, [])
    ok, reasons = host_matches_profile(load_profile("raspberry-pi-5"), pi_host)
    assert not ok and any("Raspberry Pi 5" in r for r in reasons)
    x86 = {"arch": "x86_64", "cores_logical": 2, "board": None, "accelerators": []}
    ok, reasons = host_matches_profile(load_profile("jetson-orin-nano"), x86)
    assert not ok and any("arch" in r for r in reasons) and any("gpu" in r for r in reasons)
    assert host_matches_profile(load_profile("host"), x86) == (True, [])
    ncs_host = {"arch": "AMD64", "cores_logical": 8, "board": None, "accelerators": ["vpu"]}
    assert host_matches_profile(load_profile("intel-ncs2"), ncs_host) == (True, [])


def test_ci_example_profile_and_workflow():
    repo = Path(__file__).resolve().parents[1]
    prof = load_profile(repo / "examples" / "ci" / "github-runner.toml")
    assert prof.ep_names == ["cpu"] and prof.budgets.latency_ms
    workflow = (repo / "examples" / "github-actions-latency-gate.yml").read_text()
    for flag in ("--profile examples/ci/github-runner.toml", "--junit bench.xml", "--baseline", "--top1", "--device jetson-orin-nano",
                 "bench models/pr.onnx --against models/main.onnx", "--junit ab.xml"):
        assert flag in workflow


def test_legacy_status_is_shown_by_show_doctor_and_bench(tmp_path, tiny_model, capsys):
    ncs2, npu = load_profile("intel-ncs2"), load_profile("intel-npu")
    assert ncs2.legacy and "2022.3" in ncs2.legacy_message and "2023.0" in ncs2.status_note
    assert not npu.legacy and npu.legacy_message is None
    assert npu.eps[0].name == "openvino" and npu.eps[0].options["device_type"] == "NPU" and npu.hardware.accelerator == "npu"
    assert main(["profiles", "show", "intel-ncs2"]) == 0
    assert "legacy" in capsys.readouterr().out
    assert main(["profiles", "show", "intel-ncs2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "legacy"
    out = tmp_path / "bench.json"
    main(["bench", str(tiny_model), "--device", "intel-ncs2", "--allow-fallback", "-n", "5", "--warmup", "1", "--json", str(out)])
    captured = capsys.readouterr()
    assert "legacy" in captured.err
    assert any("legacy device profile" in n for n in json.loads(out.read_text())["notes"])


def test_doctor_reports_legacy_profiles(monkeypatch):
    from mnetctl import doctor

    monkeypatch.setattr(doctor, "probe_ep", lambda name, model=None: {"name": name, "loads": name == "cpu"})
    rows = {r["name"]: r for r in doctor.diagnose()["profiles"]}
    assert rows["intel-ncs2"]["status"] == "legacy" and "2022.3" in rows["intel-ncs2"]["status_note"]
    assert rows["intel-npu"]["status"] == "current"


def test_legacy_needs_a_reason(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text(GOOD.replace('name = "my-board"', 'name = "old"\nstatus = "legacy"'))
    with pytest.raises(BadInput, match="status_note"):
        parse_profile(path)
