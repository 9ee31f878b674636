"""Sweep MobileNet variants into an accuracy/latency Pareto frontier and pick the best under a budget.

A sweep is a list of stages per variant (`mnetctl.stages`: build -> (quantize) -> eval -> bench), each run
by a runner (`mnetctl.runners`) and cached under a digest of the content that determines it (model bytes,
image bytes and labels, the profile's contents, settings; `mnetctl.cache`), so re-running a sweep only does
new work and a changed input is never answered from the cache.

Latency is measured interleaved by default: all variants of the device are timed together (`stages.bench_group`:
rounds of one short block per variant, the order rotating), so a burst of other work lands on every variant alike.
Each variant carries the 95% interval of its p50; variants whose intervals overlap are ties (`ties_with`), their
order on latency not resolved. `sequential=True` benches one variant after another (the `bench` stage), as before.
"""

from __future__ import annotations

from collections import Counter

import json
import platform
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import __version__
from .cache import Cache, default_cache_dir, digest, file_digest, samples_digest
from .errors import BadInput, StageFailed
from .progress import ProgressFn, report
from .stages import STAGES
from .fsutil import atomic_path, atomic_paths, locked, writing
from .metrics import SWEEP_METRICS, Metric, parse_metric
from .hostinfo import host_info
from .specs import FAMILIES, format_width, resolve_arch, validate_resolution, validate_width
from .weights import registry

if TYPE_CHECKING:
    from .profiles import Profile

PRECISIONS = ("fp32", "int8")
METRICS = SWEEP_METRICS  # statistics a sweep ranks variants by


@dataclass(frozen=True)
class Variant:
    arch: str
    width: float
    resolution: int
    precision: str

    @property
    def name(self) -> str:
        return f"{self.arch}-{format_width(self.width)}-{self.resolution}-{self.precision}"


@dataclass
class VariantResult:
    arch: str
    width: float
    resolution: int
    precision: str
    weights: str
    macs: int
    params: int
    size_mb: float
    top1: float | None  # None: random weights, latency and size only (no accuracy to measure)
    top5: float | None
    n_images: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    latency_ms: dict[str, float]
    providers: list[str]
    model: str
    pareto: bool = False
    cached: dict[str, bool] = field(default_factory=dict)
    speedup: float | None = None  # int8 only: its fp32 twin's p50 / its own p50
    p50_ci95_ms: list[float] | None = None  # 95% interval of p50 (interleaved only)
    other_load: float | None = None  # other processes' CPU load while it was timed, in cores (0.2 = a fifth of one)
    loaded_rounds: int = 0  # its rounds kept although other load exceeded max_load (the time cap ran out)
    ties_with: list[str] = field(default_factory=list)  # variants whose p50 interval overlaps this one's
    train_val_accuracy: float | None = None  # with train data: the head's score on its early-stopping split
    headline: str = "top1"  # the task's metric the sweep ranks by (Task.headline: top1, miou, ...)
    score: float | None = None  # its value (None: top1)

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = self.top1
    runtime: str = "onnxruntime"  # the engine that ran it (mnetctl.engines)
    device: str | None = None  # the profile it was benched on
    node: str | None = None  # the cluster node (Ray node id) that benched it; None in-process
    host: str | None = None  # the host name of the machine that benched it
    failed_attempts: list[dict] = field(default_factory=list)  # cluster: nodes lost under its bench before one finished
    stage_nodes: dict[str, str | None] = field(default_factory=dict)  # cluster: the node each of its stages ran on

    @property
    def name(self) -> str:
        return Variant(self.arch, self.width, self.resolution, self.precision).name

    def latency(self, metric: str) -> float:
        return float(self.latency_ms[metric])


# ------------------------------------------------------------------------------------------------
# Grid
# ------------------------------------------------------------------------------------------------


def plan_variants(
    archs: Iterable[str] | None = None,
    widths: Iterable[float] | None = None,
    resolutions: Iterable[int] | None = None,
    precisions: Iterable[str] = PRECISIONS,
    weights: str = "pretrained",
    train: bool = False,
) -> tuple[list[Variant], list[str]]:
    """The variant grid and notes: (arch, width) combinations skipped for lack of pretrained weights, and values
    listed more than once (each runs once).

    With pretrained weights and no explicit lists, every shipped checkpoint at its trained resolution.
    `train`: the sweep trains a head per variant (train data given), which needs pretrained weights.
    """
    if weights not in ("pretrained", "random"):
        raise BadInput(f"weights must be pretrained or random for a sweep, got {weights!r}")
    if train:
        _check_train_weights(weights)
    skipped: list[str] = []

    def once(name: str, values: list) -> list:
        unique = list(dict.fromkeys(values))
        if len(unique) < len(values):
            counts = Counter(values)
            twice = [str(v) for v in unique if counts[v] > 1]
            skipped.append(f"{name} {', '.join(twice)} listed more than once: each runs once")
        return unique

    precs = [p.strip().lower() for p in precisions]
    for p in precs:
        if p not in PRECISIONS:
            raise BadInput(f"precisions: unknown precision {p!r}", f"choose from {', '.join(PRECISIONS)}")
    precs = once("precisions", precs)
    arch_list = once("archs", [_resolve_arch(a) for a in archs]) if archs else (
        sorted({c.arch for c in registry.PRETRAINED}) if weights == "pretrained" else list(FAMILIES)
    )
    width_list = once("widths", [validate_width(w) for w in widths]) if widths else None
    res_list = once("resolutions", [validate_resolution(r) for r in resolutions]) if resolutions else None
    variants: list[Variant] = []
    for arch in arch_list:
        if weights == "pretrained":
            arch_widths = width_list or registry.widths_with_weights(arch)
        else:
            arch_widths = width_list or [FAMILIES[arch].default_width if arch in FAMILIES else 1.0]
        for width in arch_widths:
            ckpt = registry.find(arch, width) if weights == "pretrained" else None
            if weights == "pretrained" and ckpt is None:
                skipped.append(f"{arch} width {format_width(width)}: no pretrained checkpoint")
                continue
            arch_res = res_list or ([ckpt.trained_resolution] if ckpt else [_default_resolution(arch)])
            for res in arch_res:
                for prec in precs:
                    variants.append(Variant(arch, width, res, prec))
    tasks = {_task_of(v.arch) for v in variants}
    if len(tasks) > 1:
        raise BadInput(f"archs: a sweep ranks one task's models, got {' and '.join(sorted(tasks))} ones",
                       "sweep classifiers and segmentation models separately")
    if not variants:
        raise BadInput("the sweep grid is empty", "; ".join(skipped) or "check --arch/--widths/--resolutions")
    return variants, skipped


