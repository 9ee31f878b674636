"""The stages a sweep runs per variant, each with plain-data inputs and results.

A stage is a function of paths and JSON-able settings that returns a JSON-able result, plus a cache key:
a digest of the *content* that determines the result (model bytes, image bytes and labels, profile
contents, settings, mnetctl's version). Because inputs and results are plain data, a runner
(`mnetctl.runners`) can run a stage here or ship it elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .cache import digest, file_digest


def _facts(path: Path, proto=None) -> dict[str, Any]:
    """MACs, params and size of the model at `path` (`proto`: the same model, when it is still in memory)."""
    from .analysis import analyze
    from .modelio import load_onnx

    stats = analyze(proto if proto is not None else load_onnx(path))
    return {"model": str(path), "macs": stats.macs, "params": stats.params, "size_mb": round(path.stat().st_size / 1e6, 3)}


def run_build(arch: str, width: float, resolution: int, weights: str, opset: int, out: str) -> dict[str, Any]:
    from .builder import build_model, save_model

    proto = build_model(arch, width, resolution, weights=weights, opset=opset)
    save_model(proto, out)
    return _facts(Path(out), proto)  # counted on the built proto, not read back


def build_key(arch: str, width: float, resolution: int, weights: str, opset: int, checkpoint: str | None) -> str:
    """checkpoint: the digest of the checkpoint files' bytes (None for random weights)."""
    return digest({"arch": arch, "width": width, "res": resolution, "weights": weights, "ckpt": checkpoint,
                   "opset": opset, "version": __version__})


def run_quantize(model: str, out: str, calib: str | None) -> dict[str, Any]:
    from .quant.pipeline import quantize_model

    quantize_model(model, output=out, calib=calib)
    return _facts(Path(out))


def quantize_key(model: str, calib_digest: str, settings: str) -> str:
    """settings: the architecture's quantization defaults as text; calib_digest: the calibration images' content."""
    return digest({"model": file_digest(model), "calib": calib_digest, "settings": settings, "version": __version__})


def run_eval(model: str, samples: list[list[Any]], threads: int | None) -> dict[str, Any]:
    from .data import Sample
    from .evaluate import evaluate

    res = evaluate(model, [Sample(Path(p), label) for p, label in samples], threads=threads)
    return {"top1": res.top1, "top5": res.top5, "n": res.n, "task": res.task, "metrics": res.metrics}


def eval_key(model: str, samples_digest: str) -> str:
    return digest({"model": file_digest(model), "data": samples_digest, "version": __version__})


def run_bench(model: str, profile: dict[str, Any], threads: int | None, iterations: int) -> dict[str, Any]:
    from .bench import bench
    from .profiles import Profile

    br = bench(model, profile=Profile.model_validate(profile), threads=threads, iterations=iterations)
    return {"latency_ms": {k: float(v) for k, v in br.latency_ms.items()}, "providers": list(br.providers)}


def bench_key(model: str, profile: dict[str, Any], threads: int | None, iterations: int, host: dict[str, Any]) -> str:
    """profile: the profile's contents, so editing what it runs on (EPs, options, threads, ...) invalidates the
    entry; its budgets and prose do not change a measurement and are left out."""
    measured = {k: v for k, v in profile.items() if k not in _NOT_MEASURED}
    return digest({"model": file_digest(model), "profile": measured, "threads": threads, "iterations": iterations,
                   "host": host, "version": __version__})


_NOT_MEASURED = frozenset({"budgets", "description", "notes"})


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., dict[str, Any]]
    key: Callable[..., str]
    artifact: bool  # whether the stage writes a model file (`out`)


STAGES: dict[str, Stage] = {
    "build": Stage("build", run_build, build_key, True),
    "quantize": Stage("quantize", run_quantize, quantize_key, True),
    "eval": Stage("eval", run_eval, eval_key, False),
    "bench": Stage("bench", run_bench, bench_key, False),
}
