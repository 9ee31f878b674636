"""Does int8 pay? `quant.speed` on real models and sessions (no timing asserts: the fields, the verdict logic,
the hints and the report), `quantize`'s latency row and warning, and the sweep's speed-up column."""

from __future__ import annotations

import json

import pytest

import mnetctl.interleave as interleave_mod
from mnetctl.errors import BadInput, EnvironmentMissing
from mnetctl.interleave import Interleaved
from mnetctl.quant.pipeline import quantize_model
from mnetctl.quant.speed import (RUNS_PER_BLOCK, TINY_MS, SpeedOptions, SpeedReport, measure_speedup, pay_hint)
from mnetctl.runtime import ep_status

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def pair(tiny_model, tmp_path_factory):
    """The random-weight V1 0.25/128 and its int8 model (no evaluation, no timing)."""
    out = tmp_path_factory.mktemp("speed") / "tiny.int8.onnx"
    quantize_model(tiny_model, out, samples=10)
    return tiny_model, out


@pytest.fixture
def int8_slower(monkeypatch):
    """Interleaved timing as measured, except that every int8 run took 1.25x the float runs of its round."""
    real = interleave_mod.interleave

    def slower(runnables, **kwargs):
        t = real(runnables, **kwargs)
        rounds = [{"fp32": r["fp32"], "int8": [1.25 * x for x in r["fp32"]]} for r in t.rounds]
        return Interleaved(t.names, rounds, t.round_load, t.other_load, t.runs, t.block_warmup, t.warmup)

    monkeypatch.setattr(interleave_mod, "interleave", slower)


def test_measure_speedup_reports_both_models(pair):
    fp32, int8 = pair
    rep = measure_speedup(fp32, int8, rounds=3, warmup=1, threads=1)
    assert rep.device == "host" and rep.threads == 1
    assert rep.providers_fp32 == CPU and rep.providers_int8 == CPU
    assert rep.rounds == 3 and rep.runs_per_block == RUNS_PER_BLOCK and rep.warmup == 1
    for value in (rep.fp32_p50_ms, rep.fp32_p90_ms, rep.int8_p50_ms, rep.int8_p90_ms, rep.ratio):
        assert value > 0
    lo, hi = rep.ratio_ci95
    assert 0 < lo <= rep.ratio <= hi
    assert rep.speedup == pytest.approx(1 / rep.ratio)
    assert isinstance(rep.pays, bool) and rep.pays == (hi < 1)
    assert (rep.hint is None) == rep.pays and (rep.warning() is None) == rep.pays
    doc = json.loads(json.dumps(rep.as_dict()))
    assert doc["pays"] == rep.pays and doc["verdict"] in ("faster", "slower", "same")
    assert doc["speedup_ci95"][0] <= doc["speedup"] <= doc["speedup_ci95"][1]
    assert doc["summary"].startswith(f"{rep.speedup:.2f}x")


def test_not_paying_names_what_would(pair, int8_slower):
    fp32, int8 = pair
    rep = measure_speedup(fp32, int8, rounds=2, warmup=0)
    assert rep.ratio == pytest.approx(1.25) and rep.ratio_ci95 == pytest.approx((1.25, 1.25))
    assert not rep.pays and rep.verdict == "slower" and rep.summary() == "0.80x (slower)"
    assert rep.hint  # which one depends on the measured float p50 (tiny model or not): see the unit tests below
    assert rep.warning() == f"int8 is slower than float on host (0.80x): {rep.hint}"


def test_verdicts_from_the_interval():
    def rep(ratio, lo, hi):
        return SpeedReport("host", "cpu", CPU, CPU, None, 3, 10, 0, 1.0, 1.0, ratio, ratio, ratio, (lo, hi), None,
                           hint="x")

    assert rep(0.6, 0.55, 0.7).verdict == "faster" and rep(0.6, 0.55, 0.7).warning() is None
    assert rep(1.1, 1.05, 1.2).verdict == "slower"
    same = rep(0.98, 0.9, 1.04)
    assert same.verdict == "same" and not same.pays
    assert same.warning().startswith("int8 is not measurably faster than float on host (1.02x)")


def _hint(**changes):
    args = dict(arch="v2", settings={"weight_grid": "channel", "activations": "uint8", "fmt": "qdq"}, fp32_p50_ms=3.0,
                providers=CPU, flags={"avx2", "avx512_vnni"}, machine="x86_64")
    args.update(changes)
    return pay_hint(**args)