def _resolve_arch(name: str) -> str:
    from .heads import deeplab

    return deeplab.ARCH if deeplab.resolve(name) else resolve_arch(name)


def _default_resolution(arch: str) -> int:
    from .heads import deeplab

    return deeplab.DEFAULT_RESOLUTION if arch == deeplab.ARCH else FAMILIES[arch].default_resolution


def _task_of(arch: str) -> str:
    from .heads import deeplab

    return "segmentation" if arch == deeplab.ARCH else "classification"


def task_of_variants(variants: list[Variant]) -> str:
    """The task of a (checked, one-task) variant grid."""
    return _task_of(variants[0].arch) if variants else "classification"


# ------------------------------------------------------------------------------------------------
# Pareto frontier and selection
# ------------------------------------------------------------------------------------------------


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """points = (accuracy, latency). On the frontier iff no other point is at least as accurate and
    at least as fast, and strictly better in one of the two."""
    flags = []
    for i, (acc_i, lat_i) in enumerate(points):
        dominated = any(
            acc_j >= acc_i and lat_j <= lat_i and (acc_j > acc_i or lat_j < lat_i)
            for j, (acc_j, lat_j) in enumerate(points)
            if j != i
        )
        flags.append(not dominated)
    return flags


def selection_budget(profile, budget_ms: float | None = None, metric: Metric | str = Metric.P50) -> tuple[float, Metric] | None:
    """The latency budget a selection applies: `budget_ms` on `metric` when given, else the profile's budget on the
    profile's own statistic (`Profile.latency_budget`); None when neither sets one."""
    if budget_ms is not None:
        if not budget_ms > 0:
            raise BadInput(f"budget_ms must be > 0, got {budget_ms}")
        return float(budget_ms), parse_metric(metric, "metric", SWEEP_METRICS)
    return profile.latency_budget() if profile is not None else None


def frontier_points(results: list[VariantResult], metric: Metric | str) -> list[tuple[float, float]]:
    """The (goodness, latency) pairs the frontier is drawn over: top-1, or (random weights: no accuracy) the
    model size, smaller being better, so the frontier is the smallest model at each latency."""
    if any(r.score is None for r in results):
        return [(-r.size_mb, r.latency(metric)) for r in results]
    return [(r.score, r.latency(metric)) for r in results]


def select_best(results: list[VariantResult], budget_ms: float, metric: Metric | str = Metric.P50) -> VariantResult | None:
    """Highest score (top-1, or the task's headline metric) among the variants whose `metric` latency is within
    `budget_ms` (ties: the faster one).

    Random weights carry no accuracy: then the variant with the most MACs within the budget (the usual proxy for
    capacity; ties: the faster one)."""
    metric = parse_metric(metric)
    fitting = [r for r in results if r.latency(metric) <= budget_ms]
    if not fitting:
        return None
    if any(r.score is None for r in fitting):
        return max(fitting, key=lambda r: (r.macs, -r.latency(metric)))
    return max(fitting, key=lambda r: (r.score, -r.latency(metric)))


# ------------------------------------------------------------------------------------------------
# Running: a list of stages per variant over the content-addressed cache
# ------------------------------------------------------------------------------------------------


@dataclass
class SweepSettings:
    weights: str = "pretrained"
    data: Path | None = None  # evaluation images [default: the task's shipped set]
    limit: int | None = None
    device: "str | Path | Profile | list" = "host"  # a profile name/path, a comma list of them, or loaded Profiles
    runtime: str | None = None  # the engine for every device instead of the profiles' own (mnetctl.engines)
    threads: int | None = None
    iterations: int = 100
    metric: str = "p50"
    calib: Path | None = None  # calibration images [default: the task's shipped set]
    task: str = "classification"  # the variants' task (sweep.task_of_variants): default images, labels
    fresh: bool = False
    sequential: bool = False  # bench variants one after another instead of interleaved
    max_load: float = 0.2  # interleaved: rounds with more other load (cores) are taken again ...
    max_seconds: float = 60.0  # ... while the timing has run less than this long
    # Training on the user's classes: a head per variant on train_data/<class name>/ (early stopping on a
    # train_val_split of it), calibrated on train_data, scored on val_data/<class name>/ (the same classes)
    train_data: Path | None = None
    val_data: Path | None = None
    train_val_split: float = 0.2
    train_views: int = 5
    train_augment: bool = True
    train_settings: dict = field(default_factory=dict)  # train.HeadSettings fields (default: its defaults)


