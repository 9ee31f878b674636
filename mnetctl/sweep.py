"""Sweep MobileNet variants into an accuracy/latency Pareto frontier and pick the best under a budget.

For every variant: build -> (quantize) -> eval -> bench, through the library API of the other modules.
Every stage's artifact is cached by content (a hash of everything that determines it), so re-running a
sweep only does new work.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import __version__
from .errors import BadInput
from .fsutil import atomic_path, write_text
from .specs import FAMILIES, format_width, resolve_arch, validate_resolution, validate_width
from .weights import registry

PRECISIONS = ("fp32", "int8")
METRICS = ("p50", "p90", "p95", "p99", "mean")


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
    """The variant grid and the (arch, width) combinations skipped for lack of pretrained weights.

    With pretrained weights and no explicit lists, every shipped checkpoint at its trained resolution.
    """
    if weights not in ("pretrained", "random"):
        raise BadInput(f"--weights must be pretrained or random for a sweep, got {weights!r}")
    precs = [p.strip().lower() for p in precisions]
    for p in precs:
        if p not in PRECISIONS:
            raise BadInput(f"--precisions: unknown precision {p!r}", f"choose from {', '.join(PRECISIONS)}")
    arch_list = [resolve_arch(a) for a in archs] if archs else (
        sorted({c.arch for c in registry.PRETRAINED}) if weights == "pretrained" else list(FAMILIES)
    )
    width_list = [validate_width(w) for w in widths] if widths else None
    res_list = [validate_resolution(r) for r in resolutions] if resolutions else None
    variants: list[Variant] = []
    skipped: list[str] = []
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


def select_best(results: list[VariantResult], budget_ms: float, metric: str = "p50") -> VariantResult | None:
    """Highest top-1 among the variants within the latency budget (ties: the faster one)."""
    fitting = [r for r in results if r.latency(metric) <= budget_ms]
    if not fitting:
        return None
    return max(fitting, key=lambda r: (r.top1, -r.latency(metric)))


# ------------------------------------------------------------------------------------------------
# Content cache
# ------------------------------------------------------------------------------------------------


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:20]


def data_digest(data: Path, limit: int | None) -> str:
    """Identity of an image set: relative names and sizes of the files (cheap, content-sensitive enough)."""
    from .data import find_samples

    samples = find_samples(data, limit=limit)
    return _digest([(str(s.path.relative_to(data) if s.path.is_relative_to(data) else s.path.name),
                     s.path.stat().st_size, s.label) for s in samples])


class Cache:
    """Stage artifacts under `root/<stage>/<key>.<ext>`; JSON results and model files."""

    def __init__(self, root: Path, enabled: bool = True):
        self.root = Path(root)
        self.enabled = enabled

    def path(self, stage: str, key: str, ext: str) -> Path:
        return self.root / stage / f"{key}.{ext}"

    def get_json(self, stage: str, key: str) -> dict | None:
        p = self.path(stage, key, "json")
        if not self.enabled or not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def put_json(self, stage: str, key: str, value: dict) -> None:
        write_text(self.path(stage, key, "json"), json.dumps(value, indent=1, sort_keys=True))

    def model(self, stage: str, key: str) -> Path:
        return self.path(stage, key, "onnx")


def default_cache_dir() -> Path:
    import os

    base = os.environ.get("MNETCTL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "mnetctl")
    return Path(base) / "sweep"


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


@dataclass
class SweepSettings:
    weights: str = "pretrained"
    data: Path | None = None
    limit: int | None = None
    device: str = "host"
    threads: int | None = None
    iterations: int = 100
    metric: str = "p50"
    calib: Path | None = None
    fresh: bool = False


@dataclass
class SweepResult:
    variants: list[VariantResult]
    skipped: list[str]
    settings: dict
    host: dict
    seconds: float
    selected: VariantResult | None = None
    budget_ms: float | None = None

    def as_dict(self) -> dict:
        return {
            "mnetctl_version": __version__,
            "settings": self.settings,
            "host": self.host,
            "seconds": round(self.seconds, 2),
            "skipped": self.skipped,
            "budget_ms": self.budget_ms,
            "selected": self.selected.name if self.selected else None,
            "variants": [_variant_doc(v) for v in self.variants],
        }


def _variant_doc(v: VariantResult) -> dict:
    doc = asdict(v)
    doc["name"] = v.name
    return doc



def run_sweep(
    variants: list[Variant],
    settings: SweepSettings,
    cache_dir: Path | None = None,
    on_stage: Callable[[str, Variant, bool], None] | None = None,
) -> SweepResult:
    """Build/quantize/eval/bench every variant (cached), then flag the Pareto frontier."""
    from .analysis import analyze
    from .builder import build_model, save_model
    from .data import default_val_dir
    from .modelio import load_onnx

    if settings.metric not in METRICS:
        raise BadInput(f"--metric must be one of {', '.join(METRICS)}, got {settings.metric!r}")
    data = Path(settings.data) if settings.data else default_val_dir()
    cache = Cache(cache_dir or default_cache_dir(), enabled=not settings.fresh)
    started = time.perf_counter()
    data_id = data_digest(data, settings.limit)
    profile = _load_profile(settings.device)
    opset = opset_for_profile(profile)
    host = _host_info()
    results: list[VariantResult] = []

    def note(stage: str, variant: Variant, cached: bool) -> None:
        if on_stage:
            on_stage(stage, variant, cached)

    for variant in variants:
        cached: dict[str, bool] = {}
        # build (fp32) --------------------------------------------------------------------
        build_key = _digest({
            "arch": variant.arch, "width": variant.width, "res": variant.resolution, "weights": settings.weights,
            "ckpt": _checkpoint_id(variant, settings.weights), "opset": opset, "version": __version__,
        })
        fp32_path = cache.model("build", build_key)
        cached["build"] = cache.enabled and fp32_path.is_file()
        if not cached["build"]:
            model = build_model(variant.arch, variant.width, variant.resolution, weights=settings.weights, opset=opset)
            save_model(model, fp32_path)
        note("build", variant, cached["build"])
        model_path = fp32_path
        # quantize ------------------------------------------------------------------------
        if variant.precision == "int8":
            from .quant.settings import default_settings

            q_key = _digest({"model": file_digest(fp32_path), "calib": str(settings.calib or "default"),
                             "defaults": repr(default_settings(variant.arch)), "version": __version__})
            int8_path = cache.model("quantize", q_key)
            cached["quantize"] = cache.enabled and int8_path.is_file()
            if not cached["quantize"]:
                from .quant.pipeline import quantize_model

                quantize_model(fp32_path, output=int8_path, calib=settings.calib)
            note("quantize", variant, cached["quantize"])
            model_path = int8_path
        model_id = file_digest(model_path)
        # eval ----------------------------------------------------------------------------
        e_key = _digest({"model": model_id, "data": data_id, "limit": settings.limit})
        ev = cache.get_json("eval", e_key)
        cached["eval"] = ev is not None
        if ev is None:
            from .evaluate import evaluate

            res = evaluate(model_path, data, limit=settings.limit, threads=settings.threads)
            ev = {"top1": res.top1, "top5": res.top5, "n": res.n}
            cache.put_json("eval", e_key, ev)
        note("eval", variant, cached["eval"])
        # bench ---------------------------------------------------------------------------
        b_key = _digest({"model": model_id, "device": settings.device, "threads": settings.threads,
                         "iterations": settings.iterations, "host": host, "version": __version__})
        bn = cache.get_json("bench", b_key)
        cached["bench"] = bn is not None
        if bn is None:
            from .bench import bench

            br = bench(model_path, profile=profile, threads=settings.threads, iterations=settings.iterations, progress=False)
            doc = br.as_dict()
            bn = {"latency_ms": {k: float(v) for k, v in br.latency_ms.items()}, "providers": list(doc.get("providers", []))}
            cache.put_json("bench", b_key, bn)
        note("bench", variant, cached["bench"])
        stats = analyze(load_onnx(model_path))
        results.append(VariantResult(
            arch=variant.arch, width=variant.width, resolution=variant.resolution, precision=variant.precision,
            weights=settings.weights, macs=stats.macs, params=stats.params,
            size_mb=round(model_path.stat().st_size / 1e6, 3),
            top1=ev["top1"], top5=ev["top5"], n_images=ev["n"],
            p50_ms=bn["latency_ms"]["p50"], p90_ms=bn["latency_ms"]["p90"], mean_ms=bn["latency_ms"]["mean"],
            latency_ms=bn["latency_ms"], providers=bn["providers"], model=str(model_path), cached=cached,
        ))
    flags = pareto_flags([(r.top1, r.latency(settings.metric)) for r in results])
    for r, flag in zip(results, flags):
        r.pareto = flag
    settings_doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    settings_doc["data"] = str(data)
    return SweepResult(results, [], settings_doc, host, time.perf_counter() - started)


def _checkpoint_id(variant: Variant, weights: str) -> str | None:
    if weights != "pretrained":
        return None
    ckpt = registry.find(variant.arch, variant.width)
    if ckpt is None:
        return None
    return _digest([file_digest(registry.pretrained_dir() / f) for f in ckpt.files])


def opset_for_profile(profile) -> int:
    """The newest opset (up to the default) whose IR version the device's runtime accepts."""
    from .graph import DEFAULT_OPSET, MIN_OPSET, ir_version_for

    top = min(DEFAULT_OPSET, getattr(profile, "max_opset", None) or DEFAULT_OPSET)
    max_ir = getattr(profile, "max_ir", None)
    for opset in range(top, MIN_OPSET - 1, -1):
        if max_ir is None or ir_version_for(opset) <= max_ir:
            return opset
    return MIN_OPSET