def test_hints_name_a_setting_or_a_runtime():
    assert "too small" in _hint(fp32_p50_ms=TINY_MS / 2) and "larger widths" in _hint(fp32_p50_ms=TINY_MS / 2)
    # a setting that slows the int8 kernels is named first, whatever the model's size
    assert "--weight-grid channel" in _hint(fp32_p50_ms=TINY_MS / 2, settings={"weight_grid": "exact"})
    v3 = _hint(arch="v3-small")
    assert "hard-swish" in v3 and "openvino" in v3
    assert "--weight-grid channel" in _hint(arch="v1", settings={"weight_grid": "exact"})
    assert "--activations uint8" in _hint(settings={"activations": "int8", "fmt": "qdq"})
    no_vnni = _hint(flags={"avx2"})
    assert "VNNI" in no_vnni and "--reduce-range" in no_vnni
    assert "--reduce-range" not in _hint(flags={"avx2"}, settings={"reduce_range": True})
    assert "asimddp" in _hint(flags={"neon"}, machine="aarch64")
    assert "--op-profile" in _hint() and "openvino" in _hint()  # a VNNI CPU, the fast settings: another EP, or the slow layers
    assert "asimddp" not in _hint(flags={"asimd", "asimddp"}, machine="aarch64")


def test_options_are_checked_before_any_work(tmp_path):
    with pytest.raises(BadInput, match="unknown device profile"):
        SpeedOptions(device="no-such-board").checked()
    with pytest.raises(BadInput, match="not both"):
        SpeedOptions(device="host", profile=tmp_path / "p.toml").checked()
    with pytest.raises(BadInput, match="^rounds must be >= 1"):
        SpeedOptions(rounds=0).checked()
    opts = SpeedOptions(device="raspberry-pi-4").checked()
    assert opts.device.name == "raspberry-pi-4" and opts.threads == opts.device.threads


@pytest.mark.skipif(ep_status("tensorrt").available, reason="TensorRT is available here")
def test_missing_provider_fails_before_quantizing(tiny_model, tmp_path):
    """jetson-nano asks for TensorRT: exit 3 before any quantization work, and nothing is written."""
    out = tmp_path / "q.onnx"
    with pytest.raises(EnvironmentMissing, match="TensorRT"):
        quantize_model(tiny_model, out, samples=4, speed=SpeedOptions(device="jetson-nano"))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_quantize_model_fills_speed(tiny_model, tmp_path):
    out = tmp_path / "q.onnx"
    rep = quantize_model(tiny_model, out, samples=4, speed=SpeedOptions(rounds=2, warmup=0))
    assert out.exists() and rep.speed is not None and rep.seconds_speed > 0
    doc = rep.as_dict()
    assert doc["speed"]["rounds"] == 2 and doc["speed"]["device"] == "host" and isinstance(doc["speed"]["pays"], bool)


def test_cli_latency_row_and_warning(tiny_model, tmp_path, capsys, int8_slower):
    from mnetctl.cli import main

    rc = main(["quantize", str(tiny_model), "-o", str(tmp_path / "q.onnx"), "--samples", "4", "--no-eval",
               "--bench-rounds", "2", "-t", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "p50 latency" in out and "0.80x (slower)" in out
    warning = [line for line in out.splitlines() if line.startswith("int8 is slower than float on host (0.80x): ")]
    assert len(warning) == 1, out


def test_cli_json_speed_and_no_bench(tiny_model, tmp_path, capsys):
    from mnetctl.cli import main

    rc = main(["quantize", str(tiny_model), "-o", str(tmp_path / "a.onnx"), "--samples", "4", "--no-eval",
               "--bench-rounds", "2", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["speed"]["rounds"] == 2 and doc["speed"]["providers_int8"] == CPU

    rc = main(["quantize", str(tiny_model), "-o", str(tmp_path / "b.onnx"), "--samples", "4", "--no-eval", "--no-bench"])
    out = capsys.readouterr().out
    assert rc == 0 and "p50 latency" not in out and "int8 is" not in out

    rc = main(["quantize", str(tiny_model), "-o", str(tmp_path / "c.onnx"), "--no-bench", "--device", "host"])
    assert rc == 2 and "--no-bench cannot be combined with --device" in capsys.readouterr().err
    rc = main(["quantize", str(tiny_model), "-o", str(tmp_path / "c.onnx"), "--bench-rounds", "0"])
    assert rc == 2 and "--bench-rounds must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "c.onnx").exists()


def test_sweep_rows_carry_the_speedup_of_int8_twins(tmp_path, capsys):
    from mnetctl.cli import main

    out = tmp_path / "out"
    argv = ["sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "96", "--weights", "random",
            "--precisions", "fp32,int8", "--limit", "4", "--iterations", "5", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--wide"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = {v["name"]: v for v in json.loads((out / "sweep.json").read_text())["variants"]}
    fp32, int8 = rows["v1-0.25-96-fp32"], rows["v1-0.25-96-int8"]
    assert fp32["speedup"] is None
    assert int8["speedup"] == pytest.approx(fp32["p50_ms"] / int8["p50_ms"], rel=1e-3)
    assert "x fp32" in printed and f"{int8['speedup']:.2f}x" in printed
    assert "x fp32" in (out / "report.md").read_text()
