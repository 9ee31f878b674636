"""Runtimes behind one interface (mnetctl.engines): ONNX Runtime, LiteRT and OpenVINO's own runtime.

Real models only: the shipped V1 0.25 TFLite checkpoint (LiteRT), the cheapest MobileNets built from it or with
random weights (ONNX Runtime, OpenVINO). No timing is asserted; only that each runtime runs, reports the same
statistics and agrees with the others on real images.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from mnetctl.cli import main
from mnetctl.errors import BadInput, EnvironmentMissing

REPO = Path(__file__).resolve().parents[1]
CORAL = REPO / "models" / "pretrained" / "coral"
V1_025 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"

litert = pytest.importorskip("ai_edge_litert")
openvino = pytest.importorskip("openvino")


# --------------------------------------------------------------------------------------------------------------
# choosing the engine


def test_engine_follows_the_file_and_refuses_a_mismatch(tiny_model):
    from mnetctl.engines import engine_for

    assert engine_for(V1_025) == "litert"
    assert engine_for(tiny_model) == "onnxruntime"
    assert engine_for(tiny_model, "openvino") == "openvino"
    with pytest.raises(BadInput, match="runtime litert runs .tflite files"):
        engine_for(tiny_model, "litert")
    with pytest.raises(BadInput, match="is a TFLite model"):
        engine_for(V1_025, "openvino")
    with pytest.raises(BadInput, match="runtime must be one of onnxruntime, litert, openvino"):
        engine_for(tiny_model, "tensorflow")


def test_engine_options_are_checked(tmp_path):
    from mnetctl.engines import check_engine_options
    from mnetctl.profiles import parse_profile

    assert check_engine_options("openvino", {"device": "CPU", "performance_hint": "LATENCY"})
    with pytest.raises(BadInput, match="engine_options.num_threads: not an option of the openvino runtime"):
        check_engine_options("openvino", {"num_threads": 2})
    with pytest.raises(BadInput, match="delegate must be one of xnnpack, builtin, gpu"):
        check_engine_options("litert", {"delegate": "nnapi"})
    with pytest.raises(BadInput, match="needs delegate_library"):
        check_engine_options("litert", {"delegate": "gpu"})
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ndescription = "x"\nengine = "litert"\n[engine_options]\ndevice = "GPU"\n')
    with pytest.raises(BadInput, match=r"bad.toml: .*engine_options.device: not an option of the litert runtime"):
        parse_profile(bad)


def test_shipped_runtime_profiles_and_runtime_words(tmp_path):
    from mnetctl.profiles import load_profile, parse_profile

    lite, ov, host = load_profile("host-litert"), load_profile("host-openvino"), load_profile("host")
    assert (lite.engine, lite.engine_options) == ("litert", {"delegate": "xnnpack"})
    assert ov.engine == "openvino" and ov.engine_options["performance_hint"] == "LATENCY"
    assert host.engine == "onnxruntime" and host.ep_names == ["cpu"]
    # `runtime = "openvino"` alone (the words field naming an engine) sets the engine; no eps needed
    words = tmp_path / "words.toml"
    words.write_text('name = "words"\ndescription = "x"\nruntime = "openvino"\n')
    prof = parse_profile(words)
    assert prof.engine == "openvino" and prof.ep_names == ["cpu"]


# --------------------------------------------------------------------------------------------------------------
# bench: same statistics and report on every runtime


def test_bench_litert_and_openvino_report_like_onnxruntime(tiny_model):
    from mnetctl.bench import bench

    ort = bench(tiny_model, threads=1, iterations=5, warmup=1)
    lite = bench(V1_025, runtime="litert", threads=1, iterations=5, warmup=1)
    ov = bench(tiny_model, runtime="openvino", threads=1, iterations=5, warmup=1)
    keys = set(ort.as_dict())
    for res, engine in ((lite, "litert"), (ov, "openvino")):
        doc = res.as_dict()
        assert set(doc) == keys and set(doc["latency_ms"]) == set(ort.as_dict()["latency_ms"])
        assert doc["runtime"]["engine"] == engine and doc["iterations"] == 5 and doc["latency_ms"]["p50"] > 0
        assert doc["fallback"]["fell_back"] is False and doc["requested_eps"] == []
    assert ort.as_dict()["runtime"]["engine"] == "onnxruntime"
    assert lite.providers == ["litert:xnnpack"] and lite.model["format"] == "tflite"
    assert lite.model["input"]["input"] == {"shape": [1, 128, 128, 3], "dtype": "uint8"}
    assert ov.providers == ["openvino:CPU"] and ov.runtime["threads_used"] == 1


def test_bench_on_the_litert_profile_and_refusals(tiny_model):
    from mnetctl.bench import bench

    res = bench(V1_025, profile="host-litert", threads=1, iterations=3, warmup=0)
    assert res.runtime["delegate"] == "xnnpack" and res.profile == "host-litert"
    with pytest.raises(BadInput, match="runtime litert runs .tflite files"):
        bench(tiny_model, profile="host-litert", iterations=3)
    with pytest.raises(BadInput, match="eps and ep_options are onnxruntime's"):
        bench(V1_025, eps="cpu", iterations=3)
    with pytest.raises(BadInput, match="batch 4 cannot be used with the litert runtime"):
        bench(V1_025, batch=4, iterations=3)


def test_bench_cli_json_on_litert(tmp_path):
    out = tmp_path / "lite.json"
    assert main(["bench", str(V1_025), "--runtime", "litert", "-t", "1", "-n", "4", "--warmup", "0", "--json", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "mnetctl.bench/1" and doc["runtime"]["engine"] == "litert" and doc["iterations"] == 4


# --------------------------------------------------------------------------------------------------------------
# eval / predict / compare on the other runtimes


def test_eval_tflite_on_litert_agrees_with_compare(pretrained_small):
    """The TFLite handle's own preprocessing (TF convention) gives LiteRT the same inputs compare does."""
    from mnetctl.compare import compare
    from mnetctl.evaluate import evaluate

    res = evaluate(V1_025, limit=24, threads=1)
    cmp = compare(pretrained_small, V1_025, threads=1, iterations=2, warmup=0, limit=24)
    assert res.n == 24 and res.predictions == cmp.litert.predictions
    assert res.top1 == pytest.approx(cmp.litert.correct / cmp.labelled)


