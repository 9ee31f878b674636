"""Every bad input, across every command: one line on stderr naming the file or flag, exit code 2,
no traceback, nothing written.

The table runs the CLI in-process through `mnetctl.cli.main(argv)`; a few rows run again through
`python -m mnetctl` to check the real stderr and exit status of the process. Each row snapshots
every file under a private folder (inputs, outputs and the working directory) before and after
the command: a bad input must leave that folder exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest

from mnetctl.cli import main
from mnetctl.data import default_val_dir

REPO = Path(__file__).resolve().parents[1]
CORAL = REPO / "models" / "pretrained" / "coral"
V1_025 = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
HEAD_ONLY = CORAL / "mobilenet_quant_v1_224_head_layers.tflite"  # a TFLite classifier head, not a MobileNet
TENCH = default_val_dir() / "n01440764" / "n01440764_tench.JPEG"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Bad (and a few good) inputs, built once; every path a row may name, as format fields."""
    from mnetctl.builder import build_model, save_model

    root = tmp_path_factory.mktemp("bad")
    p: dict[str, Path] = {"root": root, "out": root / "out", "cwd": root / "cwd"}
    p["out"].mkdir()
    p["cwd"].mkdir()
    p["model"] = save_model(build_model("v1", 0.25, 128), root / "m.onnx")
    p["hires"] = save_model(build_model("v1", 0.25, 4096), root / "hires.onnx")  # ~5 GB per image at inference
    good = p["model"].read_bytes()
    (root / "empty.onnx").write_bytes(b"")
    (root / "junk.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "image.onnx").write_bytes(TENCH.read_bytes())
    (root / "half.onnx").write_bytes(good[: len(good) // 2])
    tensor = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    (root / "tensor.onnx").write_bytes(tensor.SerializeToString())  # valid protobuf, not a model
    (root / "dir.onnx").mkdir()
    # loads in ONNX Runtime, fails when run: an SE Conv whose group is 0
    broken = build_model("v3-small", 0.25, 32, classes=10)
    conv = next(n for n in broken.graph.node if n.op_type == "Conv" and ".se." in n.name)
    next(a for a in conv.attribute if a.name == "group").i = 0
    (root / "group0.onnx").write_bytes(broken.SerializeToString())
    # a valid ONNX model that is not an image classifier
    h = onnx.helper
    relu = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", 1, [1, 3])],
                        [h.make_tensor_value_info("y", 1, [1, 3])])
    onnx.save(h.make_model(relu, opset_imports=[h.make_opsetid("", 17)]), str(root / "relu.onnx"))
    (root / "not_tflite.tflite").write_text("this is not a FlatBuffer\n")
    shutil.copy(V1_025, root / "ckpt.tflite")
    # data folders
    (root / "empty").mkdir()
    (root / "noimg").mkdir()
    (root / "noimg" / "readme.txt").write_text("no images here\n")
    bad_cls = root / "allbad" / "n01440764"
    bad_cls.mkdir(parents=True)
    (bad_cls / "not_an_image.JPEG").write_text("plain text\n")
    (bad_cls / "truncated.JPEG").write_bytes(TENCH.read_bytes()[:2000])
    # profiles
    (root / "malformed.toml").write_text('name = "x"\ndescription = "d"\n[[eps]\nname = "cpu"\n')
    (root / "unknown_key.toml").write_text('name = "x"\ndescription = "d"\nfoo = 1\n[[eps]]\nname = "cpu"\n')
    (root / "unknown_ep.toml").write_text('name = "x"\ndescription = "d"\n[[eps]]\nname = "tpu"\n')
    (root / "profdir").mkdir()
    p["head_only"] = HEAD_ONLY
    p["tench"] = TENCH
    p["v1_ckpt"] = V1_025
    return {k: str(v) for k, v in p.items()}


@dataclass
class Case:
    id: str
    argv: str  # format string over `env`; split on spaces
    needles: tuple[str, ...]  # must all appear in the error line
    reports: str = ""  # prefix of per-file report lines allowed before the error line ("unreadable:")
    marks: tuple = field(default_factory=tuple)

    def param(self):
        return pytest.param(self, id=self.id, marks=self.marks)


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


CASES = [
    # ---- model files: missing, empty, corrupt, not ONNX
    Case("inspect-missing-model", "inspect {root}/nope.onnx", ("nope.onnx", "does not exist")),
    Case("inspect-empty-model", "inspect {root}/empty.onnx", ("empty.onnx", "empty")),
    Case("inspect-random-bytes", "inspect {root}/junk.onnx", ("junk.onnx", "not a valid ONNX model")),
    Case("eval-jpeg-named-onnx", "eval {root}/image.onnx --limit 2", ("image.onnx",)),
    Case("eval-truncated-model", "eval {root}/half.onnx --limit 2", ("half.onnx",)),
    Case("bench-protobuf-not-a-model", "bench {root}/tensor.onnx -n 2", ("tensor.onnx", "not a valid ONNX model")),
    Case("predict-directory-as-model", "predict {root}/dir.onnx {tench}", ("dir.onnx", "directory")),
    Case("eval-model-cannot-run", "eval {root}/group0.onnx --limit 2", ("group0.onnx", "cannot run")),
    Case("bench-model-cannot-run", "bench {root}/group0.onnx -n 2", ("group0.onnx", "cannot run")),
    Case("eval-not-an-image-classifier", "eval {root}/relu.onnx --limit 2", ("relu.onnx",)),
    Case("predict-not-an-image-classifier", "predict {root}/relu.onnx {tench}", ("relu.onnx",)),
    Case("quantize-model-cannot-run", "quantize {root}/group0.onnx --no-eval -o {out}/q.onnx", ("group0.onnx",)),
    Case("quantize-not-an-image-classifier", "quantize {root}/relu.onnx --no-eval -o {out}/q.onnx", ("relu.onnx",)),
    Case("simplify-not-an-image-classifier", "simplify {root}/relu.onnx -o {out}/s.onnx", ("relu.onnx",)),
    Case("compare-model-cannot-run", "compare {root}/group0.onnx --tflite {v1_ckpt} --limit 2 --iterations 2",
         ("group0.onnx",)),
    Case("quantize-corrupt-model", "quantize {root}/junk.onnx --no-eval -o {out}/q.onnx", ("junk.onnx",)),
    # ---- build options
    Case("build-width-zero", "build v1 --width 0 -o {out}/b.onnx", ("--width",)),
    Case("build-width-negative", "build v1 --width -0.5 -o {out}/b.onnx", ("--width",)),
    Case("build-width-nan", "build v1 --width nan -o {out}/b.onnx", ("--width",)),
    Case("build-width-inf", "build v1 --width inf -o {out}/b.onnx", ("--width",)),
    Case("build-width-not-a-number", "build v1 --width abc -o {out}/b.onnx", ("--width",)),
    Case("build-resolution-zero", "build v1 --resolution 0 -o {out}/b.onnx", ("--resolution",)),
    Case("build-resolution-31", "build v1 --resolution 31 -o {out}/b.onnx", ("--resolution", "32")),
    Case("build-classes-zero", "build v1 --classes 0 -o {out}/b.onnx", ("--classes",)),
    Case("build-seed-negative", "build v1 -w 0.25 -r 64 --seed -1 -o {out}/b.onnx", ("--seed",)),
    Case("build-opset-too-old", "build v1 --opset 12 -o {out}/b.onnx", ("--opset",)),
    Case("build-unknown-arch", "build v9 -o {out}/b.onnx", ("unknown architecture", "v9")),
    Case("build-precision-unknown", "build v1 --precision fp16 -o {out}/b.onnx", ("--precision", "fp16")),
    Case("build-int8-of-random-weights", "build v1 --precision int8 -o {out}/b.onnx", ("--precision int8", "random")),
    # ---- TFLite checkpoints that are not a MobileNet or not this one
    Case("build-weights-not-tflite", "build v1 --weights {root}/not_tflite.tflite -o {out}/b.onnx",
         ("not_tflite.tflite", "not a TFLite model")),
    Case("build-weights-not-a-mobilenet", "build v1 --weights {head_only} -o {out}/b.onnx",
         ("mobilenet_quant_v1_224_head_layers.tflite", "match no architecture")),
    Case("build-weights-other-arch", "build v2 --weights {root}/ckpt.tflite -o {out}/b.onnx",
         ("ckpt.tflite", "v2 width 1.0", "v1 width 0.25")),
    Case("build-weights-other-width", "build v1 -w 0.5 --weights {root}/ckpt.tflite -o {out}/b.onnx",
         ("ckpt.tflite", "v1 width 0.5")),
    Case("build-no-pretrained-checkpoint", "build v3-large --weights pretrained -o {out}/b.onnx", ("v3-large", "pretrained")),
    Case("build-weights-missing", "build v1 --weights {root}/nope.tflite -o {out}/b.onnx", ("--weights", "nope.tflite")),
    # ---- devices and profiles
    Case("bench-unknown-device", "bench {model} --device nope -n 2", ("device profile", "nope")),
    Case("bench-unknown-ep", "bench {model} --ep tpu -n 2", ("execution provider", "tpu")),
    Case("bench-malformed-toml", "bench {model} --profile {root}/malformed.toml -n 2", ("malformed.toml", "not valid TOML")),
    Case("bench-unknown-profile-key", "bench {model} --profile {root}/unknown_key.toml -n 2", ("unknown_key.toml", "unknown key 'foo'")),
    Case("profiles-validate-unknown-ep", "profiles validate {root}/unknown_ep.toml", ("unknown_ep.toml", "eps[0].name", "tpu")),
    Case("bench-profile-is-directory", "bench {model} --profile {root}/profdir -n 2", ("profdir", "directory")),
    Case("profiles-show-unknown", "profiles show nope", ("nope",)),
    Case("profiles-validate-dev-null", "profiles validate /dev/null", ("/dev/null", "not a regular file")),
    # ---- data and calibration folders
    Case("eval-data-missing", "eval {model} --data {root}/nope_dir", ("--data", "nope_dir", "does not exist")),
    Case("eval-data-empty", "eval {model} --data {root}/empty", ("--data", "empty", "no images")),
    Case("eval-data-no-images", "eval {model} --data {root}/noimg", ("--data", "noimg", "no images")),
    Case("eval-every-image-unreadable", "eval {model} --data {root}/allbad", ("none of the 2 images",), reports="unreadable:"),
    Case("predict-non-image-file", "predict {model} {root}/noimg/readme.txt", ("1 of 1 images",), reports="unreadable:"),
    Case("quantize-calib-missing", "quantize {model} --calib {root}/nope_dir --no-eval -o {out}/q.onnx", ("nope_dir",)),
    Case("quantize-calib-empty", "quantize {model} --calib {root}/empty --no-eval -o {out}/q.onnx", ("empty", "no images")),
    Case("quantize-calib-no-images", "quantize {model} --calib {root}/noimg --no-eval -o {out}/q.onnx", ("noimg", "no images")),
    Case("quantize-calib-all-unreadable", "quantize {model} --calib {root}/allbad --no-eval -o {out}/q.onnx", ("allbad",)),
    # ---- numbers
    Case("bench-negative-iterations", "bench {model} --iterations -5", ("--iterations",)),
    Case("bench-zero-iterations", "bench {model} -n 0", ("--iterations",)),
    Case("bench-negative-warmup", "bench {model} --warmup -1 -n 2", ("--warmup",)),
    Case("bench-huge-batch", "bench {model} --batch 100000000 -n 2", ("--batch", "GiB")),
    Case("bench-absurd-threads", "bench {model} --threads 100000 -n 2", ("--threads",)),
    Case("eval-batch-zero", "eval {model} --batch 0", ("--batch",)),
    Case("eval-huge-batch", "eval {hires} --batch 1000000", ("--batch", "GiB")),
    Case("eval-absurd-threads", "eval {model} --threads 100000 --limit 2", ("--threads",)),
    Case("quantize-negative-samples", "quantize {model} --samples -1 --no-eval -o {out}/q.onnx", ("--samples",)),
    Case("sweep-negative-iterations", "sweep --iterations -1 -o {out}/sweep", ("--iterations",)),
    Case("sweep-unknown-arch", "sweep --arch v9 -o {out}/sweep", ("v9",)),
    # ---- outputs: unwritable, a directory, overwriting an input
    Case("build-output-unwritable", "build v1 -w 0.25 -r 64 -o /proc/mnetctl/b.onnx", ("/proc/mnetctl/b.onnx", "-o/--output")),
    Case("build-output-is-directory", "build v1 -w 0.25 -r 64 -o {out}", ("-o/--output", "directory")),
    Case("build-output-overwrites-tflite-input", "build v1 -w 0.25 --weights {root}/ckpt.tflite -o {root}/ckpt.tflite",
         ("ckpt.tflite", "overwrite the input")),
    Case("bench-json-unwritable", "bench {model} -n 2 --json /proc/mnetctl/r.json", ("--json", "/proc/mnetctl/r.json")),
    Case("bench-junit-overwrites-model", "bench {model} -n 2 --junit {model}", ("--junit", "overwrite the input")),
    Case("quantize-output-unwritable", "quantize {model} --no-eval -o /proc/mnetctl/q.onnx", ("/proc/mnetctl/q.onnx",)),
    Case("quantize-output-overwrites-input", "quantize {model} --no-eval -o {model}", ("m.onnx", "overwrite the input")),
    Case("simplify-output-overwrites-input", "simplify {model} -o {model}", ("m.onnx", "overwrite the input")),
    Case("sweep-output-unwritable", "sweep --arch v1 --widths 0.25 --resolutions 128 --weights random --precisions fp32 -o /proc/mnetctl",
         ("/proc/mnetctl",)),
    Case("sweep-unknown-device", "sweep --arch v1 --widths 0.25 --resolutions 128 --weights random --precisions fp32 "
         "--limit 2 --device nope -o {out}/sweep --cache {out}/cache", ("nope",)),
    Case("sweep-data-empty", "sweep --arch v1 --widths 0.25 --resolutions 128 --weights random --precisions fp32 "
         "--data {root}/empty -o {out}/sweep --cache {out}/cache", ("--data", "empty")),
    Case("sweep-widths-not-numbers", "sweep --widths abc -o {out}/sweep", ("--widths", "abc")),
    Case("compare-tflite-missing", "compare {model} --tflite {root}/nope.tflite", ("--tflite", "nope.tflite")),
    # ---- outputs into an input folder, or named like a folder
    Case("quantize-output-into-calib-folder", "quantize {model} --calib {root}/allbad --no-eval -o {root}/allbad/n01440764/x.JPEG",
         ("x.JPEG", "input folder")),
    Case("simplify-output-into-check-images", "simplify {model} --check-images {root}/allbad -o {root}/allbad/s.onnx",
         ("s.onnx", "input folder")),
    Case("build-output-trailing-slash", "build v1 -w 0.25 -r 64 -o {out}/newdir/", ("newdir/", "folder")),
    # ---- gate values and counts: bounded, finite, not silently ignored (C2, C3, U3, U4, U10)
    Case("bench-iterations-huge", "bench {model} -n 1000000000000", ("--iterations", "at most")),
    Case("bench-iterations-overflow", "bench {model} -n 99999999999999999999999", ("--iterations", "at most")),
    Case("bench-warmup-huge", "bench {model} --warmup 1000000000000", ("--warmup", "at most")),
    Case("bench-duration-inf", "bench {model} --duration inf", ("--duration", "inf")),
    Case("bench-duration-1e300", "bench {model} --duration 1e300", ("--duration", "1e300")),
    Case("bench-op-top-negative", "bench {model} -n 2 --op-profile --op-top -1", ("--op-top",)),
    Case("bench-ep-option-bad-value", "bench {model} -n 2 --ep-option cpu.use_arena=banana", ("--ep-option", "use_arena")),
    Case("bench-ep-option-unknown-key", "bench {model} -n 2 --ep-option cpu.foo=1", ("--ep-option", "'foo'")),
    Case("bench-tolerance-ambiguous", "bench {model} -n 2 --tolerance 1.01", ("--tolerance", "ambiguous")),
    Case("bench-min-top1-nan", "bench {model} -n 2 --min-top1 nan", ("--min-top1",)),
    Case("bench-min-top1-200", "bench {model} -n 2 --min-top1 200", ("--min-top1",)),
    Case("compare-absurd-threads", "compare {model} --tflite {v1_ckpt} --threads 100000 --limit 2 -n 2", ("--threads",)),
    Case("compare-iterations-huge", "compare {model} --tflite {v1_ckpt} --limit 2 -n 1000000000000", ("--iterations",)),
    Case("quantize-max-drop-nan", "quantize {model} --max-drop nan --eval-limit 2 -o {out}/q.onnx", ("--max-drop",)),
    Case("simplify-tolerance-nan", "simplify {model} --tolerance nan -o {out}/s.onnx", ("--tolerance",)),
    Case("simplify-tolerance-negative", "simplify {model} --tolerance -1 -o {out}/s.onnx", ("--tolerance",)),
    Case("sweep-budget-without-select", "sweep --arch v1 --widths 0.25 --resolutions 128 --weights random --precisions fp32 "
         "--limit 2 --budget-ms 5 -o {out}/sweep --cache {out}/cache", ("--budget-ms", "--select")),
    Case("sweep-budget-nan", "sweep --arch v1 --widths 0.25 --resolutions 128 --weights random --precisions fp32 "
         "--limit 2 --select --budget-ms nan -o {out}/sweep --cache {out}/cache", ("--budget-ms",)),
    Case("sweep-cache-is-a-file", "sweep --arch v1 --widths 0.25 --resolutions 128 --weights random --precisions fp32 "
         "--limit 2 -o {out}/sweep --cache {model}", ("--cache", "m.onnx")),
]


def check_clean_error(err: str, case: Case) -> str:
    """Exactly one `error:` line, naming what it should, and nothing else but allowed per-file reports."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert all(line.strip() for line in lines), f"blank line on stderr: {err!r}"
    errors = [line for line in lines if line.startswith("error:")]
    others = [line for line in lines if not line.startswith("error:")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    assert all(case.reports and line.startswith(case.reports) for line in others), err
    for needle in case.needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, env, capsys, monkeypatch):
    root = Path(env["root"])
    monkeypatch.chdir(env["cwd"])  # default outputs (models/..., results/...) would land here
    monkeypatch.delenv("MNETCTL_DEBUG", raising=False)
    before = _snapshot(root)
    argv = [part.format(**env) for part in case.argv.split()]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    check_clean_error(err, case)
    assert _snapshot(root) == before, "a bad input left files behind (or changed an input)"


def test_table_is_wide_enough():
    """The table covers every command and at least 19 distinct bad inputs."""
    commands = {c.argv.split()[0] for c in CASES}
    assert {"build", "inspect", "eval", "predict", "bench", "profiles", "quantize", "simplify", "sweep", "compare"} <= commands
    assert len(CASES) >= 19 and len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------- real processes

SUBPROCESS_CASES = ["build-width-nan", "inspect-random-bytes", "bench-malformed-toml", "eval-every-image-unreadable",
                    "quantize-output-overwrites-input", "build-width-not-a-number"]


def _run(argv: list[str], cwd: str, debug: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, MNETCTL_DEBUG=debug, COLUMNS="60")  # a narrow terminal must not wrap the line
    return subprocess.run([sys.executable, "-m", "mnetctl", *argv], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_real_process(case_id: str, env):
    case = next(c for c in CASES if c.id == case_id)
    before = _snapshot(Path(env["root"]))
    res = _run([part.format(**env) for part in case.argv.split()], env["cwd"])
    assert res.returncode == 2, res.stderr
    check_clean_error(res.stderr, case)
    assert _snapshot(Path(env["root"])) == before


def test_debug_variable_shows_the_traceback(env):
    res = _run(["inspect", f"{env['root']}/junk.onnx"], env["cwd"], debug="1")
    assert res.returncode != 0 and "Traceback" in res.stderr and "BadInput" in res.stderr


# ---------------------------------------------------------------------------- reported and counted, never a crash


def test_unreadable_images_are_reported_and_counted(env, tmp_path):
    """A folder with good, non-image, truncated and empty files: eval scores the good ones, names the rest."""
    cls = tmp_path / "n01440764"
    cls.mkdir()
    shutil.copy(TENCH, cls / "good.JPEG")
    (cls / "text.JPEG").write_text("not an image\n")
    (cls / "cut.JPEG").write_bytes(TENCH.read_bytes()[:3000])
    (cls / "zero.JPEG").write_bytes(b"")
    res = _run(["eval", env["model"], "--data", str(tmp_path), "--json"], env["cwd"])
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["n"] == 1 and len(doc["failed"]) == 3
    reasons = {Path(f["path"]).name: f["reason"] for f in doc["failed"]}
    assert set(reasons) == {"text.JPEG", "cut.JPEG", "zero.JPEG"}
    assert "truncated" in reasons["cut.JPEG"] and "empty" in reasons["zero.JPEG"]
    for name in reasons:
        assert f"unreadable: {cls / name}" in res.stderr
    assert "Traceback" not in res.stderr


def test_huge_batch_on_a_small_set_is_capped_not_refused(env, capsys):
    """--batch larger than the data is harmless: the batch is the data (no giant buffer, no error)."""
    assert main(["eval", env["model"], "--batch", "1000000", "--limit", "6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 6