def _load_profile(device: str):
    from .profiles import load_profile

    return load_profile(device)


def _host_info() -> dict:
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(), "system": platform.system()}


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def write_outputs(result: SweepResult, out: Path, metric: str = "p50") -> dict[str, Path]:
    """sweep.json, pareto.png and report.md in `out` (each written atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sweep.json", "plot": out / "pareto.png", "report": out / "report.md"}
    write_text(paths["json"], json.dumps(result.as_dict(), indent=2))
    plot_pareto(result.variants, paths["plot"], metric)
    write_text(paths["report"], markdown_report(result, metric, paths["plot"].name))
    return paths


def write_selected(result: SweepResult, out: Path) -> Path | None:
    if result.selected is None:
        return None
    target = out / "selected.onnx"
    with atomic_path(target) as tmp:
        shutil.copyfile(result.selected.model, tmp)
    return target


def plot_pareto(results: list[VariantResult], path: Path, metric: str = "p50") -> None:
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def markdown_report(result: SweepResult, metric: str, plot_name: str) -> str:
    lines = [
        "# mnetctl sweep",
        "",
        f"Host: {result.host.get('cpu')} ({result.host.get('cores')} cores); device profile "
        f"`{result.settings.get('device')}`; images: {result.settings.get('data')}"
        + (f" (first {result.settings['limit']})" if result.settings.get("limit") else "")
        + f"; latency metric {metric}; {result.seconds:.0f} s.",
        "",
        f"![accuracy vs latency]({plot_name})",
        "",
        "| variant | precision | MACs (M) | params (M) | size (MB) | top-1 | top-5 | p50 (ms) | p90 (ms) | Pareto |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in sorted(result.variants, key=lambda r: r.latency(metric)):
        lines.append(
            f"| {r.arch} {format_width(r.width)} {r.resolution} | {r.precision} | {r.macs / 1e6:.1f} | {r.params / 1e6:.3f} | "
            f"{r.size_mb:.2f} | {100 * r.top1:.1f}% | {100 * r.top5:.1f}% | {r.p50_ms:.3f} | {r.p90_ms:.3f} | "
            f"{'yes' if r.pareto else ''} |"
        )
    if result.budget_ms is not None:
        lines += ["", (f"Selected within {result.budget_ms:g} ms ({metric}): **{result.selected.name}**"
                       if result.selected else f"No variant fits {result.budget_ms:g} ms ({metric}).")]
    if result.skipped:
        lines += ["", "Skipped: " + "; ".join(result.skipped)]
    return "\n".join(lines) + "\n"