@dataclass
class SweepPlan:
    """Settings checked and resolved once: the profile loaded, the images found, their content hashed."""

    settings: SweepSettings
    profile: Any  # the first device's profile
    data: Path
    samples: list  # data.Sample
    samples_digest: str
    calib: Path
    calib_digest: str
    opset: int
    train: dict | None = None  # with train data: data, digest, names, the resolved head settings
    profiles: list = field(default_factory=list)  # every device of the sweep (profile is the first)


def prepare(settings: SweepSettings) -> SweepPlan:
    """Validate and resolve a sweep's settings before any work (errors name the parameter)."""
    from .data import default_calib_dir, default_val_dir, find_samples
    from .profiles import Profile, load_profile

    settings.metric = parse_metric(settings.metric, "metric", SWEEP_METRICS)
    if settings.limit is not None and settings.limit < 1:
        raise BadInput(f"limit must be >= 1, got {settings.limit}")
    if settings.iterations < 1:
        raise BadInput(f"iterations must be >= 1, got {settings.iterations}")
    if not settings.max_load >= 0:
        raise BadInput(f"max_load must be >= 0 (a fraction of one core), got {settings.max_load}")
    if not settings.max_seconds >= 0:
        raise BadInput(f"max_seconds must be >= 0, got {settings.max_seconds}")
    if settings.threads is not None and settings.threads < 1:
        raise BadInput(f"threads must be >= 1, got {settings.threads}")
    from .tasks import get_task

    task = get_task(settings.task)
    profiles = [d if isinstance(d, Profile) else load_profile(d) for d in device_list(settings.device)]
    names = [p.name for p in profiles]
    if len(set(names)) < len(names):
        raise BadInput(f"device: a profile is listed more than once ({', '.join(names)})")
    if settings.runtime is not None:
        from .engines import check_engine

        engine = check_engine(settings.runtime)
        profiles = [p if p.engine == engine else p.model_copy(update={"engine": engine, "engine_options": {}})
                    for p in profiles]
    _check_engines(profiles)
    profile = profiles[0]
    train = None
    if settings.train_data is not None or settings.val_data is not None:
        train, data, samples = _prepare_train(settings)
        calib = Path(settings.calib) if settings.calib else Path(settings.train_data)
    else:
        data = Path(settings.data) if settings.data else (default_val_dir() if task.name == "classification"
                                                          else task.default_eval_dir())
        samples = find_samples(data, limit=settings.limit, flag="data", labels=task.needs_labels())
        if not task.needs_labels():
            from .tasks.segmentation import drop_mask_files

            samples = drop_mask_files(samples)
        calib = Path(settings.calib) if settings.calib else (default_calib_dir() if task.name == "classification"
                                                             else task.calibration_dir())
    calib_samples = find_samples(calib, flag="calib", labels=False)
    return SweepPlan(settings, profile, data, samples, samples_digest(samples), calib, samples_digest(calib_samples),
                     min(opset_for_profile(p) for p in profiles), train=train, profiles=profiles)


def device_list(device) -> list:
    """The devices of `SweepSettings.device`: a comma list of names/paths ("host,host-litert"), or a list."""
    if isinstance(device, (list, tuple)):
        items = list(device)
    elif isinstance(device, str) and "," in device:
        items = [d.strip() for d in device.split(",")]
    else:
        items = [device]
    if not items or any(isinstance(d, str) and not d for d in items):
        raise BadInput(f"device: empty name in {device!r}", "e.g. --device host,host-litert,host-openvino")
    return items


def _check_engines(profiles) -> None:
    """Every device's runtime is installed (exit 3 with the pip hint), and a LiteRT device has the TFLite exporter
    its ONNX variants need, before any work."""
    from .engines import LITERT, require
    from .stages import tflite_exporter

    for p in profiles:
        require(p.engine)
        if p.engine == LITERT:
            tflite_exporter()


def _check_train_weights(weights: str) -> None:
    if weights != "pretrained":
        raise BadInput(f"train_data trains a new head on a pretrained backbone, so it needs pretrained weights (got "
                       f"{weights!r}: random weights have no features worth training on)",
                       "leave out --weights random; only archs and widths with a shipped checkpoint are swept")


def _prepare_train(settings: SweepSettings) -> tuple[dict, Path, list]:
    """The training classes and images (hashed), and val_data's images labelled by those classes."""
    from .data import Sample
    from .train import HeadSettings
    from .train.dataset import class_folders
    from .train.run import val_samples

    if settings.val_data is None:
        raise BadInput("val_data is missing", "with train_data, give val_data/<class name>/ (the same classes) to "
                                              "score each trained variant on")
    if settings.train_data is None:
        raise BadInput("train_data is missing", "val_data scores heads trained on train_data/<class name>/; give both")
    if settings.data is not None:
        raise BadInput("data is the ImageNet evaluation set", "with train_data, give the images to score as val_data")
    _check_train_weights(settings.weights)
    if not 0 < settings.train_val_split < 1:
        raise BadInput(f"train_val_split must be between 0 and 1, got {settings.train_val_split}")
    if settings.train_views < 1:
        raise BadInput(f"train_views must be at least 1, got {settings.train_views}")
    head = HeadSettings(**settings.train_settings).check()
    names, train_samples = class_folders(settings.train_data, flag="train_data")
    val = Path(settings.val_data)
    samples = val_samples(val, names, flag="val_data")
    if settings.limit is not None:
        samples = samples[: settings.limit]
    train = {"data": str(Path(settings.train_data)), "digest": samples_digest(train_samples), "names": names,
             "settings": head.as_dict(), "images": len(train_samples)}
    return train, val, [Sample(s.path, s.label) for s in samples]


