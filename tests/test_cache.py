"""The content-addressed stage cache: keys follow content, bad entries are never trusted."""

from __future__ import annotations

import json
import shutil

import pytest

from mnetctl.cache import Cache, samples_digest
from mnetctl.data import find_samples
from mnetctl.profiles import load_profile
from mnetctl.stages import STAGES
from mnetctl.sweep import SweepSettings, Variant, prepare, run_sweep

from .conftest import VAL


def _copy(src, dst, n=3):
    dst.mkdir()
    for p in sorted(src.rglob("*.JPEG"))[:n]:
        shutil.copy(p, dst / p.name)
    return dst


def test_eval_key_follows_image_bytes_not_names(tmp_path, tiny_model):
    data = _copy(VAL, tmp_path / "d")
    before = STAGES["eval"].key(str(tiny_model), samples_digest(find_samples(data)))
    first = sorted(data.iterdir())[0]
    # same name, same size, other pixels: the key must change
    raw = bytearray(first.read_bytes())
    raw[-10] ^= 0xFF
    first.write_bytes(bytes(raw))
    assert STAGES["eval"].key(str(tiny_model), samples_digest(find_samples(data))) != before


def test_bench_key_follows_profile_contents(tiny_model):
    host = {"cpu": "x"}
    prof = load_profile("host").model_dump(mode="json")
    other = json.loads(json.dumps(prof))
    other["eps"] = [{"name": "cuda", "options": {}}]  # same name, now asks for CUDA
    a = STAGES["bench"].key(str(tiny_model), prof, None, 10, host)
    assert a == STAGES["bench"].key(str(tiny_model), json.loads(json.dumps(prof)), None, 10, host)
    assert a != STAGES["bench"].key(str(tiny_model), other, None, 10, host)
    budget = json.loads(json.dumps(prof))
    budget["budgets"]["latency_ms"] = 1.0  # a budget does not change what is measured
    assert a == STAGES["bench"].key(str(tiny_model), budget, None, 10, host)


def test_corrupt_entries_are_quarantined(tmp_path, tiny_model):
    cache = Cache(tmp_path / "c")
    art = cache.artifact("build", "k")
    art.parent.mkdir(parents=True)
    shutil.copy(tiny_model, art)
    cache.put("build", "k", {"model": str(art)}, artifact=True)
    assert cache.get("build", "k") == {"model": str(art)}
    art.write_bytes(art.read_bytes()[:-100])  # truncated artifact
    assert cache.get("build", "k") is None
    assert not art.exists() and (tmp_path / "c" / "quarantine" / "build" / "k.onnx").exists()
    cache.put("eval", "e", {"top1": 1.0})
    (tmp_path / "c" / "eval" / "e.json").write_text("{not json")
    assert cache.get("eval", "e") is None


def test_sweep_reruns_a_stage_whose_artifact_broke(tmp_path):
    settings = SweepSettings(weights="random", data=_copy(VAL, tmp_path / "d", 4), iterations=3)
    variants = [Variant("v1", 0.25, 96, "fp32")]
    plan = prepare(settings)
    first = run_sweep(variants, plan, cache_dir=tmp_path / "c")
    again = run_sweep(variants, plan, cache_dir=tmp_path / "c")
    assert all(again.variants[0].cached.values())
    model = again.variants[0].model
    with open(model, "r+b") as fh:  # flip a byte of the cached model
        fh.seek(200)
        b = fh.read(1)
        fh.seek(200)
        fh.write(bytes([b[0] ^ 0xFF]))
    third = run_sweep(variants, plan, cache_dir=tmp_path / "c")
    assert third.variants[0].cached["build"] is False
    assert third.variants[0].top1 == first.variants[0].top1


def test_sweep_profile_edited_to_cuda_is_not_served_from_the_cache(tmp_path, capsys):
    """D3(b) at the CLI: the same --device file, edited from cpu to cuda, must not return the cached CPU latency."""
    import onnxruntime

    from mnetctl.cli import main

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this host has CUDA: the edited profile would run")
    prof = tmp_path / "myboard.toml"
    text = 'name = "myboard"\ndescription = "a board"\n[[eps]]\nname = "{ep}"\n'
    prof.write_text(text.format(ep="cpu"))
    argv = ["sweep", "--arch", "v1", "--widths", "0.25", "--resolutions", "32", "--weights", "random", "--precisions",
            "fp32", "--limit", "2", "-n", "2", "--device", str(prof), "-o", str(tmp_path / "out"), "--cache", str(tmp_path / "c")]
    assert main(argv) == 0
    first = json.loads((tmp_path / "out" / "sweep.json").read_text())
    capsys.readouterr()
    prof.write_text(text.format(ep="cuda"))  # same file name, same profile name: now asks for CUDA
    assert main(argv) == 3, "a cached CPU latency was reported for a CUDA profile"
    assert "CUDA" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "sweep.json").read_text()) == first  # the failed run wrote nothing
