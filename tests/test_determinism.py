"""The same command writes byte-identical models: every arch, both input formats, random and
pretrained weights, int8 checkpoint imports, and `mnetctl quantize` output.

Every model is made twice: once in this process and once in a child process with another
PYTHONHASHSEED, another working directory and another output folder (the input of each quantize
being that run's own float build), so neither hash order, nor paths, nor process state can leak
into the bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from mnetctl.cli import main
from mnetctl.meta import PREFIX
from mnetctl.weights.registry import PRETRAINED, pretrained_dir

ARCHS = ("v1", "v2", "v3-large", "v3-small")
FORMATS = ("float-nchw", "uint8-nhwc")


def _pretrained_jobs() -> dict[str, list[str]]:
    """One pretrained build per arch that ships a checkpoint (its smallest width), fp32 and int8."""
    jobs: dict[str, list[str]] = {}
    for arch in ARCHS:
        ckpts = sorted((c for c in PRETRAINED if c.arch == arch), key=lambda c: c.width)
        if not ckpts:
            continue
        c = ckpts[0]
        common = ["build", arch, "-w", str(c.width), "-r", str(c.trained_resolution), "--weights", "pretrained"]
        jobs[f"{arch}-pretrained-uint8"] = common + ["--input-format", "uint8-nhwc"]
        jobs[f"{arch}-pretrained-float"] = common
        jobs[f"{arch}-pretrained-int8"] = common + ["--precision", "int8"]
    return jobs


# name -> argv without -o (random weights at small sizes keep this fast; all the code paths are the same)
BUILDS: dict[str, list[str]] = {
    **{f"{arch}-random-{fmt}": ["build", arch, "-w", "0.5", "-r", "96", "--input-format", fmt, "--seed", "3"]
       for arch in ARCHS for fmt in FORMATS},
    **_pretrained_jobs(),
}
# quantize the (random) float-nchw builds of two families: plain V1 and V3 (SE, hard-swish, per-arch defaults)
QUANTIZE = {f"{name}.int8": ["quantize", "{src}", "--samples", "16", "--no-eval", "--no-bench", "--method", method]
            for name, method in (("v1-random-float-nchw", "minmax"), ("v3-small-random-float-nchw", "percentile"))}


def _make_all(out: Path) -> None:
    """Run every job into `out` (called in this process and, through -c, in the child)."""
    for name, argv in BUILDS.items():
        assert main([*argv, "-o", str(out / f"{name}.onnx"), "-q"]) == 0, name
    for name, argv in QUANTIZE.items():
        src = out / f"{name.removesuffix('.int8')}.onnx"
        args = [a.format(src=src) for a in argv]
        assert main([*args, "-o", str(out / f"{name}.onnx"), "--json"]) == 0, name


@pytest.fixture(scope="module")
def twice(tmp_path_factory) -> tuple[Path, Path]:
    here = tmp_path_factory.mktemp("here")
    there = tmp_path_factory.mktemp("there")
    child_cwd = tmp_path_factory.mktemp("cwd")
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "import test_determinism as t; t._make_all(Path(sys.argv[2]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", MNETCTL_DEBUG="1")
    child = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), str(there)], cwd=child_cwd,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _make_all(here)  # meanwhile, in this process
    finally:
        _, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-3000:]
    return here, there


@pytest.mark.parametrize("name", [*BUILDS, *QUANTIZE])
def test_byte_identical(name, twice):
    here, there = twice
    a, b = (here / f"{name}.onnx").read_bytes(), (there / f"{name}.onnx").read_bytes()
    assert len(a) == len(b) and a == b, f"{name}: the two runs differ"


def test_models_are_what_was_asked(twice):
    """The identical files are the intended ones (so the comparison above is not between two empty files)."""
    here, _ = twice
    for name, argv in BUILDS.items():
        model = onnx.load(str(here / f"{name}.onnx"))
        props = {p.key: p.value for p in model.metadata_props}
        keys = [p.key for p in model.metadata_props]
        assert keys == sorted(keys), f"{name}: metadata not sorted"
        assert props[PREFIX + "arch"] == argv[1]
        fmt = argv[argv.index("--input-format") + 1] if "--input-format" in argv else "float-nchw"
        assert props[PREFIX + "input_format"] == fmt
        assert props[PREFIX + "precision"] == ("int8" if "int8" in argv else "fp32")
        names = [n.name for n in model.graph.node]
        assert all(names) and len(set(names)) == len(names), f"{name}: unnamed or duplicate node names"
    for name in QUANTIZE:
        props = {p.key: p.value for p in onnx.load(str(here / f"{name}.onnx")).metadata_props}
        assert props[PREFIX + "precision"] == "int8" and PREFIX + "quant.calib_sha256" in props


def test_seed_and_checkpoint_location(tmp_path, capsys):
    """Another seed gives other bytes; a checkpoint copied elsewhere gives the same bytes."""
    base = ["build", "v1", "-w", "0.25", "-r", "64", "-q"]
    for seed in ("0", "0", "1"):
        assert main([*base, "--seed", seed, "-o", str(tmp_path / f"s{seed}-{len(list(tmp_path.iterdir()))}.onnx")]) == 0
    s0a, s0b, s1 = (tmp_path / n for n in ("s0-0.onnx", "s0-1.onnx", "s1-2.onnx"))
    assert s0a.read_bytes() == s0b.read_bytes() and s0a.read_bytes() != s1.read_bytes()

    ckpt = pretrained_dir() / next(c for c in PRETRAINED if c.arch == "v1").files[0]
    elsewhere = tmp_path / "copy" / ckpt.name
    elsewhere.parent.mkdir()
    shutil.copy(ckpt, elsewhere)
    outs = []
    for i, weights in enumerate((ckpt, elsewhere)):
        out = tmp_path / f"ckpt{i}.onnx"
        assert main(["build", "v1", "-w", "0.25", "-r", "128", "--weights", str(weights), "-o", str(out), "-q"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    capsys.readouterr()


def test_quantize_report_is_stable_apart_from_timings(tmp_path, capsys):
    """`quantize --json` twice: the same settings, calibration hash and sizes (only the seconds differ)."""
    src = tmp_path / "m.onnx"
    assert main(["build", "v1", "-w", "0.25", "-r", "64", "-o", str(src), "-q"]) == 0
    docs = []
    for i in range(2):
        capsys.readouterr()
        assert main(["quantize", str(src), "--samples", "8", "--no-eval", "--no-bench", "--json", "-o", str(tmp_path / f"q{i}.onnx")]) == 0
        doc = json.loads(capsys.readouterr().out)
        docs.append({k: v for k, v in doc.items() if not k.startswith("seconds") and k != "output"})
    assert docs[0] == docs[1]
    assert (tmp_path / "q0.onnx").read_bytes() == (tmp_path / "q1.onnx").read_bytes()
