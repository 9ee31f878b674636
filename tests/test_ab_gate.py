"""`mnetctl bench NEW --against OLD`: the A/B gate's statistics on synthetic timings, real models, the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mnetctl.ab import ab_bench, gate_stats, round_ratios, verdict
from mnetctl.cli import main


def synthetic_rounds(slowdown: float, rounds: int = 20, runs: int = 20, noise: float = 0.03, drift: float = 0.2,
                     seed: int = 1) -> list[dict[str, list[float]]]:
    """Rounds of blocks of timings (s): a 5 ms OLD and NEW = slowdown x OLD, a per-round host drift both share,
    lognormal per-run noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        host = 5e-3 * rng.lognormal(0.0, drift)  # this round's speed of the host, alike for both blocks
        out.append({"old": list(host * rng.lognormal(0.0, noise, runs)),
                    "new": list(slowdown * host * rng.lognormal(0.0, noise, runs))})
    return out


def test_verdict_against_the_limit():
    assert verdict(0.98, 1.02, 0.05) == "ok"
    assert verdict(1.06, 1.20, 0.05) == "regression"
    assert verdict(1.01, 1.07, 0.05) == "inconclusive"
    assert verdict(0.80, 1.30, 0.05) == "inconclusive"
    assert verdict(0.99, 1.01, 0.0) == "inconclusive"  # tolerance 0: a tie is not a pass


@pytest.mark.parametrize("slowdown,expected", [(1.0, "ok"), (1.03, "ok"), (1.15, "regression")])
def test_gate_on_synthetic_timings(slowdown, expected):
    s = gate_stats(synthetic_rounds(slowdown), tolerance=0.05)
    assert s.verdict == expected, s
    assert s.ci_low <= s.ratio <= s.ci_high and s.rounds == 20
    assert s.ci_low < slowdown * 1.02 and s.ci_high > slowdown * 0.98  # the interval is around the true ratio


def test_drift_between_rounds_cancels_in_the_paired_ratio():
    # the host speed changes by ~50% between rounds: pooled medians are noisy, per-round ratios are not
    rounds = synthetic_rounds(1.0, drift=0.5)
    s = gate_stats(rounds, tolerance=0.05)
    assert s.verdict == "ok" and s.ci_high - s.ci_low < 0.05


def test_very_noisy_timings_are_inconclusive():
    rounds = synthetic_rounds(1.05, rounds=8, runs=5, noise=0.6, seed=3)
    s = gate_stats(rounds, tolerance=0.05)
    assert s.verdict == "inconclusive" and s.ci_low < 1.05 < s.ci_high


def test_same_samples_same_interval():
    rounds = synthetic_rounds(1.04, rounds=12, noise=0.2, seed=7)
    assert gate_stats(rounds, 0.05) == gate_stats(rounds, 0.05)
    assert gate_stats(rounds, 0.05, seed=0) == gate_stats(rounds, 0.05, seed=0)
    ratios = round_ratios(rounds)
    assert gate_stats(rounds, 0.05).ratio == pytest.approx(float(np.median(ratios)))


# ---------------------------------------------------------------------------------------------------------------
# Real models: MobileNet V2 (random weights) at 256 px against the same at 224 px


@pytest.fixture(autouse=True)
def few_rounds(monkeypatch):
    """Fewer rounds before the first verdict than the CLI's default, to keep the tests short."""
    import mnetctl.ab

    monkeypatch.setattr(mnetctl.ab, "MIN_ROUNDS", 10)


@pytest.fixture(scope="module")
def v2_pair(tmp_path_factory):
    from mnetctl.builder import build_model, save_model

    folder = tmp_path_factory.mktemp("ab")
    big, small = folder / "v2-0.35-256.onnx", folder / "v2-0.35-224.onnx"
    save_model(build_model("v2", 0.35, 256), big)
    save_model(build_model("v2", 0.35, 224), small)
    return big, small


