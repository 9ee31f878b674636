"""`mnetctl tune`: candidate generation, the accuracy filter, the written profile (loaded and benched) and exit codes.

No timing is asserted: which configuration wins depends on the host."""

from __future__ import annotations

import json

import pytest

from mnetctl.cli import main
from mnetctl.profiles import load_profile, parse_profile
from mnetctl.tune import (GIVEN, LEVELS, Accuracy, Config, Row, TuneResult, accuracy_filter, candidates, profile_toml,
                          reference_config, write_profile)


@pytest.fixture()
def ov_profile(tmp_path):
    path = tmp_path / "ov-box.toml"
    path.write_text('name = "ov-box"\ndescription = "x"\nthreads = 3\n'
                    '[[eps]]\nname = "openvino"\n[eps.options]\ndevice_type = "CPU"\n[[eps]]\nname = "cpu"\n')
    return path


def test_candidates_from_profile_and_host():
    host = load_profile("host")
    got = candidates(host, cores=2, available_eps=["cpu"], variants=[GIVEN, "int8"])
    assert got[0].reference and got[0] == reference_config(host)
    assert got[0].threads is None and got[0].spinning is None and got[0].level is None  # the profile sets none
    others = got[1:]
    assert len(others) == 2 * 2 * 2 * len(LEVELS)  # variants x threads 1..2 x spinning x levels
    assert {c.threads for c in others} == {1, 2}
    assert {c.spinning for c in others} == {True, False}
    assert {c.level for c in others} == set(LEVELS)
    assert {c.variant for c in others} == {GIVEN, "int8"}
    assert len({c.name for c in got}) == len(got)  # names key the interleaved timing


def test_candidates_add_available_providers_with_the_profiles_options(ov_profile):
    prof = parse_profile(ov_profile)
    got = candidates(prof, cores=3, available_eps=["cpu", "openvino"])
    ref = got[0]
    assert ref.threads == 3 and [e for e, _ in ref.eps] == ["openvino", "cpu"]
    ov = [c for c in got[1:] if c.eps[0][0] == "openvino"]
    assert [c.threads for c in ov] == [1, 2, 3]
    assert all(dict(c.eps[0][1]) == {"device_type": "CPU"} and c.eps[1][0] == "cpu" for c in ov)
    assert len(got) == 1 + 3 * 2 * len(LEVELS) + 3


def test_accuracy_filter_drops_configs_outside_half_a_point():
    host = load_profile("host")
    configs = candidates(host, cores=1, available_eps=["cpu"], variants=[GIVEN, "int8", "int8-all-layers"])
    top1 = {}
    for c in configs:
        top1[(c.variant, c.eval_level)] = {GIVEN: 0.80, "int8": 0.796, "int8-all-layers": 0.79}[c.variant]
    top1[(GIVEN, "basic")] = 0.7949  # 0.51 points below
    kept, dropped = accuracy_filter(configs, Accuracy(top1, reference=0.80, images=100), max_drop=0.5)
    assert configs[0] in kept
    assert {c.variant for c in kept} == {GIVEN, "int8"}
    assert all(c.variant == "int8-all-layers" or (c.variant == GIVEN and c.level == "basic") for c in dropped)
    assert any(c.variant == GIVEN and c.level == "basic" for c in dropped)
    assert len(kept) + len(dropped) == len(configs)


def _result(winner: Config, reference: Config, kept_reference: bool, resolution: int = 128) -> TuneResult:
    rows = [Row(reference, 0.8), Row(winner, 0.8)]
    return TuneResult(model="m.onnx", resolution=resolution, profile="host", host="cpu, 2 CPUs", cores=2, eps=["cpu"],
                      rows=rows, reference=reference, winner=reference if kept_reference else winner, candidate=winner,
                      check_ratio=1.04 if kept_reference else 0.9, check_ci=(0.8, 1.1), check_rounds=5,
                      kept_reference=kept_reference, accuracy_images=10, max_drop=0.5, other_load=0.0, seconds=1.0)


