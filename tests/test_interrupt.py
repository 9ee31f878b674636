"""Ctrl-C (SIGINT) in the middle of build, quantize and sweep leaves no partial output and no temporary files.

Each test starts `python -m mnetctl` in a subprocess with a private TMPDIR, waits until the command
is at a known stage (a temporary folder or file of that stage appears) and sends SIGINT. Whatever the
moment, the output either does not exist or is complete, nothing named *.tmp is left next to it,
and the private TMPDIR is empty again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import onnx
import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")


def interrupt(argv: list[str], when: Callable[[], bool], cwd: Path, tmpdir: Path, settle: float = 0.0,
              timeout: float = 180, sig: int = signal.SIGINT):
    """Run mnetctl, send `sig` (SIGINT) once `when()` has held for `settle` seconds; (return code, stderr, sent?).

    `settle` keeps the signal out of the microseconds in which Python's `tempfile.TemporaryDirectory`
    has made its folder but not yet registered its cleanup (a window no caller can close).
    """
    env = dict(os.environ, TMPDIR=str(tmpdir), MNETCTL_DEBUG="")
    proc = subprocess.Popen([sys.executable, "-m", "mnetctl", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    fired = False
    since = None
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if when():
                since = since or time.monotonic()
                if time.monotonic() - since >= settle:
                    proc.send_signal(sig)
                    fired = True
                    break
            else:
                since = None
            time.sleep(0.002)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, fired


# mnetctl exits 130 on Ctrl-C. Now and then CPython ends the process by re-raising SIGINT on itself
# after mnetctl has handled the interrupt (seen here as -2, by a shell as 130): both mean "interrupted".
INTERRUPTED = (130, -signal.SIGINT)


def leftovers(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffixes]


def temp_files(tmpdir: Path) -> list[Path]:
    """What a run left in its TMPDIR, except `.ses`: onnxruntime writes that one on import and keeps it."""
    return [p for p in tmpdir.iterdir() if p.name != ".ses"]


@pytest.fixture()
def dirs(tmp_path) -> dict[str, Path]:
    out = {name: tmp_path / name for name in ("out", "cwd", "tmp")}
    for p in out.values():
        p.mkdir()
    return out


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> Path:
    """V1 0.5 at 160 px: quantizing it takes a few seconds, long enough to be interrupted at each stage."""
    from mnetctl.builder import build_model, save_model

    return save_model(build_model("v1", 0.5, 160), tmp_path_factory.mktemp("src") / "m.onnx")


def test_ctrl_c_while_a_build_is_written(dirs):
    """SIGINT the moment the temporary model file appears: no model, no temporary file."""
    out = dirs["out"]
    target = out / "b.onnx"
    rc, err, fired = interrupt(["build", "v1", "-w", "2", "-r", "224", "-o", str(target)],
                               lambda: any(out.glob(".b.onnx.*.tmp")), dirs["cwd"], dirs["tmp"])
    assert fired, f"the build finished before its output was being written: {err}"
    assert rc in INTERRUPTED and "interrupted" in err and "Traceback" not in err, err
    assert not leftovers(out, dirs["cwd"], dirs["tmp"])
    if target.exists():  # SIGINT landed after the rename: the model must then be complete
        from mnetctl.builder import build_model

        assert target.read_bytes() == build_model("v1", 2.0, 224).SerializeToString(deterministic=True)
    assert [p.name for p in out.iterdir()] in ([], ["b.onnx"])
    assert not temp_files(dirs["tmp"])


STAGES = {
    # onnxsim + ORT pre-processing run inside mnetctl's private temporary folder
    "simplify": lambda d: any(d["tmp"].glob("mnetctl-quant-*")),
    # calibration runs ORT's augmented model, written into that folder
    "calibrate": lambda d: any(d["tmp"].glob("mnetctl-quant-*/augmented*.onnx")),
    # the int8 file exists under a temporary name next to the output while it is evaluated before publishing
    "verify": lambda d: any(d["out"].glob(".q.onnx.*.tmp")),
}


# calibrate: well after the calibration model appears, so that the signal lands in the calibration loop
SETTLE = {"simplify": 0.02, "calibrate": 0.15, "verify": 0.02}


@pytest.mark.parametrize("stage", list(STAGES))
def test_ctrl_c_during_quantize(stage, dirs, float_model):
    before = sorted(p.name for p in float_model.parent.iterdir())
    rc, err, fired = interrupt(
        ["quantize", str(float_model), "--samples", "40", "--eval-limit", "40", "--no-bench", "-o", str(dirs["out"] / "q.onnx")],
        lambda: STAGES[stage](dirs), dirs["cwd"], dirs["tmp"], settle=SETTLE[stage])
    assert fired, f"quantize never reached the {stage} stage: {err}"
    assert rc in INTERRUPTED and "interrupted" in err and "Traceback" not in err, err
    assert not (dirs["out"] / "q.onnx").exists()
    assert not any(dirs["out"].iterdir()), list(dirs["out"].iterdir())
    assert not temp_files(dirs["tmp"])  # mnetctl's and ORT's temporary folders are gone
    assert not any(dirs["cwd"].iterdir())  # e.g. no augmented_model.onnx in the working directory
    assert sorted(p.name for p in float_model.parent.iterdir()) == before  # nothing written next to the input


def test_ctrl_c_during_sweep_then_resume(dirs):
    """Interrupt a sweep while it quantizes: no report, no partial cache entry; a rerun completes from the cache."""
    out, cache = dirs["out"] / "results", dirs["out"] / "cache"
    argv = ["sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "96,128", "--weights", "random",
            "--precisions", "fp32,int8", "--limit", "16", "--iterations", "10", "-o", str(out), "--cache", str(cache)]
    rc, err, fired = interrupt(argv, lambda: any(dirs["tmp"].glob("mnetctl-quant-*")), dirs["cwd"], dirs["tmp"],
                               settle=0.02)
    assert fired, err
    assert rc in INTERRUPTED and "interrupted" in err and "Traceback" not in err, err
    assert not (out / "sweep.json").exists() and not (out / "report.md").exists()
    assert not leftovers(dirs["out"], dirs["cwd"]) and not temp_files(dirs["tmp"])
    built = sorted(cache.rglob("*.onnx"))
    assert built, "the first build should have been cached before the interrupt"
    for path in built:  # every cache entry is complete
        onnx.checker.check_model(onnx.load(str(path)))
    for path in cache.rglob("*.json"):
        json.loads(path.read_text())

    res = subprocess.run([sys.executable, "-m", "mnetctl", *argv], cwd=dirs["cwd"], capture_output=True, text=True,
                         env=dict(os.environ, TMPDIR=str(dirs["tmp"])), timeout=300)
    assert res.returncode == 0, res.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["variants"]) == 4
    assert any(v["cached"]["build"] for v in doc["variants"])  # the interrupted run's build was reused


def test_sigterm_during_quantize_cleans_up_like_ctrl_c(dirs, float_model):
    """SIGTERM (timeout, docker stop, CI cancel) runs the same cleanup as Ctrl-C and exits 143."""
    rc, err, fired = interrupt(
        ["quantize", str(float_model), "--samples", "40", "--eval-limit", "40", "--no-bench", "-o", str(dirs["out"] / "q.onnx")],
        lambda: STAGES["verify"](dirs), dirs["cwd"], dirs["tmp"], settle=0.02, sig=signal.SIGTERM)
    assert fired, err
    assert rc == 143 and "interrupted" in err and "Traceback" not in err, (rc, err)
    assert not any(dirs["out"].iterdir()), list(dirs["out"].iterdir())
    assert not temp_files(dirs["tmp"]) and not any(dirs["cwd"].iterdir())