def test_v2_at_256_against_224_is_a_regression(v2_pair):
    big, small = v2_pair
    r = ab_bench(big, small, threads=1, max_seconds=10, warmup=2, min_rounds=10)
    assert r.verdict == "regression", r.summary()
    assert r.stats.ratio > 1.05 and r.stats.ci_low > 1.05
    assert r.inputs["new"]["shape"] == [1, 3, 256, 256] and r.inputs["old"]["shape"] == [1, 3, 224, 224]
    assert any("different inputs" in n for n in r.notes)
    ab = r.as_dict()["ab"]
    assert {"ratio", "ci_low", "ci_high", "verdict", "rounds", "other_load", "tolerance"} <= set(ab)
    assert ab["tolerance"] == 0.05 and ab["rounds"] >= 10


def test_a_model_against_itself_is_not_a_regression(v2_pair):
    _, small = v2_pair
    r = ab_bench(small, small, threads=1, max_seconds=3, warmup=2, min_rounds=10)
    assert r.verdict in ("ok", "inconclusive"), r.summary()
    assert r.as_dict()["passed"] is True


# ---------------------------------------------------------------------------------------------------------------
# CLI


def test_cli_regression_exit_1_with_json_and_junit(v2_pair, tmp_path, capsys):
    big, small = v2_pair
    out, junit, md = tmp_path / "ab.json", tmp_path / "ab.xml", tmp_path / "ab.md"
    rc = main(["bench", str(big), "--against", str(small), "-t", "1", "--tolerance", "5%", "--max-seconds", "10",
               "--json", str(out), "--junit", str(junit), "--markdown", str(md), "-q"])
    assert rc == 1
    assert "regression" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["schema"] == "mnetctl.bench-ab/1" and doc["ab"]["verdict"] == "regression" and doc["passed"] is False
    assert doc["new"]["model"] == str(big) and doc["old"]["model"] == str(small)
    case = ET.parse(junit).getroot().find(".//testcase")
    assert "regression" in case.get("name") and case.find("failure") is not None
    assert "REGRESSION" in md.read_text()


def test_cli_self_passes_and_strict_inconclusive_fails(v2_pair, tmp_path, capsys, monkeypatch):
    _, small = v2_pair
    junit = tmp_path / "self.xml"
    rc = main(["bench", str(small), "--against", str(small), "-t", "1", "--max-seconds", "2", "--junit", str(junit),
               "--json", "-"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ab"]["verdict"] in ("ok", "inconclusive")
    assert ET.parse(junit).getroot().find(".//failure") is None

    import mnetctl.ab

    monkeypatch.setattr(mnetctl.ab, "verdict", lambda lo, hi, tol: "inconclusive")  # as on a very noisy host
    monkeypatch.setattr(mnetctl.ab, "MIN_ROUNDS", 2)
    args = ["bench", str(small), "--against", str(small), "-t", "1", "--max-seconds", "0.1", "-q"]
    assert main(args) == 0
    assert "inconclusive" in capsys.readouterr().err
    junit = tmp_path / "strict.xml"
    assert main(args + ["--strict", "--junit", str(junit)]) == 1
    assert ET.parse(junit).getroot().find(".//failure") is not None


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--tolerance", "lots"], "--tolerance"),
        (["--tolerance", "5"], "--tolerance"),
        (["--tolerance", "-5%"], "--tolerance"),
        (["--max-seconds", "0"], "--max-seconds"),
        (["--baseline", "last.json"], "--baseline"),
        (["--iterations", "10"], "--iterations"),
        (["--scenario", "offline"], "--scenario"),
        (["--device", "host", "--profile", "x.toml"], "not both"),
    ],
)
def test_cli_bad_usage_exits_2(v2_pair, capsys, extra, fragment):
    big, small = v2_pair
    assert main(["bench", str(big), "--against", str(small), *extra]) == 2
    assert fragment in capsys.readouterr().err


def test_cli_against_takes_one_model_each_side(v2_pair, capsys):
    big, small = v2_pair
    assert main(["bench", str(big), "--against", str(small), "--against", str(big)]) == 2
    assert "--against takes one model" in capsys.readouterr().err
    assert main(["bench", str(big), str(small), "--against", str(small)]) == 2
    assert "--against gates one model" in capsys.readouterr().err
    assert main(["bench", str(big), "--max-seconds", "5"]) == 2
    assert "--against" in capsys.readouterr().err
