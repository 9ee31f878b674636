"""`tune`: measure this host's levers on one model, interleaved, and keep the fastest configuration that stays accurate.

Levers: the execution providers installed here that load (CPU always), intra-op threads 1..cores, intra-op
spinning on/off (`session.intra_op.allow_spinning`), the graph optimisation level (basic/extended/all), the other
runtimes installed here (`mnetctl.engines`: OpenVINO on the ONNX file, LiteRT on its TFLite export when this
mnetctl has the exporter; threads 1..cores) and, for a float model mnetctl built (metadata names a known arch,
precision fp32), the int8 variants `quant.pipeline` produces. Every configuration is compared with the device profile's own one (the reference: its providers,
threads and session settings, the given model).

Steps:
  1. accuracy: top-1 of each (model variant, optimisation level) on the val sample; configurations more than
     `max_drop` points below the given model's (at the reference level) are dropped, never timed;
  2. screen: every kept configuration interleaved in short blocks (`interleave.interleave`), ranked by the
     paired ratio of its block medians to the reference's in the same round;
  3. race: the best `finalists` and the reference, interleaved in longer blocks, more rounds;
  4. check: the race winner against the reference alone, interleaved; a winner whose paired ratio is above 1
     (slower) is not kept: the result is then the reference configuration, and says so.

Every session stops its pool threads spinning when a run returns (`session.force_spinning_stop`), so one idle
session takes no CPU time from the next; "spinning on" means spinning inside a run (onnxruntime's default).
"""

from __future__ import annotations

import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import BadInput, EnvironmentMissing
from .interleave import Interleaved, Runnable, interleave
from .profiles import Profile, as_profile, parse_profile
from .progress import ProgressFn, report

GIVEN = "given"  # the model as passed in
LEVELS = ("basic", "extended", "all")
# int8 variants of a float model mnetctl built: name -> changes to the per-architecture quantization defaults
INT8_VARIANTS: dict[str, dict[str, Any]] = {
    "int8": {},
    "int8-all-layers": {"keep_float": [], "float_max_channels": 0},
}
DEFAULT_MAX_DROP = 0.5  # top-1 points
DEFAULT_LIMIT = None  # val images for the accuracy filter (None: all 200 shipped: 0.5 point = 1 image)
DEFAULT_MAX_SECONDS = 120.0  # for the timing steps (quantizing and evaluating come on top)
FINALISTS = 4
SCREEN = (3, 10)  # (untimed, timed) runs per block in the screening rounds
RACE = (10, 40)  # ... in the race and the check


@dataclass(frozen=True)
class Config:
    """One configuration: a model variant on providers with session settings (None: the runtime's default)."""

    variant: str  # GIVEN or a key of INT8_VARIANTS
    eps: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]  # (provider, options as sorted pairs), in order
    threads: int | None
    spinning: bool | None
    level: str | None
    reference: bool = False
    engine: str = "onnxruntime"  # the runtime (mnetctl.engines); eps, spinning and level are onnxruntime's

    @property
    def name(self) -> str:
        if self.reference:
            return "reference"
        if self.engine != "onnxruntime":
            return " ".join([self.variant, self.engine, f"t{self.threads}" if self.threads else "t-default"])
        parts = [self.variant, "+".join(e for e, _ in self.eps),
                 f"t{self.threads}" if self.threads else "t-default",
                 {None: "spin-default", True: "spin", False: "no-spin"}[self.spinning], self.level or "all"]
        return " ".join(parts)

    @property
    def eval_level(self) -> str:
        return self.level or "all"

    @property
    def acc_key(self) -> tuple[str, ...]:
        """What decides its top-1: on onnxruntime (variant, optimisation level); elsewhere (variant, level "-", runtime)."""
        return (self.variant, self.eval_level) if self.engine == "onnxruntime" else (self.variant, "-", self.engine)

    def session_config(self) -> dict[str, str]:
        from .runtime import CFG_ALLOW_SPINNING

        return {} if self.spinning is None else {CFG_ALLOW_SPINNING: "1" if self.spinning else "0"}

    def ep_requests(self):
        from .runtime import EPRequest

        return [EPRequest(name, dict(opts)) for name, opts in self.eps]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "variant": self.variant, "eps": [{"name": n, "options": dict(o)} for n, o in self.eps],
                "threads": self.threads, "intra_op_spinning": self.spinning, "graph_optimization": self.level,
                "reference": self.reference, "engine": self.engine}


