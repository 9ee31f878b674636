"""Sweep MobileNet variants into an accuracy/latency Pareto frontier and pick the best under a budget.

A sweep is a list of stages per variant (`mnetctl.stages`: build -> (quantize) -> eval -> bench), each run
by a runner (`mnetctl.runners`) and cached under a digest of the content that determines it (model bytes,
image bytes and labels, the profile's contents, settings; `mnetctl.cache`), so re-running a sweep only does
new work and a changed input is never answered from the cache.
"""

from __future__ import annotations

from collections import Counter

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import __version__
from .cache import Cache, default_cache_dir, digest, file_digest, samples_digest
from .errors import BadInput
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
    top1: float
    top5: float
    n_images: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    latency_ms: dict[str, float]
    providers: list[str]
    model: str
    pareto: bool = False
    cached: dict[str, bool] = field(default_factory=dict)
    speedup: float | None = None  # int8 only: its fp32 twin's p50 / its own p50 (each variant benched alone)

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
) -> tuple[list[Variant], list[str]]:
    """The variant grid and notes: (arch, width) combinations skipped for lack of pretrained weights, and values
    listed more than once (each runs once).

    With pretrained weights and no explicit lists, every shipped checkpoint at its trained resolution.
    """
    if weights not in ("pretrained", "random"):
        raise BadInput(f"weights must be pretrained or random for a sweep, got {weights!r}")
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
    arch_list = once("archs", [resolve_arch(a) for a in archs]) if archs else (
        sorted({c.arch for c in registry.PRETRAINED}) if weights == "pretrained" else list(FAMILIES)
    )
    width_list = once("widths", [validate_width(w) for w in widths]) if widths else None
    res_list = once("resolutions", [validate_resolution(r) for r in resolutions]) if resolutions else None
    variants: list[Variant] = []
    for arch in arch_list:
        if weights == "pretrained":
            ckpts = [c for c in registry.PRETRAINED if c.arch == arch]
            arch_widths = width_list or [c.width for c in ckpts]
        else:
            ckpts = []
            arch_widths = width_list or [FAMILIES[arch].default_width]
        for width in arch_widths:
            ckpt = registry.find(arch, width) if weights == "pretrained" else None
            if weights == "pretrained" and ckpt is None:
                skipped.append(f"{arch} width {format_width(width)}: no pretrained checkpoint")
                continue
            arch_res = res_list or ([ckpt.trained_resolution] if ckpt else [FAMILIES[arch].default_resolution])
            for res in arch_res:
                for prec in precs:
                    variants.append(Variant(arch, width, res, prec))
    if not variants:
        raise BadInput("the sweep grid is empty", "; ".join(skipped) or "check --arch/--widths/--resolutions")
    return variants, skipped


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


def select_best(results: list[VariantResult], budget_ms: float, metric: Metric | str = Metric.P50) -> VariantResult | None:
    """Highest top-1 among the variants whose `metric` latency is within `budget_ms` (ties: the faster one)."""
    metric = parse_metric(metric)
    fitting = [r for r in results if r.latency(metric) <= budget_ms]
    if not fitting:
        return None
    return max(fitting, key=lambda r: (r.top1, -r.latency(metric)))


# ------------------------------------------------------------------------------------------------
# Running: a list of stages per variant over the content-addressed cache
# ------------------------------------------------------------------------------------------------


@dataclass
class SweepSettings:
    weights: str = "pretrained"
    data: Path | None = None  # evaluation images [default: the task's shipped set]
    limit: int | None = None
    device: "str | Path | Profile" = "host"  # a profile name/path, or a loaded Profile
    threads: int | None = None
    iterations: int = 100
    metric: str = "p50"
    calib: Path | None = None  # calibration images [default: the task's shipped set]
    fresh: bool = False


@dataclass
class SweepPlan:
    """Settings checked and resolved once: the profile loaded, the images found, their content hashed."""

    settings: SweepSettings
    profile: Any
    data: Path
    samples: list  # data.Sample
    samples_digest: str
    calib: Path
    calib_digest: str
    opset: int


