"""Fuzzing: build options, and corrupted model files fed to inspect / eval / bench.

Every outcome must be either a valid result (exit 0: for build, a model that passes the ONNX checker
and runs in ONNX Runtime with the asked-for output shape) or a clean error (exit 2, one `error:`
line, no traceback). Never exit 1 from an unexpected exception, never a crash or a hang.

Corrupted models run in a separate worker process (one for the whole test, fed job after job), so a
native crash or a runaway allocation inside ONNX Runtime shows up as a failed example naming the
bytes instead of taking pytest down. The whole file runs in well under a minute.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mnetctl.cli import main

ARCHS = ["v1", "v2", "v3-large", "v3-small"]
# CI runs a fixed (derandomized) set of examples; MNETCTL_FUZZ_SCALE=20 explores 20x more, with fresh random seeds.
SCALE = float(os.environ.get("MNETCTL_FUZZ_SCALE", "1"))
FIXED = SCALE == 1


def clean_error(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 2), f"exit {code}: {err}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err


# ---------------------------------------------------------------------------- build options

widths = st.one_of(
    st.floats(min_value=1e-4, max_value=1.5).map(lambda w: f"{w:.6g}"),
    st.sampled_from(["0", "-0.5", "nan", "inf", "-inf", "4.5", "1e300", "abc", ""]),
)
resolutions = st.one_of(st.integers(-50, 160), st.sampled_from(["31", "32", "4096", "4097", "99999999999", "12.5", "x"]))
classes = st.one_of(st.none(), st.integers(-5, 3000).map(str), st.sampled_from(["100001", "1e3", "ten"]))
formats = st.sampled_from(["float-nchw", "uint8-nhwc", "float-nhwc", "NCHW", ""])
opsets = st.one_of(st.integers(0, 32).map(str), st.sampled_from(["-1", "17.5"]))
archs = st.sampled_from([*ARCHS, "V2", "mobilenet_v3_small", "v4", ""])


@settings(max_examples=int(100 * SCALE), deadline=None, derandomize=FIXED, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arch=archs, width=widths, resolution=resolutions, n_classes=classes, fmt=formats, opset=opsets)
@example(arch="v2", width="0.35", resolution="96", n_classes="10", fmt="uint8-nhwc", opset="13")
@example(arch="v3-large", width="nan", resolution="224", n_classes=None, fmt="float-nchw", opset="17")
def test_build_options(arch, width, resolution, n_classes, fmt, opset, tmp_path, capsys):
    out = tmp_path / "fuzz.onnx"
    out.unlink(missing_ok=True)
    argv = ["build", arch, "--width", width, "--resolution", resolution, "--input-format", fmt, "--opset", opset,
            "-o", str(out), "-q"]
    if n_classes is not None:
        argv[2:2] = ["--classes", n_classes]
    code = main(argv)
    err = capsys.readouterr().err
    clean_error(code, err)
    if code != 0:
        assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
        return
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    res, k = int(resolution), int(n_classes or 1000)
    assert math.isfinite(float(width)) and float(width) > 0 and 32 <= res and 1 <= k
    if res <= 160:  # run it: the asked-for output, finite
        from mnetctl.runtime import cpu_session

        sess = cpu_session(out, threads=1)
        shape = (1, 3, res, res) if fmt == "float-nchw" else (1, res, res, 3)
        dtype = np.float32 if fmt == "float-nchw" else np.uint8
        (logits,) = sess.run(None, {"input": np.full(shape, 100, dtype)})
        assert logits.shape == (1, k) and np.isfinite(logits).all()


# ---------------------------------------------------------------------------- corrupted model bytes

WORKER = r"""
import contextlib, io, json, os, sys, tempfile, faulthandler
faulthandler.enable(file=os.fdopen(os.dup(2), "w"))  # a native crash still reaches the real stderr
from mnetctl.cli import main
for line in sys.stdin:
    argv = json.loads(line)
    with tempfile.TemporaryFile() as cap:  # file descriptor 2: Python's and onnxruntime's native stderr
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(cap.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
        except BaseException as exc:  # must not happen: main() handles everything
            code = -1
            sys.stderr.write(f"Traceback (escaped main): {type(exc).__name__}: {exc}\n")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        cap.seek(0)
        err = cap.read().decode("utf-8", "replace")
    sys.stdout.write(json.dumps({"code": code, "err": err}) + "\n")
    sys.stdout.flush()
"""


class Worker:
    """A long-lived `mnetctl` process that runs one argv per line, so a crash is an example's failure."""

    def __init__(self, cwd: Path):
        env = dict(os.environ, MNETCTL_DEBUG="", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], cwd=cwd, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, argv: list[str], timeout: float = 60.0) -> tuple[int, str]:
        import select

        assert self.proc.poll() is None, f"the worker died earlier: {self.proc.stderr.read()[-2000:]}"
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise AssertionError(f"{argv} did not finish in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise AssertionError(f"{argv} crashed the process (exit {self.proc.returncode}): "
                                 f"{self.proc.stderr.read()[-2000:]}")
        doc = json.loads(line)
        return doc["code"], doc["err"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, bytes]:
    """Valid models to corrupt: float and uint8-input V1, a V3-Small (SE, hard-swish), an int8 model."""
    from mnetctl.builder import build_model

    out = {
        "v1-float": build_model("v1", 0.25, 32),
        "v1-uint8": build_model("v1", 0.25, 32, input_format="uint8-nhwc"),
        "v3s-float": build_model("v3-small", 0.25, 32, classes=10),
    }
    return {k: m.SerializeToString(deterministic=True) for k, m in out.items()}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = Worker(tmp_path_factory.mktemp("worker"))
    yield w
    w.close()