@dataclass
class SweepResult:
    variants: list[VariantResult]
    skipped: list[str]
    settings: dict
    host: dict
    seconds: float
    selected: VariantResult | None = None
    budget_ms: float | None = None
    budget_metric: str | None = None  # the statistic budget_ms applies to
    timing: dict = field(default_factory=dict)  # how latency was measured: method, rounds, load limit, loaded rounds
    device_timing: dict = field(default_factory=dict)  # device -> its `timing` (one entry per device benched)
    failed: list[dict] = field(default_factory=list)  # variants whose bench failed where it ran: device, node, reason

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(v.device for v in self.variants if v.device)) or [self.settings.get("device")]

    def as_dict(self) -> dict:
        return {
            "mnetctl_version": __version__,
            "settings": self.settings,
            "host": self.host,
            "seconds": round(self.seconds, 2),
            "skipped": self.skipped,
            "budget_ms": self.budget_ms,
            "budget_metric": None if self.budget_metric is None else str(self.budget_metric),
            "selected": self.selected.name if self.selected else None,
            "timing": self.timing,
            "devices": self.device_timing,
            "failed": self.failed,
            "variants": [_variant_doc(v) for v in self.variants],
        }


def _variant_doc(v: VariantResult) -> dict:
    doc = asdict(v)
    doc["name"] = v.name
    return doc