def prepare(settings: SweepSettings) -> SweepPlan:
    """Validate and resolve a sweep's settings before any work (errors name the parameter)."""
    from .data import default_calib_dir, default_val_dir, find_samples
    from .profiles import Profile, load_profile

    settings.metric = parse_metric(settings.metric, "metric", SWEEP_METRICS)
    if settings.limit is not None and settings.limit < 1:
        raise BadInput(f"limit must be >= 1, got {settings.limit}")
    if settings.iterations < 1:
        raise BadInput(f"iterations must be >= 1, got {settings.iterations}")
    if settings.threads is not None and settings.threads < 1:
        raise BadInput(f"threads must be >= 1, got {settings.threads}")
    profile = settings.device if isinstance(settings.device, Profile) else load_profile(settings.device)
    data = Path(settings.data) if settings.data else default_val_dir()
    samples = find_samples(data, limit=settings.limit, flag="data")
    calib = Path(settings.calib) if settings.calib else default_calib_dir()
    calib_samples = find_samples(calib, flag="calib", labels=False)
    return SweepPlan(settings, profile, data, samples, samples_digest(samples), calib, samples_digest(calib_samples),
                     opset_for_profile(profile))


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
    """Run [build, (quantize), eval, bench] per variant through `runner` (default: in-process), each stage
    cached by the content that determines it; then flag the Pareto frontier."""
    from .quant.settings import default_settings
    from .runners import LocalRunner

    plan = settings if isinstance(settings, SweepPlan) else prepare(settings)
    settings = plan.settings
    runner = runner or LocalRunner()
    cache = Cache(cache_dir or default_cache_dir(), enabled=not settings.fresh)
    started = time.perf_counter()
    host = host_info()
    profile_doc = plan.profile.model_dump(mode="json")
    samples_doc = [[str(s.path), s.label] for s in plan.samples]
    results: list[VariantResult] = []
    totals = {name: sum(1 for v in variants if name != "quantize" or v.precision == "int8") for name in STAGES}
    done = dict.fromkeys(STAGES, 0)
    for name, total in totals.items():  # every stage's bar from the start, in stage order
        if total:
            report(on_progress, 0, total, f"{name:>8} · ")

    def stage(name: str, variant: Variant, key: str, inputs: dict) -> tuple[dict, bool]:
        spec = STAGES[name]
        if spec.artifact:
            inputs = {**inputs, "out": str(cache.artifact(name, key))}
        result = cache.get(name, key)
        hit = result is not None
        if not hit:
            result = runner.run(name, inputs)
            cache.put(name, key, result, artifact=spec.artifact)
        if on_stage:
            on_stage(name, variant, hit)
        done[name] += 1
        report(on_progress, done[name], totals[name], f"{name:>8} · {variant.name}{' (cached)' if hit else ''}")
        return result, hit

    for variant in variants:
        cached: dict[str, bool] = {}
        build_in = {"arch": variant.arch, "width": variant.width, "resolution": variant.resolution,
                    "weights": settings.weights, "opset": plan.opset}
        key = STAGES["build"].key(**build_in, checkpoint=_checkpoint_id(variant, settings.weights))
        facts, cached["build"] = stage("build", variant, key, build_in)
        if variant.precision == "int8":
            key = STAGES["quantize"].key(facts["model"], plan.calib_digest, repr(default_settings(variant.arch, variant.width)))
            facts, cached["quantize"] = stage("quantize", variant, key,
                                              {"model": facts["model"], "calib": str(plan.calib)})
        model = facts["model"]
        key = STAGES["eval"].key(model, plan.samples_digest)
        scores, cached["eval"] = stage("eval", variant, key, {"model": model, "samples": samples_doc,
                                                              "threads": settings.threads})
        bench_in = {"model": model, "profile": profile_doc, "threads": settings.threads, "iterations": settings.iterations}
        key = STAGES["bench"].key(**bench_in, host=host)
        timing, cached["bench"] = stage("bench", variant, key, bench_in)
        lat = timing["latency_ms"]
        results.append(VariantResult(
            arch=variant.arch, width=variant.width, resolution=variant.resolution, precision=variant.precision,
            weights=settings.weights, macs=facts["macs"], params=facts["params"], size_mb=facts["size_mb"],
            top1=scores["top1"], top5=scores["top5"], n_images=scores["n"],
            p50_ms=lat["p50"], p90_ms=lat["p90"], mean_ms=lat["mean"],
            latency_ms=lat, providers=timing["providers"], model=model, cached=cached,
        ))
    flags = pareto_flags([(r.top1, r.latency(settings.metric)) for r in results])
    for r, flag in zip(results, flags):
        r.pareto = flag
    add_speedups(results)
    settings_doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    settings_doc["device"] = plan.profile.name
    settings_doc["data"] = str(plan.data)
    settings_doc["calib"] = str(plan.calib)
    return SweepResult(results, [], settings_doc, host, time.perf_counter() - started)


