"""What the CLI prints whatever the terminal: odd COLUMNS, closed or broken stdout, narrow tables, internal errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mnetctl.cli import main

REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
    env.pop("MNETCTL_DEBUG", None)
    return env


def _sh(script: str, **extra: str) -> subprocess.CompletedProcess:
    """Run a bash line with `M` = this tree's `python -m mnetctl`."""
    cmd = f"M() {{ {sys.executable} -m mnetctl \"$@\"; }}; {script}"
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=_env(**extra),
                          timeout=120)


# -- C10: COLUMNS=0 ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", ["0", "1", "abc", "-5"])
def test_error_line_survives_any_columns_value(columns):
    res = _sh("M build v1 --width nan", COLUMNS=columns)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--width" in res.stderr and "nan" in res.stderr


def test_columns_zero_still_prints_tables(tiny_model):
    res = _sh(f"M inspect '{tiny_model}'", COLUMNS="0")
    assert res.returncode == 0 and "MACs" in res.stdout and "total" in res.stdout


# -- C11: closed stdout, broken pipes, a full stdout ------------------------------------------------------------------

def test_closed_stdout_is_one_line_exit_2(tiny_model):
    res = _sh(f"M inspect '{tiny_model}' --json >&-")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "stdout" in res.stderr


def _into_closed_pipe(*args: str) -> tuple[int, str]:
    """Run with stdout a pipe whose reader has gone (closed before the command can write): exit code, stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "mnetctl", *args], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=120), err


@pytest.mark.parametrize("args", [["inspect", "{model}", "--all"], ["inspect", "{model}", "--json"], ["archs"], ["predict", "{model}"]])
def test_broken_pipe_exits_141_quietly(tiny_model, args):
    images = sorted(str(p) for p in (REPO / "data" / "imagenet-sample" / "val").rglob("*.JPEG"))[:3]
    argv = [a.format(model=tiny_model) for a in args] + (images if args[0] == "predict" else [])
    code, err = _into_closed_pipe(*argv)
    assert code == 141, err
    assert err == ""


def test_head_in_a_pipeline_sees_141(tiny_model):
    res = _sh(f"M inspect '{tiny_model}' --all | (exec 0<&-; true)")  # the reader closes before mnetctl writes
    assert res.returncode == 141 and res.stderr == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("json_out", [True, False])
def test_full_stdout_names_stdout(tiny_model, json_out):
    res = _sh(f"M inspect '{tiny_model}' {'--json' if json_out else ''} >/dev/full")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "stdout" in res.stderr and "No space left" in res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr


# -- tables that fit the terminal ----------------------------------------------------------------------------------

def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d[\d,.]*\d|\d", text))


def _fits(out: str, width: int) -> bool:
    """Every line but the one-line note on left-out columns fits the width (at 40 columns the columns that are
    always shown may not fit; the table is then printed wider, never cut)."""
    return width < 80 or all(len(line) <= width for line in out.splitlines() if not line.startswith("more columns"))


def _run(capsys, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", ["80", "40"])
def test_inspect_table_keeps_every_number_whole(tiny_model, capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    doc = json.loads(_run(capsys, "inspect", str(tiny_model), "--json"))
    out = _run(capsys, "inspect", str(tiny_model))
    assert "…" not in out
    for layer in doc["layers"]:
        assert f"{layer['macs']:,}" in out and f"{layer['params']:,}" in out
    assert _fits(out, int(columns))


@pytest.mark.parametrize("columns", ["80", "40"])
def test_profiles_list_drops_columns_not_digits(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    doc = json.loads(_run(capsys, "profiles", "list", "--json"))
    out = _run(capsys, "profiles", "list")
    assert "…" not in out
    assert _fits(out, int(columns))
    for prof in doc:
        assert prof["name"] in out
        assert f"<= {prof['budgets']['latency_ms']:g} ms" in out
    if columns == "40":
        assert "more columns: --wide" in out
        wide = _run(capsys, "profiles", "list", "--wide")
        assert "more columns" not in wide and "providers" in wide


def test_profiles_show_wraps_at_spaces_only(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    doc = json.loads(_run(capsys, "profiles", "show", "host", "--json"))
    out = _run(capsys, "profiles", "show", "host")
    assert "…" not in out
    assert f"{doc['budgets']['latency_ms']} ms" in out


def _fake_sweep(n: int = 3):
    variants = [SimpleNamespace(name=f"v2-w1.0-r224-int8-{i}", macs=300_812_345 + i, size_mb=3.52 + i, top1=0.71834,
                                top5=0.90123, p50_ms=49.123456 + i, p90_ms=60.111 + i, speedup=1.6 + i, pareto=i == 0,
                                cached={"build": True, "eval": i == 0}, latency=lambda m, i=i: 49.1 + i)
                for i in range(n)]
    return SimpleNamespace(variants=variants)


@pytest.mark.parametrize("columns", ["80", "40"])
def test_sweep_table_never_cuts_latencies(capsys, monkeypatch, columns):
    from mnetctl.cli.sweep import _print_table

    monkeypatch.setenv("COLUMNS", columns)
    _print_table(_fake_sweep(), "raspberry-pi-4", "p50", wide=False)
    out = capsys.readouterr().out
    assert "…" not in out
    for v in _fake_sweep().variants:
        assert v.name in out and f"{v.p50_ms:.3f}" in out and f"{100 * v.top1:.1f}%" in out
    assert _fits(out, int(columns))
    _print_table(_fake_sweep(), "raspberry-pi-4", "p50", wide=True)
    wide = capsys.readouterr().out
    assert "more columns" not in wide
    assert all(f"{v.p90_ms:.3f}" in wide and f"{v.macs / 1e6:.1f}" in wide for v in _fake_sweep().variants)


def test_sweep_table_keeps_the_metric_column(capsys, monkeypatch):
    from mnetctl.cli.sweep import _print_table

    monkeypatch.setenv("COLUMNS", "40")
    _print_table(_fake_sweep(), "host", "p90", wide=False)
    out = capsys.readouterr().out
    assert all(f"{v.p90_ms:.3f}" in out for v in _fake_sweep().variants)


@pytest.mark.parametrize("columns", ["80", "40"])
def test_archs_table_numbers_whole(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    doc = json.loads(_run(capsys, "archs", "--json"))
    out = _run(capsys, "archs")
    assert "…" not in out
    note = next((line for line in out.splitlines() if line.startswith("more columns")), "")
    for row in doc["archs"]:
        assert row["arch"] in out
        assert f"{row['macs_at_default'] / 1e6:.1f} M" in out or "MACs / params" in note


def test_print_table_prints_wider_rather_than_cut(capsys, monkeypatch):
    from mnetctl.cli._table import Col, print_table

    monkeypatch.setenv("COLUMNS", "20")
    dropped = print_table([Col("a"), Col("b"), Col("c", drop=1)], [["123456789.123", "987654321.987", "5"]])
    out = capsys.readouterr().out
    assert dropped == ["c"]
    assert "123456789.123" in out and "987654321.987" in out and "…" not in out


# -- exit 4 for internal errors --------------------------------------------------------------------------------------

def test_internal_error_is_exit_4_one_line(tiny_model, capsys, monkeypatch):
    import mnetctl.analysis

    def boom(*a, **k):
        raise RuntimeError("layer table\ncorrupted")

    monkeypatch.setattr(mnetctl.analysis, "analyze", boom)
    monkeypatch.delenv("MNETCTL_DEBUG", raising=False)
    assert main(["inspect", str(tiny_model)]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError" in err and "Traceback" not in err
    monkeypatch.setenv("MNETCTL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="corrupted"):
        main(["inspect", str(tiny_model)])