def _eps_of(profile: Profile) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    return tuple((e.name, tuple(sorted(e.options.items()))) for e in profile.eps)


def reference_config(profile: Profile) -> Config:
    """The profile's own configuration on the given model."""
    return Config(GIVEN, _eps_of(profile), profile.threads, profile.session.intra_op_spinning,
                  profile.session.graph_optimization, reference=True, engine=profile.engine)


def candidates(profile: Profile, cores: int, available_eps: Sequence[str], variants: Sequence[str] = (GIVEN,),
               engines: Sequence[str] = ()) -> list[Config]:
    """The reference first, then every lever combination this host offers, for each model variant.

    CPU: threads 1..cores x spinning on/off x each level in LEVELS. Another provider that is available here: its
    profile options (if the profile names it) with CPU behind it for the nodes it does not take, threads 1..cores,
    onnxruntime's default session settings. Another runtime in `engines` (litert, openvino): threads 1..cores.
    """
    if cores < 1:
        raise BadInput(f"cores must be >= 1, got {cores}")
    by_name = dict(_eps_of(profile))
    out = [reference_config(profile)]
    for variant in variants:
        for ep in dict.fromkeys(["cpu", *available_eps]):
            if ep == "cpu":
                eps = (("cpu", by_name.get("cpu", ())),)
                for threads in range(1, cores + 1):
                    for spinning in (True, False):
                        for level in LEVELS:
                            out.append(Config(variant, eps, threads, spinning, level))
            else:
                eps = ((ep, by_name.get(ep, ())), ("cpu", by_name.get("cpu", ())))
                for threads in range(1, cores + 1):
                    out.append(Config(variant, eps, threads, None, None))
        for engine in engines:
            if engine == "onnxruntime":
                continue
            for threads in range(1, cores + 1):
                out.append(Config(variant, (("cpu", ()),), threads, None, None, engine=engine))
    return out


