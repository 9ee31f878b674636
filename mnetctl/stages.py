"""The stages a sweep runs per variant, each with plain-data inputs and results.

A stage is a function of paths and JSON-able settings that returns a JSON-able result, plus a cache key:
a digest of the *content* that determines the result (model bytes, image bytes and labels, profile
contents, settings, mnetctl's version). `bench_group` is the one stage over several variants: it times all of a
device's variants together in interleaved rounds, so its result (and key) belongs to the group. Because inputs and results are plain data, a runner
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


def run_train(arch: str, width: float, resolution: int, data: str, val_split: float, views: int, augment: bool,
              settings: dict[str, Any], opset: int, features: str | None, out: str) -> dict[str, Any]:
    """`train` on DATA/<class name>/ (early stopping on a `val_split` of it) -> the model at `out`; `features`: the
    feature cache folder (None: no cache)."""
    from .builder import save_model
    from .train import HeadSettings, train

    res = train(data, arch, width, resolution, val_split=val_split, views=views, augment=augment,
                settings=HeadSettings(**settings), cache_dir=features, opset=opset)
    save_model(res.model, out)
    return {**_facts(Path(out), res.model), "classes": res.classes, "train_images": res.train_images,
            "train_val_accuracy": res.val_accuracy, "failed": [list(f) for f in res.failed]}


def train_key(arch: str, width: float, resolution: int, checkpoint: str | None, data_digest: str, names: list[str],
              val_split: float, views: int, augment: bool, settings: dict[str, Any], opset: int) -> str:
    """data_digest: the training images' bytes and labels; names: the class names the labels index."""
    return digest({"arch": arch, "width": width, "res": resolution, "ckpt": checkpoint, "data": data_digest,
                   "names": names, "val_split": val_split, "views": views, "augment": augment, "settings": settings,
                   "opset": opset, "version": __version__})


def run_quantize(model: str, out: str, calib: str | None, runtime: str | None = None) -> dict[str, Any]:
    """runtime: the target runtime whose quantize defaults apply (None: ONNX Runtime's)."""
    from .quant.pipeline import quantize_model

    quantize_model(model, output=out, calib=calib, runtime=runtime)
    return _facts(Path(out))


def quantize_key(model: str, calib_digest: str, settings: str) -> str:
    """settings: the architecture's quantization defaults as text; calib_digest: the calibration images' content."""
    return digest({"model": file_digest(model), "calib": calib_digest, "settings": settings, "version": __version__})


def run_export_tflite(model: str, out: str) -> dict[str, Any]:
    """The ONNX model as a TFLite file (`mnetctl.export.tflite`, precision from the model) for a LiteRT device."""
    exporter = tflite_exporter()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    exporter(model, out)
    return {"model": out, "size_mb": round(Path(out).stat().st_size / 1e6, 3)}


def tflite_exporter():
    """`mnetctl.export.tflite.export_tflite`, or EnvironmentMissing (exit 3) when this mnetctl has no TFLite writer."""
    from .errors import EnvironmentMissing

    try:
        from .export.tflite import export_tflite  # type: ignore[import-not-found]
    except ImportError:
        raise EnvironmentMissing("this mnetctl has no TFLite exporter (mnetctl.export.tflite), so ONNX variants cannot "
                                 "run on a LiteRT device", "install an mnetctl with `mnetctl export --format tflite`, "
                                 "or sweep onnxruntime/openvino devices only") from None
    return export_tflite


def export_key(model: str) -> str:
    return digest({"model": file_digest(model), "to": "tflite", "precision": "auto (mixed for QDQ)", "version": __version__})


def run_eval(model: str, samples: list[list[Any]], threads: int | None, runtime: str | None = None,
             engine_options: dict[str, Any] | None = None) -> dict[str, Any]:
    from .data import Sample
    from .evaluate import evaluate

    from .tasks import get_task

    res = evaluate(model, [Sample(Path(p), label) for p, label in samples], threads=threads, runtime=runtime,
                   engine_options=engine_options)
    headline = get_task(res.task).headline  # what the sweep ranks by: top1, miou, ...
    return {"top1": res.top1, "top5": res.top5, "n": res.n, "task": res.task, "metrics": res.metrics,
            "headline": headline, "score": float(res.metrics.get(headline, 0.0))}


def eval_key(model: str, samples_digest: str, runtime: str | None = None, engine_options: dict[str, Any] | None = None) -> str:
    """runtime/engine_options: for another engine than onnxruntime (whose key stays as it was)."""
    doc: dict[str, Any] = {"model": file_digest(model), "data": samples_digest, "version": __version__}
    if runtime not in (None, "onnxruntime"):
        doc.update(runtime=runtime, engine_options=dict(engine_options or {}))
    return digest(doc)


def run_bench(model: str, profile: dict[str, Any], threads: int | None, iterations: int) -> dict[str, Any]:
    from .bench import bench
    from .hostinfo import LoadMeter
    from .profiles import Profile

    meter = LoadMeter()
    br = bench(model, profile=Profile.model_validate(profile), threads=threads, iterations=iterations)
    return {"latency_ms": {k: float(v) for k, v in br.latency_ms.items()}, "providers": list(br.providers),
            "other_load": meter.other_load()}


RUNS_PER_BLOCK = 10  # bench_group: timed runs of one variant before the next variant's turn
BLOCK_WARMUP = 2  # untimed runs at the start of each block (the variant's caches after the others ran)