def run_sweep(
    variants: list[Variant],
    settings: SweepSettings | SweepPlan,
    cache_dir: Path | None = None,
    on_stage: Callable[[str, Variant, bool], None] | None = None,
    runner: Any = None,
    on_progress: ProgressFn | None = None,
) -> SweepResult:
    """Run [build, (quantize), eval] per variant, then time them all interleaved (`bench_group`; with
    `settings.sequential`, the `bench` stage per variant) through `runner` (default: in-process), each stage
    cached by the content that determines it; then mark ties and flag the Pareto frontier.

    With several devices each variant is benched on each (built for the device's opset; a model two devices share
    is built and evaluated once). A runner with `parallel > 1` (a cluster) runs the variants' stages side by side
    and the devices' benches at once; a bench that fails where it ran (`StageFailed`) leaves its variants out of the
    results and in `failed`, with the reason."""
    from .quant.settings import default_settings
    from .runners import LocalRunner

    plan = settings if isinstance(settings, SweepPlan) else prepare(settings)
    settings = plan.settings
    runner = runner or LocalRunner()
    profiles = plan.profiles or [plan.profile]
    cache = Cache(cache_dir or default_cache_dir(), enabled=not settings.fresh)
    started = time.perf_counter()
    host = host_info()
    bench_host = getattr(runner, "bench_host", None)
    samples_doc = [[str(s.path), s.label] for s in plan.samples]
    latency_only = settings.weights == "random"  # random weights: nothing to evaluate, accuracy stays None
    jobs = [(prof, opset_for_profile(prof), v) for prof in profiles for v in variants]
    first = "train" if plan.train else "build"
    totals = {first: len(jobs), "quantize": sum(v.precision == "int8" for _, _, v in jobs),
              "export_tflite": sum(p.engine == "litert" for p, _, _ in jobs),
              "eval": 0 if latency_only else len(jobs), "bench": len(jobs)}
    done = dict.fromkeys(totals, 0)
    lock = threading.Lock()
    for name, total in totals.items():  # every stage's bar from the start, in stage order
        if total:
            report(on_progress, 0, total, f"{name:>8} · ")
    shared: dict[tuple[str, str], Any] = {}  # (stage, key) -> the Future of the one run of it in this sweep

    def stage(name: str, variant: Variant, key: str, inputs: dict) -> tuple[dict, bool]:
        with lock:
            first = (name, key) not in shared
            if first:
                shared[(name, key)] = Future()
            fut = shared[(name, key)]
        if not first:  # another device's chain asked for the same content: its result, counted as cached
            result = fut.result()
            tick(name, variant, True)
            return result, True
        spec = STAGES[name]
        if spec.artifact:
            inputs = {**inputs, "out": str(cache.artifact(name, key))}
        try:
            result = cache.get(name, key)
            hit = result is not None
            if not hit:
                result = runner.run(name, inputs)
                cache.put(name, key, result, artifact=spec.artifact)
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        fut.set_result(result)
        tick(name, variant, hit)
        return result, hit

    def tick(name: str, variant: Variant, hit: bool) -> None:
        with lock:
            if on_stage:
                on_stage(name, variant, hit)
            done[name] += 1
            report(on_progress, done[name], totals[name], f"{name:>8} · {variant.name}{' (cached)' if hit else ''}")

    def chain(prof, opset: int, variant: Variant) -> tuple:
        cached: dict[str, bool] = {}
        if plan.train:
            t = plan.train
            train_in = {"arch": variant.arch, "width": variant.width, "resolution": variant.resolution,
                        "data": t["data"], "val_split": settings.train_val_split, "views": settings.train_views,
                        "augment": settings.train_augment, "settings": t["settings"], "opset": opset}
            key = STAGES["train"].key(variant.arch, variant.width, variant.resolution,
                                      _checkpoint_id(variant, "pretrained"), t["digest"], t["names"],
                                      settings.train_val_split, settings.train_views, settings.train_augment,
                                      t["settings"], opset)
            features = None if settings.fresh else str(cache.root / "features")
            facts, cached["train"] = stage("train", variant, key, {**train_in, "features": features})
            nodes = {"train": (facts.get("where") or {}).get("node")}
        else:
            build_in = {"arch": variant.arch, "width": variant.width, "resolution": variant.resolution,
                        "weights": settings.weights, "opset": opset}
            key = STAGES["build"].key(**build_in, checkpoint=_checkpoint_id(variant, settings.weights))
            facts, cached["build"] = stage("build", variant, key, build_in)
            nodes = {"build": (facts.get("where") or {}).get("node")}
        trained = facts.get("train_val_accuracy")
        float_facts = facts
        if variant.precision == "int8":
            own = _runtime_quant(variant, prof.engine)  # a runtime with quantize defaults of its own: its own file
            q_in = {"model": facts["model"], "calib": str(plan.calib)}
            if own is not None:
                q_in["runtime"] = prof.engine
            key = STAGES["quantize"].key(float_facts["model"], plan.calib_digest,
                                         repr(own if own is not None else default_settings(variant.arch, variant.width)))
            facts, cached["quantize"] = stage("quantize", variant, key, q_in)
            nodes["quantize"] = (facts.get("where") or {}).get("node")
        if prof.engine == "litert":  # LiteRT runs the variant's TFLite export
            exported, cached["export_tflite"] = stage("export_tflite", variant, STAGES["export_tflite"].key(facts["model"]),
                                                      {"model": facts["model"]})
            facts = {**facts, "model": exported["model"], "size_mb": exported["size_mb"]}
        runtime = None if prof.engine == "onnxruntime" else prof.engine
        if latency_only:
            scores = {"top1": None, "top5": None, "n": 0}
        else:
            eval_in = {"model": facts["model"], "samples": samples_doc, "threads": settings.threads}
            if runtime is not None:
                eval_in.update(runtime=runtime, engine_options=dict(prof.engine_options))
            key = STAGES["eval"].key(facts["model"], plan.samples_digest, runtime, prof.engine_options)
            scores, cached["eval"] = stage("eval", variant, key, eval_in)
            nodes["eval"] = (scores.get("where") or {}).get("node")
        return variant, {**facts, "train_val_accuracy": trained}, scores, cached, nodes
    def bench_device(prof, prepared: list) -> tuple[dict, dict]:
        """(variant name -> timing, how it was measured) for one device."""
        profile_doc = prof.model_dump(mode="json")
        key_host = bench_host(profile_doc) if bench_host else host
        if settings.sequential:
            timings, timing = {}, {"method": "sequential", "iterations": settings.iterations}
            for variant, facts, _, cached, _ in prepared:
                bench_in = {"model": facts["model"], "profile": profile_doc, "threads": settings.threads,
                            "iterations": settings.iterations}
                key = STAGES["bench"].key(**bench_in, host=key_host)
                timings[variant.name] = cache.get("bench", key)
                cached["bench"] = timings[variant.name] is not None
                if not cached["bench"]:
                    timings[variant.name] = runner.run("bench", bench_in)
                    cache.put("bench", key, timings[variant.name])
                tick("bench", variant, cached["bench"])
            return timings, timing
        group_in = {"models": [f["model"] for _, f, *_ in prepared], "names": [v.name for v, *_ in prepared],
                    "profile": profile_doc, "threads": settings.threads, "iterations": settings.iterations,
                    "max_load": settings.max_load, "max_seconds": settings.max_seconds}
        report(on_progress, 0, totals["bench"], f"{'bench':>8} · {len(prepared)} variants interleaved on {prof.name}")
        key = STAGES["bench_group"].key(**group_in, host=key_host)
        group = cache.get("bench_group", key)
        hit = group is not None
        if not hit:
            group = runner.run("bench_group", group_in)
            cache.put("bench_group", key, group)  # loaded rounds stay counted in it; --fresh measures again
        where = group.get("where")
        timings = {n: dict(t, where=where) if where else t for n, t in group["variants"].items()}
        timing = {k: v for k, v in group.items() if k not in ("variants", "where")}
        timing["cached"] = hit
        if where:
            timing["node"], timing["host"] = where.get("node"), where.get("host")
        for variant, _, _, cached, _ in prepared:
            cached["bench"] = hit
            tick("bench", variant, hit)
        return timings, timing

    parallel = max(1, int(getattr(runner, "parallel", 1)))
    pool = ThreadPoolExecutor(max_workers=parallel) if parallel > 1 else None
    try:
        if pool is None:
            chains = [chain(*job) for job in jobs]
        else:
            chains = [f.result() for f in [pool.submit(chain, *job) for job in jobs]]
        per_device = {prof.name: [c for (p, _, _), c in zip(jobs, chains) if p is prof] for prof in profiles}

        failed: list[dict] = []

        def bench_or_fail(prof):
            try:
                return bench_device(prof, per_device[prof.name])
            except StageFailed as exc:
                failed.extend({"variant": v.name, "device": prof.name, "reason": exc.message}
                              for v, *_ in per_device[prof.name])
                return None

        if pool is None:
            benched = [bench_or_fail(prof) for prof in profiles]
        else:
            benched = [f.result() for f in [pool.submit(bench_or_fail, prof) for prof in profiles]]
    except BaseException:  # Ctrl-C or a failed stage: stop the runner's other work (a cluster's tasks) too
        cancel = getattr(runner, "cancel", None)
        if cancel is not None:
            cancel()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    results: list[VariantResult] = []
    device_timing: dict[str, dict] = {}
    for prof, measured in zip(profiles, benched):
        if measured is None:
            continue
        timings, timing = measured
        device_timing[prof.name] = timing
        group: list[VariantResult] = []
        for variant, facts, scores, cached, nodes in per_device[prof.name]:
            t = timings[variant.name]
            lat = t["latency_ms"]
            where = t.get("where") or {}
            group.append(VariantResult(
                arch=variant.arch, width=variant.width, resolution=variant.resolution, precision=variant.precision,
                weights=settings.weights, macs=facts["macs"], params=facts["params"], size_mb=facts["size_mb"],
                top1=scores["top1"], top5=scores["top5"], n_images=scores["n"],
                p50_ms=lat["p50"], p90_ms=lat["p90"], mean_ms=lat["mean"],
                latency_ms=lat, providers=t["providers"], model=facts["model"], cached=cached,
                p50_ci95_ms=t.get("p50_ci95_ms"), other_load=t.get("other_load"),
                loaded_rounds=int(timing.get("loaded_rounds", 0)), train_val_accuracy=facts.get("train_val_accuracy"),
                headline=scores.get("headline", "top1"), score=scores.get("score", scores["top1"]),
                runtime=prof.engine, device=prof.name, node=where.get("node"),
                host=where.get("host") or platform.node(), failed_attempts=list(where.get("failed_attempts") or []),
                stage_nodes={**nodes, "bench": where.get("node")} if where else {},
            ))
        mark_ties(group)  # ties within a device: its variants were timed together
        add_speedups(group)
        results.extend(group)
    # one frontier over every device and runtime (which variant, on which of them, for the budget)
    flags = pareto_flags(frontier_points(results, settings.metric))
    for r, flag in zip(results, flags):
        r.pareto = flag
    settings_doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    settings_doc["device"] = ",".join(p.name for p in profiles)
    settings_doc["devices"] = [p.name for p in profiles]
    settings_doc["data"] = str(plan.data)
    settings_doc["calib"] = str(plan.calib)
    if plan.train:
        settings_doc["train"] = {k: v for k, v in plan.train.items() if k != "digest"}
    timing = device_timing.get(profiles[0].name) or next(iter(device_timing.values()), {})
    return SweepResult(results, [], settings_doc, host, time.perf_counter() - started, timing=timing,
                       device_timing=device_timing, failed=failed)