def test_openvino_eval_agrees_with_onnxruntime(pretrained_small):
    from mnetctl.evaluate import evaluate

    ort = evaluate(pretrained_small, limit=40, threads=1)
    ov = evaluate(pretrained_small, limit=40, threads=1, runtime="openvino")
    agree = sum(a == b for a, b in zip(ort.predictions, ov.predictions))
    assert ov.n == 40 and agree >= 39 and abs(ov.top1 - ort.top1) <= 1 / 40


def test_predict_tflite_and_compare_on_openvino(pretrained_small):
    from mnetctl.compare import compare
    from mnetctl.data import default_val_dir
    from mnetctl.evaluate import predict

    tench = default_val_dir() / "n01440764" / "n01440764_tench.JPEG"
    (pred,) = predict(V1_025, [tench], top=3)
    assert len(pred.top) == 3 and abs(sum(p for *_, p in pred.top)) <= 1.0 + 1e-6
    cmp = compare(pretrained_small, V1_025, threads=1, iterations=3, warmup=0, limit=6, runtime="openvino")
    assert cmp.onnx.name == "openvino" and cmp.onnx.detail == "openvino:CPU" and cmp.agreement >= 5 / 6
    with pytest.raises(BadInput, match="onnxruntime or openvino"):
        compare(pretrained_small, V1_025, limit=2, runtime="litert")