def available_engines(requested: Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(runtimes besides onnxruntime to try, the ones left out -> why): installed ones, and LiteRT only with the
    TFLite exporter (tune gives it the variant's export). `requested` None: every one installed here."""
    from .engines import ENGINES, LITERT, check_engine, status
    from .errors import MnetctlError

    names = [check_engine(e) for e in requested] if requested is not None else list(ENGINES)
    keep, skipped = [], {}
    for name in names:
        if name == "onnxruntime":
            continue
        ok, why = status(name)
        if ok and name == LITERT:
            from .stages import tflite_exporter

            try:
                tflite_exporter()
            except MnetctlError as exc:
                ok, why = False, exc.message
        if ok:
            keep.append(name)
        else:
            skipped[name] = why
    return keep, skipped


def available_eps(profile: Profile) -> list[str]:
    """Providers this onnxruntime offers (CPU always), after checking the profile's own are all here (exit 3)."""
    from .runtime import EP_REGISTRY, ep_status

    for e in profile.eps:
        st = ep_status(e.name)
        if not st.available:
            raise EnvironmentMissing(f"profile {profile.name} needs the {st.title} execution provider ({e.name}), "
                                     f"which is not available here: {st.detail}", st.hint)
    return [name for name in EP_REGISTRY if name == "cpu" or ep_status(name).available]


# --------------------------------------------------------------------------------------------------------------
# Accuracy


@dataclass
class Accuracy:
    top1: dict[tuple[str, ...], float]  # Config.acc_key -> top-1 (fraction)
    reference: float  # the given model's top-1 at the reference's level
    images: int


def accuracy_filter(configs: Sequence[Config], acc: Accuracy, max_drop: float = DEFAULT_MAX_DROP) -> tuple[list[Config], list[Config]]:
    """(kept, dropped): a configuration is dropped when its top-1 is more than `max_drop` points below the
    reference's (the reference itself is always kept)."""
    kept, dropped = [], []
    for c in configs:
        top1 = acc.top1[c.acc_key]
        if c.reference or 100.0 * (acc.reference - top1) <= max_drop + 1e-9:
            kept.append(c)
        else:
            dropped.append(c)
    return kept, dropped


def measure_accuracy(paths: Mapping[str, Path], configs: Sequence[Config], limit: int | None,
                     on_progress: ProgressFn | None = None, tflite_paths: Mapping[str, Path] | None = None) -> Accuracy:
    """Top-1 on the shipped val sample (first `limit` images) of every (variant, runtime, level) the configurations
    use; LiteRT runs the variant's TFLite file from `tflite_paths`."""
    from .data import default_val_dir, find_samples
    from .evaluate import evaluate
    from .runtime import open_cpu_session

    samples = find_samples(default_val_dir(), limit)
    keys = list(dict.fromkeys(c.acc_key for c in configs))
    top1 = {}
    for i, key in enumerate(keys):
        variant, level, engine = (*key, "onnxruntime")[:3]
        if engine == "onnxruntime":
            path = paths[variant]
            session = open_cpu_session(path, str(path), graph_optimization=level)
            top1[key] = evaluate(path, samples, session=session).top1
        else:
            path = (tflite_paths or {})[variant] if engine == "litert" else paths[variant]
            top1[key] = evaluate(path, samples, runtime=engine).top1
        report(on_progress, i + 1, len(keys), "accuracy")
    ref = next(c for c in configs if c.reference)
    return Accuracy(top1, top1[ref.acc_key], len(samples))


# --------------------------------------------------------------------------------------------------------------
# Timing


def runnable(config: Config, path: Path, seed: int = 0) -> Runnable:
    """A session for `config` (no silent fallback) as an interleave.Runnable on one random input (another runtime:
    `engines.load` on `path`, its input set once)."""
    from .modelio import guarded_run
    from .runtime import create_session, random_feeds

    if config.engine != "onnxruntime":
        from .engines import load, runnable as engine_runnable

        return engine_runnable(config.name, load(config.engine, path, threads=config.threads, seed=seed))

    info = create_session(path, config.ep_requests(), threads=config.threads, config=config.session_config(),
                          stop_idle_spinning=True, graph_optimization=config.level)
    session = info.session
    feeds = random_feeds(session, seed=seed)

    run = guarded_run(session, path)

    return Runnable(config.name, run, [feeds])


def merge(parts: Sequence[Interleaved]) -> Interleaved:
    """One Interleaved from several runs over the same runnables (rounds concatenated)."""
    first = parts[0]
    loads = [p.other_load for p in parts if p.other_load is not None]
    return Interleaved(list(first.names), [r for p in parts for r in p.rounds], [x for p in parts for x in p.round_load],
                       float(np.mean(loads)) if loads else None, first.runs, first.block_warmup, first.warmup)


def timed(runnables: Sequence[Runnable], seconds: float, block: tuple[int, int], min_rounds: int = 1, max_rounds: int = 50,
          on_progress: ProgressFn | None = None, label: str = "time") -> Interleaved:
    """Interleaved rounds for about `seconds`: one round first to learn its length, then as many as fit (at
    least `min_rounds` in all, at most `max_rounds`); the second part starts one place further in the order."""
    warm, runs = block
    t0 = time.perf_counter()
    first = interleave(runnables, rounds=1, runs=runs, block_warmup=warm, warmup=warm, label=label)
    per_round = max(time.perf_counter() - t0, 1e-3)
    more = int(min(max_rounds - 1, max(min_rounds - 1, math.floor(seconds / per_round) - 1)))
    report(on_progress, 1, more + 1, label)
    if more <= 0:
        return first
    order = list(runnables[1:]) + list(runnables[:1])

    def progress(done, total, what):
        report(on_progress, done + 1, more + 1, what)

    rest = interleave(order, rounds=more, runs=runs, block_warmup=warm, on_progress=progress, label=label)
    rest.names = list(first.names)
    return merge([first, rest])


def paired_ci(timing: Interleaved, name: str, ref: str, confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval of the median over rounds of the per-round ratio name/ref."""
    from .stats import median_ci

    ratios = [float(np.median(r[name]) / np.median(r[ref])) for r in timing.rounds]
    return median_ci(ratios, confidence)


# --------------------------------------------------------------------------------------------------------------
# The whole run


@dataclass
class Row:
    config: Config
    top1: float
    dropped: bool = False  # by the accuracy filter
    screen_ratio: float | None = None  # paired p50 ratio vs the reference in the screening rounds
    screen_p50_ms: float | None = None
    race_ratio: float | None = None
    race_p50_ms: float | None = None
    race_ci: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {**self.config.as_dict(), "top1": round(self.top1, 6), "dropped": self.dropped,
                "screen_ratio_p50": r(self.screen_ratio), "screen_p50_ms": r(self.screen_p50_ms),
                "race_ratio_p50": r(self.race_ratio), "race_p50_ms": r(self.race_p50_ms),
                "race_ratio_ci95": None if self.race_ci is None else [round(x, 4) for x in self.race_ci]}


@dataclass
class TuneResult:
    model: str
    resolution: int  # the model's input resolution
    profile: str
    host: str
    cores: int
    eps: list[str]
    rows: list[Row]
    reference: Config
    winner: Config  # what is kept: the race winner, or the reference when the check found it slower
    candidate: Config  # the race winner
    check_ratio: float  # candidate p50 / reference p50, paired, in the final interleaved check
    check_ci: tuple[float, float]
    check_rounds: int
    kept_reference: bool
    accuracy_images: int
    max_drop: float
    other_load: float | None
    seconds: float
    variant_paths: dict[str, str] = field(default_factory=dict)
    variant_errors: dict[str, str] = field(default_factory=dict)  # int8 variants that could not be made
    model_written: str | None = None  # the kept int8 variant's file (or the kept LiteRT configuration's TFLite file)
    runtimes: list[str] = field(default_factory=list)  # runtimes tried besides onnxruntime
    runtimes_skipped: dict[str, str] = field(default_factory=dict)  # runtime -> why it was not tried
    tflite_paths: dict[str, str] = field(default_factory=dict)  # variant -> its TFLite export (LiteRT configurations)

    @property
    def winner_row(self) -> Row:
        return next(r for r in self.rows if r.config == self.winner)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "resolution": self.resolution, "profile": self.profile, "host": self.host, "cores": self.cores, "eps": self.eps,
            "accuracy_images": self.accuracy_images, "max_drop_points": self.max_drop,
            "reference": self.reference.as_dict(), "candidate": self.candidate.as_dict(), "winner": self.winner.as_dict(),
            "check": {"ratio_p50": round(self.check_ratio, 4), "ci95": [round(x, 4) for x in self.check_ci],
                      "rounds": self.check_rounds, "kept_reference": self.kept_reference},
            "model_written": self.model_written, "variant_errors": dict(self.variant_errors), "other_load": self.other_load,
            "runtimes": list(self.runtimes), "runtimes_skipped": dict(self.runtimes_skipped),
            "seconds": round(self.seconds, 1), "rows": [r.as_dict() for r in self.rows],
        }


def int8_variants(model) -> list[str]:
    """The int8 variants mnetctl can make of `model`: a float model it built for a known architecture."""
    from .quant.settings import ARCH_DEFAULTS

    meta = model.meta
    if model.quantized or meta.precision not in ("fp32", "float32") or meta.arch not in ARCH_DEFAULTS:
        return []
    return list(INT8_VARIANTS)


def make_variants(model, names: Sequence[str], folder: Path, on_progress: ProgressFn | None = None,
                  samples: int = 100) -> tuple[dict[str, Path], dict[str, str]]:
    """int8 files of `model` in `folder` (paths by name), and the variants that failed (name -> reason)."""
    from .errors import MnetctlError
    from .quant.pipeline import quantize_model

    paths, errors = {}, {}
    for i, name in enumerate(names):
        out = folder / f"{name}.onnx"
        try:
            quantize_model(model, out, INT8_VARIANTS[name], samples=samples)
            paths[name] = out
        except MnetctlError as exc:
            errors[name] = exc.message
        report(on_progress, i + 1, len(names), "quantize")
    return paths, errors


def tune(
    model: Path | str,
    profile: Profile | str | Path = "host",
    max_seconds: float = DEFAULT_MAX_SECONDS,
    limit: int | None = DEFAULT_LIMIT,
    max_drop: float = DEFAULT_MAX_DROP,
    int8: bool = True,
    work: Path | str | None = None,
    finalists: int = FINALISTS,
    cores: int | None = None,
    calib_samples: int = 100,
    output: Path | str | None = None,
    on_progress: ProgressFn | None = None,
    runtimes: Sequence[str] | None = None,
) -> TuneResult:
    """Measure the levers of this host on `model` against `profile`'s configuration and pick the fastest that keeps
    top-1 within `max_drop` points. `max_seconds` caps the timing steps; int8 files go to `work` (default: a
    temporary folder, gone after the call; pass a folder to keep the winner's file); int8 variants calibrate on
    the first `calib_samples` shipped calibration images. When an int8 variant is kept, its file is written to
    `output` (default: `default_output(model)`), atomically. `runtimes`: the other runtimes to try (None: every one
    installed here, `available_engines`); a kept LiteRT configuration writes its TFLite file (`.tflite` beside
    `output`)."""
    from .fsutil import check_writable, temp_dir
    from .hostinfo import cpu_summary, usable_cpus
    from .model import Model

    if not max_seconds > 0:
        raise BadInput(f"max_seconds must be positive, got {max_seconds}")
    if not 0 <= float(max_drop) <= 100:
        raise BadInput(f"max_drop must be in 0..100 top-1 points, got {max_drop}")
    if limit is not None and int(limit) < 1:
        raise BadInput(f"limit must be >= 1, got {limit}")
    if finalists < 1:
        raise BadInput(f"finalists must be >= 1, got {finalists}")
    prof = as_profile(profile)
    handle = Model.open(model)  # BadInput for a file that is no image model
    if handle.task.name != "classification":  # its accuracy filter is top-1 on the shipped ImageNet sample
        raise BadInput(f"tune screens classifiers; {model} is a {handle.task.name} model",
                       "time it with mnetctl bench (--device / --profile)")
    eps = available_eps(prof)  # EnvironmentMissing when the profile's providers are not here
    engines, engines_skipped = available_engines(runtimes)
    if prof.engine != "onnxruntime":
        from .engines import require

        require(prof.engine)
        if prof.engine not in engines:
            engines.append(prof.engine)
    cores = cores or usable_cpus()
    out = Path(output) if output is not None else default_output(model)
    if int8:
        check_writable(out, inputs=(model,))
    args = (handle, prof, eps, cores, max_seconds, limit, max_drop, int8, calib_samples, finalists, on_progress,
            time.perf_counter(), cpu_summary(), engines)
    if work is None:
        with temp_dir("mnetctl-tune-") as tmp:
            result = _keep(_tune(tmp, *args), out)
    else:
        folder = Path(work)
        folder.mkdir(parents=True, exist_ok=True)
        result = _keep(_tune(folder, *args), out)
    result.runtimes_skipped = engines_skipped
    return result


def default_output(model: Path | str) -> Path:
    """Where a kept int8 variant goes unless told: next to the model, `<stem>.tuned.onnx`."""
    return Path(model).with_name(Path(model).stem + ".tuned.onnx")


def _keep(result: TuneResult, out: Path) -> TuneResult:
    """Write the kept int8 variant's file to `out` (while the work folder still exists)."""
    from .fsutil import atomic_path

    if result.winner.engine == "litert":  # LiteRT runs the variant's TFLite export: that file is the result
        out = out.with_suffix(".tflite")
        with atomic_path(out) as tmp:
            shutil.copyfile(result.tflite_paths[result.winner.variant], tmp)
        result.model_written = str(out)
    elif result.winner.variant != GIVEN:
        with atomic_path(out) as tmp:
            shutil.copyfile(result.variant_paths[result.winner.variant], tmp)
        result.model_written = str(out)
    return result


def _tune(folder, handle, prof, eps, cores, max_seconds, limit, max_drop, int8, calib_samples, finalists, on_progress,
          t_start, host, engines=()) -> TuneResult:
    paths: dict[str, Path] = {GIVEN: Path(handle.path)}
    errors: dict[str, str] = {}
    if int8:
        made, errors = make_variants(handle, int8_variants(handle), folder, on_progress, calib_samples)
        paths.update(made)
    tflite_paths: dict[str, Path] = {}
    if "litert" in engines:
        from .stages import tflite_exporter

        export = tflite_exporter()
        for name, path in paths.items():
            tflite_paths[name] = Path(export(path, folder / f"{name}.tflite"))
    configs = candidates(prof, cores, eps, list(paths), engines)
    acc = measure_accuracy(paths, configs, limit, on_progress, tflite_paths)
    kept, dropped = accuracy_filter(configs, acc, max_drop)
    rows = {c: Row(c, acc.top1[c.acc_key], dropped=c in dropped) for c in configs}
    ref = configs[0]
    runnables = {c: runnable(c, tflite_paths[c.variant] if c.engine == "litert" else paths[c.variant]) for c in kept}

    # screen: everything kept, short blocks (about a third of the time)
    screen = timed([runnables[c] for c in kept], max_seconds * 0.35, SCREEN, min_rounds=2, on_progress=on_progress,
                   label="screen")
    for c in kept:
        rows[c].screen_ratio = screen.paired_ratio(c.name, ref.name)
        rows[c].screen_p50_ms = screen.stats[c.name].p50_ms
    ranked = sorted((c for c in kept if not c.reference), key=lambda c: rows[c].screen_ratio)
    finals = [ref] + ranked[:finalists]

    # race: the finalists and the reference, longer blocks
    race = timed([runnables[c] for c in finals], max_seconds * 0.4, RACE, min_rounds=3, on_progress=on_progress, label="race")
    for c in finals:
        rows[c].race_ratio = race.paired_ratio(c.name, ref.name)
        rows[c].race_p50_ms = race.stats[c.name].p50_ms
        rows[c].race_ci = paired_ci(race, c.name, ref.name)
    best = min(finals, key=lambda c: (rows[c].race_ratio, c.reference))

    # check: the winner against the reference alone
    if best.reference:
        check_ratio, check_ci, check_rounds, loads = 1.0, (1.0, 1.0), 0, [screen.other_load, race.other_load]
    else:
        left = max(max_seconds - (time.perf_counter() - t_start), max_seconds * 0.2)
        check = timed([runnables[ref], runnables[best]], left, RACE, min_rounds=5, on_progress=on_progress, label="check")
        check_ratio, check_ci, check_rounds = check.paired_ratio(best.name, ref.name), paired_ci(check, best.name, ref.name), len(check.rounds)
        loads = [screen.other_load, race.other_load, check.other_load]
    kept_reference = best.reference or check_ratio > 1.0
    loads = [x for x in loads if x is not None]
    return TuneResult(
        model=str(handle.path), resolution=int(handle.preprocessor.resolution), profile=prof.name, host=host, cores=cores, eps=list(eps),
        rows=[rows[c] for c in configs], reference=ref, winner=ref if kept_reference else best, candidate=best,
        check_ratio=check_ratio, check_ci=check_ci, check_rounds=check_rounds, kept_reference=kept_reference,
        accuracy_images=acc.images, max_drop=float(max_drop), other_load=float(np.mean(loads)) if loads else None,
        seconds=time.perf_counter() - t_start, variant_paths={k: str(v) for k, v in paths.items()}, variant_errors=errors,
        runtimes=[e for e in engines if e != "onnxruntime"], tflite_paths={k: str(v) for k, v in tflite_paths.items()},
    )


# --------------------------------------------------------------------------------------------------------------
# The written profile


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def profile_name(path: Path | str) -> str:
    """A profile name (lower-case slug) from a file name: 'My Host.toml' -> 'my-host'."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", Path(path).stem.lower()).strip("-._")
    return slug or "tuned"


def profile_toml(result: TuneResult, base: Profile, name: str, model_file: str | None = None) -> str:
    """The kept configuration as a device profile (the schema of profiles/*.toml): the base profile's budgets and
    defaults, this host's hardware facts, the winner's providers, threads and session settings."""
    from .hostinfo import cpu_model, host_info

    w = result.winner
    host = host_info()
    arch = str(host.get("arch", "any"))
    lines = [
        f"# Written by mnetctl tune for {Path(result.model).name} on {result.host}.",
        f"# Kept: {w.name}; check against {base.name}'s own configuration: p50 ratio {result.check_ratio:.3f} "
        f"(95% CI {result.check_ci[0]:.3f}-{result.check_ci[1]:.3f}, {result.check_rounds} interleaved rounds).",
        f"name = {_toml_value(name)}",
        f"description = {_toml_value(f'{base.description}, tuned by mnetctl tune on this host')}",
        f"runtime = {_toml_value(base.runtime if w.engine == base.engine else _RUNTIME_WORDS.get(w.engine, w.engine))}",
        f"resolution = {result.resolution}",
    ]
    if w.engine != "onnxruntime":  # the kept configuration runs on another runtime than onnxruntime
        lines.append(f"engine = {_toml_value(w.engine)}")
    if w.threads is not None:
        lines.append(f"threads = {w.threads}")
    for key in ("max_opset", "max_ir", "warmup", "iterations"):
        if getattr(base, key) is not None:
            lines.append(f"{key} = {getattr(base, key)}")
    if base.batch != 1:
        lines.append(f"batch = {base.batch}")
    notes = (f"tuned for {Path(result.model).name}: {w.variant}" + (f" on {w.engine}" if w.engine != "onnxruntime" else "")
             + (f" ({model_file})" if model_file else ""))
    if result.kept_reference:
        notes += f"; {base.name}'s own configuration kept (no faster one held up in the check)"
    lines.append(f"notes = {_toml_value(notes)}")
    lines += ["", "[hardware]", f"arch = {_toml_value(arch if arch in ('x86_64', 'aarch64', 'armv7l') else 'any')}",
              f"cores = {int(host.get('cores_logical') or result.cores)}", f"cpu = {_toml_value(cpu_model())}"]
    for ep, opts in w.eps:
        lines += ["", "[[eps]]", f"name = {_toml_value(ep)}"]
        if opts:
            lines.append("[eps.options]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in opts]
    session = {"intra_op_spinning": w.spinning, "graph_optimization": w.level}
    if any(v is not None for v in session.values()):
        lines += ["", "[session]"] + [f"{k} = {_toml_value(v)}" for k, v in session.items() if v is not None]
    engine_options = dict(base.engine_options) if w.engine == base.engine else dict(_ENGINE_OPTIONS.get(w.engine, {}))
    if engine_options:
        lines += ["", "[engine_options]"] + [f"{k} = {_toml_value(v)}" for k, v in engine_options.items()]
    budgets = {k: v for k, v in base.budgets.model_dump(mode="json").items() if v is not None}
    if budgets:
        lines += ["", "[budgets]"] + [f"{k} = {_toml_value(v)}" for k, v in budgets.items()]
    return "\n".join(lines) + "\n"


_ENGINE_OPTIONS = {"litert": {"delegate": "xnnpack"}, "openvino": {"device": "CPU", "performance_hint": "LATENCY"}}
_RUNTIME_WORDS = {"onnxruntime": "the onnxruntime installed next to mnetctl",
                  "litert": "ai-edge-litert installed next to mnetctl (XNNPACK CPU delegate)",
                  "openvino": "openvino installed next to mnetctl (CPU, LATENCY hint)"}


def write_profile(result: TuneResult, base: Profile, path: Path | str) -> Path:
    """Write the kept configuration as a profile TOML (checked to load before it is published)."""
    from .fsutil import temp_dir, write_text

    text = profile_toml(result, base, profile_name(path), result.model_written)
    with temp_dir("mnetctl-tune-") as tmp:  # the text must load as a profile before it is published
        (tmp / "profile.toml").write_text(text, encoding="utf-8")
        parse_profile(tmp / "profile.toml")
    return write_text(path, text)
