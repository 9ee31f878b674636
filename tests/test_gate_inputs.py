"""Gate values, profiles, baselines and TFLite partners that must be refused with exit 2 and one line naming the
file, key or flag, never a crash (exit 1/4) or a gate that silently measures something else."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from mnetctl.bench import MAX_DURATION_S, parse_duration, timed_runs
from mnetctl.budgets import Gates, load_baseline
from mnetctl.cli import main
from mnetctl.errors import BadInput
from mnetctl.profiles import MAX_RUNS
from mnetctl.sweep import plan_variants

REPO = Path(__file__).resolve().parents[1]
CORAL = REPO / "models" / "pretrained" / "coral"
PROFILE = 'name = "x"\ndescription = "d"\n{extra}\n[[eps]]\nname = "cpu"\n{options}'


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from mnetctl.builder import build_model, save_model

    root = tmp_path_factory.mktemp("gates")
    f = {"root": root, "model": save_model(build_model("v1", 0.25, 128), root / "m.onnx"),
         "v2": save_model(build_model("v2", 0.35, 96), root / "v2.onnx")}
    for name, extra, options in (
        ("iter", "iterations = 1000000000000", ""), ("iterf", "iterations = 1e12", ""),
        ("warm", "warmup = 1000000000000", ""), ("tbool", "threads = true", ""), ("t256", "threads = 256", ""),
        ("batch", "batch = 100000000", ""), ("opt", "", "[eps.options]\nfoo = 1\n"),
        ("arena", "", '[eps.options]\nuse_arena = "banana"\n'),
    ):
        f[name] = root / f"{name}.toml"
        f[name].write_text(PROFILE.format(extra=extra, options=options))
    # a model whose batch axis is fixed at 4
    proto = onnx.load(str(f["model"]))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    f["fixed4"] = root / "fixed4.onnx"
    onnx.save(proto, str(f["fixed4"]))
    assert main(["bench", str(f["model"]), "-n", "3", "--warmup", "0", "-q", "--json", str(root / "base.json")]) == 0
    assert main(["bench", str(f["v2"]), "-n", "3", "--warmup", "0", "-q", "--json", str(root / "base_v2.json")]) == 0
    good = json.loads((root / "base.json").read_text())
    for name, change in (("prov5", {"providers": 5}), ("provnull", {"providers": [None]}),
                         ("lat_list", {"latency_ms": [1, 2]})):
        (root / f"{name}.json").write_text(json.dumps({**good, **change}))
    for name, value in (("p50nan", "NaN"), ("p50inf", "Infinity"), ("p50neg", "-1")):
        doc = json.dumps({**good, "latency_ms": {**good["latency_ms"], "p50": 12345.0}}).replace("12345.0", value)
        (root / f"{name}.json").write_text(doc)
    depth = 100_000
    (root / "deep.json").write_text('{"latency_ms": {"p50": 1}, "providers": ' + "[" * depth + "]" * depth + "}")
    (root / "bom.json").write_text(json.dumps(good), encoding="utf-8-sig")
    return f


def _refused(argv: list[str], capsys, *needles: str) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------- C2: huge counts


@pytest.mark.parametrize("name, key", [("iter", "iterations"), ("iterf", "iterations"), ("warm", "warmup"),
                                       ("tbool", "threads")])
def test_profile_counts_out_of_range_name_the_file_and_key(files, capsys, name, key):
    _refused(["bench", files["model"], "--profile", files[name], "-q"], capsys, f"{name}.toml", f"'{key}'")


def test_timed_runs_never_preallocates_an_unbounded_count():
    with pytest.raises(BadInput, match="iterations must be at most"):
        timed_runs(lambda _: None, None, MAX_RUNS * 10**5, None)
    with pytest.raises(BadInput, match="duration"):
        timed_runs(lambda _: None, None, None, float("inf"))
    with pytest.raises(BadInput, match="more than a day"):
        parse_duration(f"{MAX_DURATION_S * 2}s")


# ------------------------------------------------------------------------------ U3: messages of profile values


def test_profile_threads_and_batch_are_named_as_the_profiles(files, capsys):
    line = _refused(["bench", files["model"], "--profile", files["t256"], "-q"], capsys, "t256.toml", "threads = 256")
    assert "--threads" not in line.split(" - hint")[0]
    line = _refused(["bench", files["model"], "--profile", files["batch"], "-q"], capsys, "batch.toml", "batch = 100000000")
    assert "--batch" not in line.split(" - hint")[0]


def test_fixed_batch_model_is_benched_at_its_own_batch(files, capsys):
    assert main(["bench", str(files["fixed4"]), "-n", "2", "--warmup", "0", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["batch"] == 4
    _refused(["bench", files["fixed4"], "-n", "2", "--batch", "2"], capsys, "--batch 2", "fixed batch of 4")


# --------------------------------------------------------------------------- U10: EP options the registry knows


def test_unknown_cpu_ep_options_are_refused(files, capsys):
    _refused(["bench", files["model"], "-n", "2", "--ep-option", "cpu.use_arena=banana"], capsys, "--ep-option", "use_arena")
    _refused(["bench", files["model"], "-n", "2", "--ep-option", "cpu.foo=1"], capsys, "--ep-option", "'foo'")
    _refused(["bench", files["model"], "--profile", files["opt"], "-n", "2"], capsys, "opt.toml", "'foo'")
    _refused(["bench", files["model"], "--profile", files["arena"], "-n", "2"], capsys, "arena.toml", "use_arena")
    assert main(["bench", str(files["model"]), "-n", "2", "-q", "--ep-option", "cpu.use_arena=0"]) == 0


# --------------------------------------------------------------------------------- C8, U4, U9: baseline shape


@pytest.mark.parametrize("name, key", [("prov5", "providers"), ("provnull", "providers"), ("lat_list", "latency_ms"),
                                       ("p50nan", "latency_ms"), ("p50inf", "latency_ms"), ("p50neg", "latency_ms"),
                                       ("deep", "")])
def test_hand_edited_baselines_are_refused(files, capsys, name, key):
    _refused(["bench", files["model"], "-n", "2", "-q", "--baseline", files["root"] / f"{name}.json"], capsys,
             "--baseline", f"{name}.json", key)


def test_baseline_with_a_bom_loads(files):
    assert load_baseline(files["root"] / "bom.json")["latency_ms"]["p50"] > 0


def test_baseline_given_as_data_is_checked_too():
    with pytest.raises(BadInput, match="providers"):
        Gates(baseline={"latency_ms": {"p50": 1.0}, "providers": 5}).checked()


# ------------------------------------------------------------------------------------ D4: another model's data


def test_baseline_of_another_model_is_refused_unless_allowed(files, capsys):
    _refused(["bench", files["model"], "-n", "2", "-q", "--baseline", files["root"] / "base_v2.json"], capsys,
             "--baseline", "base_v2.json", "arch v2 != v1", "--allow-other-baseline")
    # allowed, or its own baseline: measured and judged (0 or 1 on a noisy shared host), never refused
    assert main(["bench", str(files["model"]), "-n", "2", "--json", "-", "--tolerance", "1000%",
                 "--baseline", str(files["root"] / "base_v2.json"), "--allow-other-baseline"]) in (0, 1)
    doc = json.loads(capsys.readouterr().out)
    assert any("another model" in n for n in doc["notes"]) and any(c["name"] == "regression" for c in doc["checks"])
    assert main(["bench", str(files["model"]), "-n", "2", "--json", "-", "--tolerance", "1000%",
                 "--baseline", str(files["root"] / "base.json")]) in (0, 1)
    assert not any("another model" in n for n in json.loads(capsys.readouterr().out)["notes"])


def test_compare_refuses_a_tflite_of_another_resolution(files, capsys):
    pytest.importorskip("ai_edge_litert")
    _refused(["compare", files["model"], "--tflite", CORAL / "mobilenet_v2_1.0_224_quant.tflite", "-n", "2", "--limit", "1"],
             capsys, "--tflite", "input resolution 224 != 128", "--allow-mismatch")


def test_compare_checks_threads_before_any_session(files, capsys):
    pytest.importorskip("ai_edge_litert")
    _refused(["compare", files["model"], "--tflite", CORAL / "mobilenet_v1_0.25_128_quant.tflite", "--threads", "100000"],
             capsys, "--threads", "100000")
    _refused(["compare", files["model"], "--tflite", CORAL / "mobilenet_v1_0.25_128_quant.tflite", "-n", str(10**12)],
             capsys, "--iterations")


# ------------------------------------------------------------------------------------------------ U10: sweep grid


def test_duplicate_sweep_values_run_once_with_a_note():
    variants, notes = plan_variants(["v1", "v1"], [0.25] * 2000, [128, 128], ["fp32", "fp32"], "random")
    assert len(variants) == 1
    assert {n.split()[0] for n in notes} == {"archs", "widths", "resolutions", "precisions"}
    assert all("more than once" in n for n in notes)