# --------------------------------------------------------------------------------------------------------------
# bad input, missing runtimes and devices


def test_tflite_that_is_not_a_model_is_one_line_exit_2(tmp_path, capsys):
    from mnetctl.data import default_val_dir

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64 + b"not a flatbuffer")
    tench = default_val_dir() / "n01440764" / "n01440764_tench.JPEG"
    for argv in (["bench", str(junk), "-n", "2"], ["eval", str(junk), "--limit", "2"],
                 ["predict", str(junk), str(tench)], ["bench", str(junk), "--runtime", "litert", "-n", "2"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "is not a TFLite model" in err and len(err.splitlines()) == 1, err


def test_missing_runtime_is_exit_3_with_the_pip_hint(tiny_model, monkeypatch, capsys):
    from mnetctl.engines import require

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(EnvironmentMissing, match="OpenVINO") as exc:
        require("openvino")
    assert "mnetctl[openvino]" in exc.value.hint
    assert main(["bench", str(tiny_model), "--runtime", "openvino", "-n", "2"]) == 3
    assert "mnetctl[openvino]" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    assert main(["bench", str(V1_025), "-n", "2"]) == 3
    assert "mnetctl[litert]" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # LiteRT's Delegate.__del__ after a failed load
def test_unavailable_devices_are_exit_3(tiny_model):
    from mnetctl.engines import load
    from mnetctl.openvino_runtime import available_devices

    if "NPU" not in available_devices():
        with pytest.raises(EnvironmentMissing, match="OpenVINO device NPU is not available"):
            load("openvino", tiny_model, options={"device": "NPU"})
    with pytest.raises(EnvironmentMissing, match="delegate library .* cannot be loaded"):
        load("litert", V1_025, options={"delegate": "gpu", "delegate_library": "libtensorflowlite_gpu_delegate.so"})


# --------------------------------------------------------------------------------------------------------------
# sweep over several devices and runtimes


def test_sweep_over_onnxruntime_and_openvino_is_one_frontier(tmp_path):
    from mnetctl.sweep import SweepSettings, plan_variants, run_sweep

    variants, _ = plan_variants(["v1"], [0.25], [128], ["fp32"], "random")
    res = run_sweep(variants, SweepSettings(weights="random", limit=8, device="host,host-openvino", iterations=10,
                                            max_seconds=5), cache_dir=tmp_path / "cache")
    by = {(r.name, r.device): r for r in res.variants}
    assert set(by) == {("v1-0.25-128-fp32", "host"), ("v1-0.25-128-fp32", "host-openvino")}
    assert by[("v1-0.25-128-fp32", "host-openvino")].runtime == "openvino"
    assert by[("v1-0.25-128-fp32", "host-openvino")].providers == ["openvino:CPU"]
    assert res.timing["method"] == "interleaved" and res.settings["device"] == "host,host-openvino"
    assert any(r.pareto for r in res.variants)
    assert all(r.p50_ci95_ms is not None for r in res.variants)


def test_sweep_litert_device_needs_the_exporter(monkeypatch):
    import mnetctl.stages as stages
    from mnetctl.sweep import SweepSettings, prepare

    monkeypatch.setitem(sys.modules, "mnetctl.export.tflite", None)  # as in an mnetctl without the writer
    with pytest.raises(EnvironmentMissing, match="no TFLite exporter"):
        prepare(SweepSettings(weights="random", limit=2, device="host,host-litert"))
    with pytest.raises(EnvironmentMissing):
        stages.tflite_exporter()


def test_sweep_runs_a_litert_device_on_the_exported_file(tmp_path, monkeypatch):
    """The plumbing of a LiteRT device: each variant goes through the export stage and LiteRT runs that file.
    The exporter here is a stand-in that writes the shipped checkpoint the V1 0.25 weights come from (the real
    exporter is `mnetctl.export.tflite`); eval and timing are LiteRT's own on that file."""
    import mnetctl.stages as stages
    from mnetctl.sweep import SweepSettings, plan_variants, run_sweep

    def export(model, out, precision="auto", on_progress=None):
        shutil.copyfile(V1_025, out)
        return Path(out)

    monkeypatch.setattr(stages, "tflite_exporter", lambda: export)
    variants, _ = plan_variants(["v1"], [0.25], [128], ["fp32"], "pretrained")
    res = run_sweep(variants, SweepSettings(limit=8, device="host,host-litert", iterations=10, max_seconds=5),
                    cache_dir=tmp_path / "cache")
    lite = next(r for r in res.variants if r.device == "host-litert")
    assert lite.runtime == "litert" and lite.model.endswith(".tflite") and lite.providers == ["litert:xnnpack"]
    assert lite.cached.get("export_tflite") is False and lite.n_images == 8


# --------------------------------------------------------------------------------------------------------------
# tune across runtimes


def test_tune_tries_openvino_and_a_win_there_names_it(tiny_model, tmp_path):
    from dataclasses import replace

    from mnetctl.profiles import load_profile, parse_profile
    from mnetctl.tune import profile_toml, tune

    res = tune(tiny_model, "host", max_seconds=2, limit=4, int8=False, runtimes=["openvino"], cores=1)
    ov_rows = [r for r in res.rows if r.config.engine == "openvino"]
    assert res.runtimes == ["openvino"] and ov_rows and all(r.screen_ratio is not None for r in ov_rows)
    forced = replace(res, winner=ov_rows[0].config, kept_reference=False)  # as if OpenVINO had won the check
    path = tmp_path / "ov.toml"
    path.write_text(profile_toml(forced, load_profile("host"), "ov"))
    prof = parse_profile(path)
    assert prof.engine == "openvino" and prof.engine_options["performance_hint"] == "LATENCY" and prof.threads == 1


def test_runtime_flag_refused_where_it_cannot_apply(tiny_model, capsys):
    assert main(["bench", str(tiny_model), str(tiny_model), "--runtime", "openvino", "-n", "2"]) == 2
    assert "--runtime openvino times one model" in capsys.readouterr().err


def test_quantize_defaults_per_runtime_are_data():
    from mnetctl.quant.settings import RUNTIME_DEFAULTS, default_settings, resolve_settings

    assert set(RUNTIME_DEFAULTS) == {"onnxruntime", "openvino"}
    for runtime, by_arch in RUNTIME_DEFAULTS.items():
        for arch, changes in by_arch.items():
            qs = default_settings(arch, 1.0, runtime)
            assert all(getattr(qs, k) == (tuple(v) if isinstance(v, list) else v) for k, v in changes.items())
    assert default_settings("v3-small", 1.0, "openvino") == default_settings("v3-small", 1.0)  # not measured there
    assert resolve_settings("v2", 1.0, "openvino", method="entropy").method == "entropy"
    with pytest.raises(BadInput, match="runtime must be one of onnxruntime, openvino for quantize"):
        default_settings("v2", 1.0, "litert")


@pytest.mark.parametrize("profile", ["pixel-7-litert-gpu", "snapdragon-8-gen-2-litert-gpu"])
def test_phone_gpu_delegate_profiles_say_plainly_they_cannot_run_here(profile, capsys):
    """The LiteRT GPU-delegate alternatives of the phone profiles: the delegate library is not on this host, so
    bench is one line and exit 3 (never a silent CPU run)."""
    from mnetctl.cli import main
    from mnetctl.profiles import load_profile

    prof = load_profile(profile)
    assert prof.engine == "litert" and prof.engine_options["delegate"] == "gpu"
    tflite = Path(__file__).resolve().parents[1] / "models/pretrained/coral/mobilenet_v1_0.25_128_quant.tflite"
    assert main(["bench", str(tflite), "--device", profile, "-n", "2"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "delegate library" in err and "Traceback" not in err, err