def test_a_slower_winner_is_never_written():
    host = load_profile("host")
    ref = reference_config(host)
    fast = Config(GIVEN, (("cpu", ()),), 1, False, "extended")
    text = profile_toml(_result(fast, ref, kept_reference=True), host, "mine")
    assert "\nthreads =" not in text and "[session]" not in text and "own configuration kept" in text


def test_written_profile_loads_and_bench_runs_it(tiny_model, tmp_path, capsys):
    host = load_profile("host")
    win = Config(GIVEN, (("cpu", ()),), 1, False, "extended")
    path = write_profile(_result(win, reference_config(host), kept_reference=False), host, tmp_path / "My Host.toml")
    prof = parse_profile(path)
    assert prof.name == "my-host" and prof.threads == 1 and prof.resolution == 128
    assert prof.session.intra_op_spinning is False and prof.session.graph_optimization == "extended"
    assert prof.session.config() == {"session.intra_op.allow_spinning": "0"}
    rc = main(["bench", str(tiny_model), "--profile", str(path), "-n", "5", "--warmup", "1", "--json", "-"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["threads"] == 1 and out["profile"] == "my-host"
    assert any("graph_optimization=extended" in n for n in out["notes"])


def test_bad_session_settings_in_a_profile_are_refused(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\ndescription = "x"\n[[eps]]\nname = "cpu"\n[session]\ngraph_optimization = "max"\n')
    with pytest.raises(Exception) as err:
        parse_profile(path)
    assert "session.graph_optimization" in str(err.value)


def test_cli_tune_writes_a_profile_bench_loads(tiny_model, tmp_path, capsys):
    prof, js, out = tmp_path / "tuned.toml", tmp_path / "t.json", tmp_path / "m.tuned.onnx"
    rc = main(["tune", str(tiny_model), "--max-seconds", "2", "--limit", "10", "--no-int8", "--runtimes", "",
               "--write-profile", str(prof), "--json", str(js), "-o", str(out)])
    assert rc == 0
    data = json.loads(js.read_text())
    assert data["reference"]["reference"] and data["check"]["ratio_p50"] > 0
    assert not out.exists()  # only an int8 winner writes a model file
    assert data["written"]["profile"] == str(prof)
    assert all(r["variant"] == GIVEN for r in data["rows"])
    if data["check"]["kept_reference"]:
        assert data["winner"]["reference"]
    else:
        assert data["check"]["ratio_p50"] <= 1.0
    capsys.readouterr()
    assert main(["bench", str(tiny_model), "--profile", str(prof), "-n", "3", "--warmup", "0", "--json", "-"]) == 0


@pytest.mark.slow
def test_cli_tune_int8_variants(tiny_model, tmp_path):
    js, out = tmp_path / "t.json", tmp_path / "m.tuned.onnx"
    rc = main(["tune", str(tiny_model), "--max-seconds", "2", "--limit", "10", "--json", str(js), "-o", str(out),
               "--runtimes", ""])  # onnxruntime's levers only: a LiteRT winner writes a .tflite instead
    assert rc == 0
    data = json.loads(js.read_text())
    assert {"int8", "int8-all-layers"} <= {r["variant"] for r in data["rows"]}
    assert out.exists() == (data["winner"]["variant"] != GIVEN)


def test_cli_exit_codes(tiny_model, tmp_path, ov_profile):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    assert main(["tune", str(bad), "--max-seconds", "1"]) == 2
    assert main(["tune", str(tiny_model), "-D", "no-such-device"]) == 2
    assert main(["tune", str(tiny_model), "--max-seconds", "0"]) == 2
    # a profile whose provider this onnxruntime lacks: exit 3, before any work
    import onnxruntime as ort

    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        assert main(["tune", str(tiny_model), "-D", str(ov_profile)]) == 3