def _non_models() -> dict[str, bytes]:
    """Valid protobuf messages that are not a usable model."""
    h = onnx.helper
    tensor = h.make_tensor("w", onnx.TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    node = h.make_node("Relu", ["x"], ["y"])
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])])
    return {
        "tensor": tensor.SerializeToString(),
        "node": node.SerializeToString(),
        "graph": graph.SerializeToString(),
        "empty-model": onnx.ModelProto().SerializeToString(),
        "relu-model": h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString(),  # not an image classifier
        "future-opset": h.make_model(graph, opset_imports=[h.make_opsetid("", 99)]).SerializeToString(),
    }


class Corrupt(tuple):
    """(label, bytes), shown by its label and size when hypothesis reports a failing example."""

    def __repr__(self) -> str:
        return f"Corrupt({self[0]!r}, {len(self[1])} bytes)"


@st.composite
def corrupted(draw, corpus: dict[str, bytes]) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "random", "non-model"]))
    if kind == "non-model":
        name = draw(st.sampled_from(sorted(_non_models())))
        return Corrupt((f"non-model:{name}", _non_models()[name]))
    if kind == "random":
        return Corrupt(("random", draw(st.binary(min_size=0, max_size=4096))))
    name = draw(st.sampled_from(sorted(corpus)))
    data = bytearray(corpus[name])
    if kind == "truncate":
        cut = draw(st.integers(0, len(data) - 1))
        return Corrupt((f"{name}:truncate@{cut}", bytes(data[:cut])))
    if kind == "flip":
        flips = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 7)), min_size=1, max_size=16))
        for pos, bit in flips:
            data[pos] ^= 1 << bit
        return Corrupt((f"{name}:flip{flips[:4]}", bytes(data)))
    start = draw(st.integers(0, len(data) - 1))
    chunk = draw(st.binary(min_size=1, max_size=64))
    data[start:start + len(chunk)] = chunk
    return Corrupt((f"{name}:splice@{start}+{len(chunk)}", bytes(data[: len(corpus[name])])))


@pytest.mark.parametrize("command", ["inspect", "eval", "bench"])
def test_corrupted_models(command, corpus, worker, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"corrupt-{command}")
    args = {"inspect": [], "eval": ["--limit", "2", "--batch", "2", "--threads", "1"],
            "bench": ["-n", "2", "--warmup", "0", "--threads", "1", "-q"]}[command]
    seen: list[str] = []

    @settings(max_examples=int(60 * SCALE), deadline=None, derandomize=FIXED)
    @given(case=corrupted(corpus))
    def check(case):
        label, data = case
        path = folder / "model.onnx"
        path.write_bytes(data)
        code, err = worker.run([command, str(path), *args])
        seen.append(label)
        clean_error(code, err)
        if code == 2:
            assert "model.onnx" in err or "ONNX Runtime" in err, err  # the error names the file

    check()
    assert len(seen) >= 50 * SCALE


def test_uncorrupted_models_pass_through_the_worker(corpus, worker, tmp_path):
    """The harness itself: an intact model gives exit 0 for each command (so exit 2 above means a rejection)."""
    path = tmp_path / "ok.onnx"
    path.write_bytes(corpus["v1-float"])
    for argv in (["inspect", str(path)], ["eval", str(path), "--limit", "2"], ["bench", str(path), "-n", "2", "-q"]):
        code, err = worker.run(argv)
        assert code == 0, err


def test_known_corruptions(corpus, worker, tmp_path):
    """Corruptions the fuzzer found, kept as fixed cases: each is a clean exit 2 naming the file."""
    h = onnx.helper
    # a node name that is not UTF-8 (protobuf hands it back as bytes)
    data = bytearray(corpus["v1-float"])
    at = data.find(b"stem.conv\x1a") + 11
    data[at] = 0x80
    (tmp_path / "name.onnx").write_bytes(bytes(data))
    # a Conv whose group is 0: loads in ONNX Runtime, fails when run
    model = onnx.load_from_string(corpus["v3s-float"])
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and ".se." in n.name)
    next(a for a in conv.attribute if a.name == "group").i = 0
    (tmp_path / "group0.onnx").write_bytes(model.SerializeToString())
    # an opset no runtime knows
    relu = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", 1, [1, 3])],
                        [h.make_tensor_value_info("y", 1, [1, 3])])
    (tmp_path / "opset99.onnx").write_bytes(h.make_model(relu, opset_imports=[h.make_opsetid("", 99)]).SerializeToString())
    cases = [
        (["inspect", "name.onnx"], "not UTF-8"), (["eval", "name.onnx", "--limit", "2"], "not UTF-8"),
        (["eval", "group0.onnx", "--limit", "2"], "cannot run"), (["bench", "group0.onnx", "-n", "2"], "cannot run"),
        (["predict", "group0.onnx", str(default_image())], "cannot run"),
        (["bench", "opset99.onnx", "-n", "2"], "cannot load"),
    ]
    for argv, needle in cases:
        code, err = worker.run([argv[0], str(tmp_path / argv[1]), *argv[2:]])
        assert code == 2 and needle in err and argv[1] in err, (argv, err)
        clean_error(code, err)


def default_image() -> Path:
    from mnetctl.data import default_val_dir

    return next(iter(sorted(default_val_dir().rglob("*.JPEG"))))