def _runtime_quant(variant: Variant, engine: str):
    """The int8 settings of `variant` for a runtime whose quantize defaults differ from ONNX Runtime's (None: the
    shared int8 file serves it; LiteRT's export starts from that file)."""
    from .quant.settings import RUNTIME_DEFAULTS, default_settings

    if variant.precision != "int8" or not RUNTIME_DEFAULTS.get(engine, {}).get(variant.arch):
        return None
    own = default_settings(variant.arch, variant.width, engine)
    return None if own == default_settings(variant.arch, variant.width) else own


def mark_ties(results: list[VariantResult]) -> None:
    """Set each variant's `ties_with`: the variants whose p50 95% interval overlaps its own (both must have one)."""
    for r in results:
        r.ties_with = [o.name for o in results if o is not r and _overlap(r.p50_ci95_ms, o.p50_ci95_ms)]


def _overlap(a: list[float] | None, b: list[float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def add_speedups(results: list[VariantResult]) -> None:
    """Set `speedup` of each int8 variant whose fp32 twin (same arch, width, resolution) is in `results`: the
    twin's p50 over the variant's own p50 (from the same interleaved rounds, or with --sequential from two benches)."""
    fp32 = {(r.arch, r.width, r.resolution, r.device): r for r in results if r.precision == "fp32"}
    for r in results:
        twin = fp32.get((r.arch, r.width, r.resolution, r.device)) if r.precision == "int8" else None
        r.speedup = round(twin.p50_ms / r.p50_ms, 4) if twin is not None and r.p50_ms > 0 else None


def _checkpoint_id(variant: Variant, weights: str) -> str | None:
    if weights != "pretrained":
        return None
    ckpt = registry.find(variant.arch, variant.width)
    if ckpt is None:
        return None
    return digest([file_digest(registry.pretrained_dir() / f) for f in ckpt.files])


def opset_for_profile(profile) -> int:
    """The newest opset (up to the default) whose IR version the device's runtime accepts."""
    from .graph import DEFAULT_OPSET, MIN_OPSET, ir_version_for

    top = min(DEFAULT_OPSET, getattr(profile, "max_opset", None) or DEFAULT_OPSET)
    max_ir = getattr(profile, "max_ir", None)
    for opset in range(top, MIN_OPSET - 1, -1):
        if max_ir is None or ir_version_for(opset) <= max_ir:
            return opset
    return MIN_OPSET




# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def timing_note(timing: dict) -> str:
    """One sentence on how latency was measured (for report.md and the CLI)."""
    if timing.get("method") != "interleaved":
        return ("Latency: each variant benched on its own, one after another (sequential); no intervals, "
                "other load in cores during each bench.")
    text = (f"Latency: all variants timed together in {timing['rounds']} interleaved rounds of {timing['runs_per_block']} "
            f"runs per variant (order rotating, {timing['block_warmup']} untimed runs before each block); other load "
            f"= other processes' CPU use in cores during the variant's blocks")
    load = timing.get("other_load")
    if load is not None:
        text += f" ({load:.2f} over the whole measurement)"
    text += f"; {timing.get('retaken_rounds', 0)} rounds above {timing['max_load']:g} core(s) of other load taken again"
    if timing.get("loaded_rounds"):
        text += (f"; **{timing['loaded_rounds']} rounds kept although loaded** (the {timing['max_seconds']:g} s cap ran "
                 "out: the host was busy, absolute times are inflated)")
    return text + ("; measurement from the cache." if timing.get("cached") else ".")


def write_outputs(result: SweepResult, out: Path, metric: str = "p50", select: bool = False) -> dict[str, Path]:
    """sweep.json, pareto.png, report.md (and selected.onnx with `select`) in `out`, written as one set.

    Nothing changes unless every file could be made; sweep.json is renamed last, so it never sits beside an
    older plot or report. Two sweeps writing the same folder take turns (a lock on `out/.sweep.lock`).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sweep.json", "plot": out / "pareto.png", "report": out / "report.md"}
    if select and result.selected is not None:
        paths["selected"] = out / ("selected" + _model_suffix(result.selected.model))
    order = [k for k in ("selected", "plot", "report", "json") if k in paths]
    with locked(out / ".sweep.lock"):
        with atomic_paths([paths[k] for k in order]) as temps:
            tmp = dict(zip(order, temps))
            if "selected" in tmp:
                with writing(paths["selected"]):
                    shutil.copyfile(result.selected.model, tmp["selected"])
            with writing(paths["plot"]):
                _draw_pareto(result.variants, tmp["plot"], metric)
            with writing(paths["report"]):
                tmp["report"].write_text(markdown_report(result, metric, paths["plot"].name), encoding="utf-8")
            with writing(paths["json"]):
                tmp["json"].write_text(json.dumps(result.as_dict(), indent=2), encoding="utf-8")
        for stale in (out / "selected.onnx", out / "selected.tflite"):
            if stale != paths.get("selected") and stale.is_file():  # an earlier sweep's choice must not sit beside this one
                stale.unlink()
    return paths


def _model_suffix(model: str) -> str:
    """.tflite for a LiteRT variant's file (the export stage's artifact), else .onnx."""
    from .tflite_model import is_tflite

    return ".tflite" if is_tflite(model) else ".onnx"


def write_selected(result: SweepResult, out: Path) -> Path | None:
    """Only selected.onnx (selected.tflite for a LiteRT variant; write_outputs(..., select=True) writes it with
    the rest of the set)."""
    if result.selected is None:
        return None
    target = out / ("selected" + _model_suffix(result.selected.model))
    with atomic_path(target) as tmp:
        shutil.copyfile(result.selected.model, tmp)
    return target


def plot_pareto(results: list[VariantResult], path: Path, metric: str = "p50") -> None:
    with atomic_path(path) as tmp:
        _draw_pareto(results, tmp, metric)


def _draw_pareto(results: list[VariantResult], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    sized = any(r.score is None for r in results)  # random weights: size against latency

    def y(r: VariantResult) -> float:
        return r.size_mb if sized else 100 * r.score

    for prec, marker in (("fp32", "o"), ("int8", "s")):
        pts = [r for r in results if r.precision == prec]
        if pts:
            ax.scatter([r.latency(metric) for r in pts], [y(r) for r in pts], marker=marker,
                       s=[70 if r.pareto else 35 for r in pts],
                       c=["tab:red" if r.pareto else "tab:gray" for r in pts], label=prec, zorder=3)
    front = sorted((r for r in results if r.pareto), key=lambda r: r.latency(metric))
    if front:
        ax.step([r.latency(metric) for r in front], [y(r) for r in front], where="post",
                color="tab:red", lw=1.2, alpha=0.7, label="Pareto frontier", zorder=2)
    several = len({r.device for r in results}) > 1
    ax.set_xlabel(f"latency {metric} (ms, batch 1)")
    headline = results[0].headline if results else "top1"
    ax.set_ylabel("model size (MB)" if sized else f"{'top-1' if headline == 'top1' else headline} (%)")
    ax.set_title("MobileNet variants: " + ("size vs latency (random weights)" if sized else "accuracy vs latency")
                 + ("  (~ tie: p50 intervals overlap)" if any(r.ties_with for r in results) else ""))
    ax.margins(x=0.12, y=0.08)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left" if sized else "lower right", fontsize=8)
    fig.tight_layout()  # the final layout first: labels are placed where they will be drawn
    _place_labels(fig, ax, [(r.name + (f" @{r.device}" if several else "") + (" ~" if r.ties_with else ""),  # ~: a tie
                             (r.latency(metric), y(r))) for r in results])
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


# label offsets (points) tried in turn until a label overlaps none placed before it
_LABEL_OFFSETS = ((4, 3), (4, -10), (4, 12), (-4, 3), (4, -20), (4, 22), (-4, -10), (-4, 12), (-4, -22), (-4, 24))


def _place_labels(fig, ax, labels: list[tuple[str, tuple[float, float]]]) -> None:
    """Annotate each point with its text at the first offset whose box stays inside the axes and overlaps no label
    placed before; where none does, at the one inside the axes with the least overlap."""
    renderer = fig.canvas.get_renderer()
    placed = []

    def cost(box) -> float:
        inside = ax.bbox.x0 <= box.x0 and box.x1 <= ax.bbox.x1 and ax.bbox.y0 <= box.y0 and box.y1 <= ax.bbox.y1
        overlap = sum(max(0.0, min(box.x1, o.x1) - max(box.x0, o.x0)) * max(0.0, min(box.y1, o.y1) - max(box.y0, o.y0))
                      for o in placed)
        return overlap + (0.0 if inside else 1e9)

    for text, xy in sorted(labels, key=lambda item: item[1]):
        best = None
        for dx, dy in _LABEL_OFFSETS:
            ann = ax.annotate(text, xy, fontsize=7, xytext=(dx, dy), textcoords="offset points",
                              ha="left" if dx >= 0 else "right")
            box = ann.get_window_extent(renderer)
            c = cost(box)
            if best is None or c < best[0]:
                if best is not None:
                    best[1].remove()
                best = (c, ann, box)
            else:
                ann.remove()
            if c == 0.0:
                break
        placed.append(best[2])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown_report(result: SweepResult, metric: str, plot_name: str) -> str:
    headline = result.variants[0].headline if result.variants else "top1"
    first, second = ("top-1", "top-5") if headline == "top1" else (headline, "-")
    latency_only = any(r.score is None for r in result.variants)
    lines = [
        "# mnetctl sweep",
        "",
        f"Host: {result.host.get('cpu')} ({result.host.get('cores_logical')} cores); device profile "
        f"`{result.settings.get('device')}`; images: {result.settings.get('data')}"
        + (f" (first {result.settings['limit']})" if result.settings.get("limit") else "")
        + f"; latency metric {metric}; {result.seconds:.0f} s.",
        "",
        f"![{'size' if latency_only else 'accuracy'} vs latency]({plot_name})",
        "",
        f"| variant | precision | MACs (M) | params (M) | size (MB) | {first} | {second} | p50 (ms) | p50 95% CI (ms) | p90 (ms) "
        "| other load | x fp32 | Pareto | ties with |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|",
    ]
    several = len(result.device_timing) > 1
    for r in sorted(result.variants, key=lambda r: (r.device or "", r.latency(metric))):
        ci = "" if r.p50_ci95_ms is None else f"{r.p50_ci95_ms[0]:.3f}-{r.p50_ci95_ms[1]:.3f}"
        load = "" if r.other_load is None else f"{r.other_load:.2f}"
        on = f" @ {r.device}" if several else ""
        lines.append(
            f"| {r.arch} {format_width(r.width)} {r.resolution}{on} | {r.precision} | {r.macs / 1e6:.1f} | {r.params / 1e6:.3f} | "
            f"{r.size_mb:.2f} | {_pct(r.score)} | {_pct(r.top5) if headline == 'top1' else ''} | {r.p50_ms:.3f}{' ~' if r.ties_with else ''} | "
            f"{ci} | {r.p90_ms:.3f} | {load} | {'' if r.speedup is None else f'{r.speedup:.2f}x'} | "
            f"{'yes' if r.pareto else ''} | {', '.join(r.ties_with)} |"
        )
    if latency_only:
        lines += ["", "Random weights: latency and size only (no accuracy is measured); the frontier marks the "
                      "smallest model at each latency, and a selection takes the most MACs within the budget."]
    train = result.settings.get("train")
    if train:
        lines += ["", f"Each variant is a new head on its pretrained backbone, trained on {train['data']} "
                      f"({train['images']} images; classes {', '.join(train['names'])}), int8 calibrated on "
                      f"{result.settings.get('calib')}; top-1 on {result.settings.get('data')}."]
    if several:
        for device, timing in result.device_timing.items():
            where = f" (node {timing['node'][:12]}, host {timing.get('host')})" if timing.get("node") else ""
            lines += ["", f"On `{device}`{where}: " + timing_note(timing)]
    elif result.timing:
        lines += ["", timing_note(result.timing)]
    if any(r.node for r in result.variants) and not several:
        r = result.variants[0]
        lines += ["", f"Benched on cluster node {r.node} (host {r.host})."]
    if any(r.failed_attempts for r in result.variants):
        for r in result.variants:
            for a in r.failed_attempts:
                lines += ["", f"{r.name} on {r.device}: node {a['node'][:12]} lost ({a['reason']}); benched again on "
                              f"node {(r.node or '')[:12]}."]
    if result.failed:
        lines += ["", "**Failed** (no result): " + "; ".join(f"{f['variant']} on {f['device']}: {f['reason']}"
                                                       for f in result.failed)]
    if any(r.ties_with for r in result.variants):
        lines += ["", "~ tie: the variant's p50 95% interval overlaps those listed under *ties with*; their order on "
                      "latency (and so the frontier between them) is not resolved by this measurement."]
    if any(r.speedup is not None for r in result.variants):
        lines += ["", "x fp32: an int8 variant's speed-up over its fp32 twin (fp32 p50 / int8 p50"
                      + (", timed in the same interleaved rounds" if result.timing.get("method") == "interleaved"
                         else ", each benched alone") + "); above 1 is faster."]
    if result.budget_ms is not None:
        on = result.budget_metric or metric
        lines += ["", (f"Selected within {result.budget_ms:g} ms ({on}): **{result.selected.name}**"
                       if result.selected else f"No variant fits {result.budget_ms:g} ms ({on}).")]
    if result.skipped:
        lines += ["", "Skipped: " + "; ".join(result.skipped)]
    return "\n".join(lines) + "\n"