def run_bench_group(models: list[str], names: list[str], profile: dict[str, Any], threads: int | None,
                    iterations: int, max_load: float, max_seconds: float) -> dict[str, Any]:
    """Time `models` (named `names`) together on the profile's providers: rounds of one block per model, the order
    rotating, rounds under more than `max_load` of a core of other load taken again for up to `max_seconds`.

    Per model: latency statistics (ms), the 95% interval of its p50, other processes' load during its blocks, and
    the providers that ran it.
    """
    from .bench import DEFAULT_WARMUP
    from .interleave import interleave_quiet, rounds_for
    from .profiles import Profile

    prof = Profile.model_validate(profile)
    threads = threads if threads is not None else prof.threads
    warmup = prof.warmup if prof.warmup is not None else DEFAULT_WARMUP
    runnables, providers = [], {}
    for model, name in zip(models, names):
        runnable, used = _bench_runnable(Path(model), name, prof, threads)
        runnables.append(runnable)
        providers[name] = used
    runs = min(RUNS_PER_BLOCK, iterations)
    timed = interleave_quiet(runnables, rounds=rounds_for(iterations, runs), runs=runs, block_warmup=BLOCK_WARMUP,
                             warmup=warmup, max_load=max_load, max_seconds=max_seconds)
    variants = {}
    for name in names:
        lo, hi = timed.p50_ci_ms(name)
        variants[name] = {
            "latency_ms": timed.stats[name].as_dict(suffix="", runs=False),
            "p50_ci95_ms": [lo, hi],
            "other_load": timed.model_load.get(name),
            "providers": providers[name],
        }
    return {"method": "interleaved", "rounds": len(timed.rounds), "runs_per_block": timed.runs,
            "block_warmup": timed.block_warmup, "warmup": timed.warmup, "max_load": max_load, "max_seconds": max_seconds,
            "retaken_rounds": timed.retaken_rounds, "loaded_rounds": timed.loaded_rounds,
            "other_load": timed.other_load, "variants": variants}


def _bench_runnable(path: Path, name: str, prof, threads: int | None):
    """(interleave.Runnable, providers used) for one model as `bench` runs it: the profile's providers with no silent
    fallback, random inputs and outputs bound once (IO binding), plus idle pool threads that stop spinning
    between runs so they take no CPU from the next model's block."""
    from .engines import ONNXRUNTIME, load
    from .interleave import Runnable
    from .modelio import cannot_run
    from .runtime import bind_io, create_session, keep_outputs, random_feeds

    engine = getattr(prof, "engine", ONNXRUNTIME)
    if engine != ONNXRUNTIME:  # LiteRT / OpenVINO: the input set once, as IO binding does for onnxruntime
        loaded = load(engine, path, threads=threads, options=prof.engine_options, batch=1)
        return Runnable(name, loaded.run, [loaded.feed]), list(loaded.providers)
    info = create_session(path, prof.ep_requests(), threads=threads, batch=1, stop_idle_spinning=True)
    session = info.session
    feeds = random_feeds(session, batch=1, seed=0)
    io = bind_io(session, feeds)
    try:
        session.run_with_iobinding(io)  # the cold run allocates the outputs; bound, no later run allocates
    except Exception as exc:  # ORT loaded the graph but cannot run it
        raise cannot_run(path, exc) from None
    keep_outputs(session, io)

    def run(binding, _inputs=feeds):  # the bound arrays must live as long as the binding
        session.run_with_iobinding(binding)

    return Runnable(name, run, [io]), list(info.used)


def bench_group_key(models: list[str], names: list[str], profile: dict[str, Any], threads: int | None,
                    iterations: int, max_load: float, max_seconds: float, host: dict[str, Any]) -> str:
    """The group's content: every member's name and model bytes (as a set: the order of the rounds does not
    matter), the measured profile contents, settings, host and version. Adding or changing one variant re-times
    the whole group, since each variant's figure was taken beside the others."""
    measured = {k: v for k, v in profile.items() if k not in _NOT_MEASURED}
    members = sorted([n, file_digest(m)] for m, n in zip(models, names))
    return digest({"members": members, "profile": measured, "threads": threads, "iterations": iterations,
                   "max_load": max_load, "max_seconds": max_seconds, "host": host, "version": __version__})


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


def run_bench_report(model: str, profile: dict[str, Any], threads: int | None, iterations: int | None,
                     warmup: int | None = None) -> dict[str, Any]:
    """`mnetctl bench` of one model on a profile, its whole JSON report (budgets decided where it ran); not cached."""
    from .bench import bench
    from .profiles import Profile

    return bench(model, profile=Profile.model_validate(profile), threads=threads, iterations=iterations,
                 warmup=warmup).as_dict()


def run_facts(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """What this Python can run (the `doctor` facts: host, onnxruntime, EPs that load) and, per profile, whether the
    host matches it and its EPs load here; not cached."""
    from .doctor import diagnose_profiles

    return diagnose_profiles(profiles)


STAGES: dict[str, Stage] = {
    "build": Stage("build", run_build, build_key, True),
    "train": Stage("train", run_train, train_key, True),
    "quantize": Stage("quantize", run_quantize, quantize_key, True),
    "export_tflite": Stage("export_tflite", run_export_tflite, export_key, True),
    "eval": Stage("eval", run_eval, eval_key, False),
    "bench": Stage("bench", run_bench, bench_key, False),
    "bench_group": Stage("bench_group", run_bench_group, bench_group_key, False),
}

# Calls a runner can make that are not sweep stages (no cache key): a full bench report, a node's doctor facts.
CALLS: dict[str, Callable[..., dict[str, Any]]] = {"bench_report": run_bench_report, "facts": run_facts}

# the stages and calls that run on a device (on a node holding its resource, in its profile's environment)
DEVICE_STAGES = frozenset({"bench", "bench_group", "bench_report", "facts"})


def stage_function(name: str) -> Callable[..., dict[str, Any]]:
    if name in STAGES:
        return STAGES[name].run
    if name in CALLS:
        return CALLS[name]
    raise KeyError(f"unknown stage {name!r}")