def add_speedups(results: list[VariantResult]) -> None:
    """Set `speedup` of each int8 variant whose fp32 twin (same arch, width, resolution) is in `results`: the
    twin's p50 over the variant's own p50. Both come from separate bench runs on the same profile, not from
    interleaved rounds (`quant.speed` measures that ratio side by side)."""
    fp32 = {(r.arch, r.width, r.resolution): r for r in results if r.precision == "fp32"}
    for r in results:
        twin = fp32.get((r.arch, r.width, r.resolution)) if r.precision == "int8" else None
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


def write_outputs(result: SweepResult, out: Path, metric: str = "p50", select: bool = False) -> dict[str, Path]:
    """sweep.json, pareto.png, report.md (and selected.onnx with `select`) in `out`, written as one set.

    Nothing changes unless every file could be made; sweep.json is renamed last, so it never sits beside an
    older plot or report. Two sweeps writing the same folder take turns (a lock on `out/.sweep.lock`).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sweep.json", "plot": out / "pareto.png", "report": out / "report.md"}
    if select and result.selected is not None:
        paths["selected"] = out / "selected.onnx"
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
        stale = out / "selected.onnx"
        if "selected" not in paths and stale.is_file():  # an earlier sweep's choice must not sit beside this one
            stale.unlink()
    return paths


def write_selected(result: SweepResult, out: Path) -> Path | None:
    """Only selected.onnx (write_outputs(..., select=True) writes it with the rest of the set)."""
    if result.selected is None:
        return None
    target = out / "selected.onnx"
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
    for prec, marker in (("fp32", "o"), ("int8", "s")):
        pts = [r for r in results if r.precision == prec]
        if pts:
            ax.scatter([r.latency(metric) for r in pts], [100 * r.top1 for r in pts], marker=marker,
                       s=[70 if r.pareto else 35 for r in pts],
                       c=["tab:red" if r.pareto else "tab:gray" for r in pts], label=prec, zorder=3)
    front = sorted((r for r in results if r.pareto), key=lambda r: r.latency(metric))
    if front:
        ax.step([r.latency(metric) for r in front], [100 * r.top1 for r in front], where="post",
                color="tab:red", lw=1.2, alpha=0.7, label="Pareto frontier", zorder=2)
    for r in results:
        ax.annotate(r.name, (r.latency(metric), 100 * r.top1), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel(f"latency {metric} (ms, batch 1)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("MobileNet variants: accuracy vs latency")
    ax.margins(x=0.12, y=0.08)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def markdown_report(result: SweepResult, metric: str, plot_name: str) -> str:
    lines = [
        "# mnetctl sweep",
        "",
        f"Host: {result.host.get('cpu')} ({result.host.get('cores_logical')} cores); device profile "
        f"`{result.settings.get('device')}`; images: {result.settings.get('data')}"
        + (f" (first {result.settings['limit']})" if result.settings.get("limit") else "")
        + f"; latency metric {metric}; {result.seconds:.0f} s.",
        "",
        f"![accuracy vs latency]({plot_name})",
        "",
        "| variant | precision | MACs (M) | params (M) | size (MB) | top-1 | top-5 | p50 (ms) | p90 (ms) | x fp32 | Pareto |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in sorted(result.variants, key=lambda r: r.latency(metric)):
        lines.append(
            f"| {r.arch} {format_width(r.width)} {r.resolution} | {r.precision} | {r.macs / 1e6:.1f} | {r.params / 1e6:.3f} | "
            f"{r.size_mb:.2f} | {100 * r.top1:.1f}% | {100 * r.top5:.1f}% | {r.p50_ms:.3f} | {r.p90_ms:.3f} | "
            f"{'' if r.speedup is None else f'{r.speedup:.2f}x'} | {'yes' if r.pareto else ''} |"
        )
    if any(r.speedup is not None for r in result.variants):
        lines += ["", "x fp32: an int8 variant's speed-up over its fp32 twin (fp32 p50 / int8 p50), from the variants' "
                      "own p50s (each benched alone, not interleaved); above 1 is faster."]
    if result.budget_ms is not None:
        on = result.budget_metric or metric
        lines += ["", (f"Selected within {result.budget_ms:g} ms ({on}): **{result.selected.name}**"
                       if result.selected else f"No variant fits {result.budget_ms:g} ms ({on}).")]
    if result.skipped:
        lines += ["", "Skipped: " + "; ".join(result.skipped)]
    return "\n".join(lines) + "\n"
