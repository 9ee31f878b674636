"""Benchmark one ONNX model on the execution providers a device profile (or eps) names.

Phases, reported separately: session creation, the cold first run, warm-up runs, then the measured runs. Inputs
and outputs are allocated and bound once (onnxruntime IO binding), so the timed region is one
`run_with_iobinding` call between two `perf_counter_ns` reads; the loop's own cost (wall time of the loop minus
the sum of the timed runs) is reported as `loop_overhead_pct`. Budgets are judged by `budgets.check_budgets`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from array import array
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from . import __version__
from .budgets import BudgetCheck, Gates, as_fraction, check_budgets
from .errors import BadInput
from .memguard import check_batch_memory, image_bytes, shape_elements
from .profiles import MAX_RUNS, Profile, as_profile, host_matches_profile
from .progress import ProgressFn

if TYPE_CHECKING:
    from .model import Model

DEFAULT_ITERATIONS = 100
DEFAULT_WARMUP = 10
MAX_DURATION_S = 86_400.0  # a day
SCHEMA = "mnetctl.bench/1"
MB = 1_000_000  # model sizes and budgets are in MB = 10^6 bytes


@dataclass
class BenchResult:
    model_path: str
    model_size_bytes: int
    model: dict[str, Any]  # arch, width, resolution, precision, opset, ir_version, input
    profile: str | None
    profile_source: str | None
    host_matches_profile: bool | None
    host_mismatch: list[str]
    host: dict[str, Any]
    onnxruntime: dict[str, Any]
    requested_eps: list[str]
    providers: list[str]  # providers that actually run nodes
    provider_options: dict[str, dict[str, str]]
    node_assignment: dict[str, int]
    assignment_source: str
    ops_by_provider: dict[str, dict[str, int]]
    fallback: dict[str, Any]
    simulated: bool
    threads: int | None
    batch: int
    session_create_ms: float
    cold_run_ms: float
    warmup_runs: int
    warmup_ms: dict[str, float]
    iterations: int
    measured_s: float
    loop_overhead_pct: float
    latency_ms: dict[str, float]
    throughput_ips: float
    peak_rss_mb: float
    rss_delta_mb: float
    top1: float | None = None
    op_profile: list[dict[str, Any]] | None = None
    runtime: dict[str, Any] = field(default_factory=dict)  # the engine that ran it (mnetctl.engines), version, device
    notes: list[str] = field(default_factory=list)
    checks: list[BudgetCheck] = field(default_factory=list)
    timestamp: str = ""

    @property
    def model_size_mb(self) -> float:
        return self.model_size_bytes / MB

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> list[BudgetCheck]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "mnetctl_version": __version__,
            "timestamp": self.timestamp,
            "model": {"path": self.model_path, "size_bytes": self.model_size_bytes, "size_mb": round(self.model_size_mb, 4), **self.model},
            "profile": self.profile,
            "profile_source": self.profile_source,
            "host_matches_profile": self.host_matches_profile,
            "host_mismatch": list(self.host_mismatch),
            "host": dict(self.host),
            "runtime": dict(self.runtime),
            "onnxruntime": dict(self.onnxruntime),
            "requested_eps": list(self.requested_eps),
            "providers": list(self.providers),
            "provider_options": {k: dict(v) for k, v in self.provider_options.items()},
            "node_assignment": dict(self.node_assignment),
            "assignment_source": self.assignment_source,
            "ops_by_provider": {k: dict(v) for k, v in self.ops_by_provider.items()},
            "fallback": dict(self.fallback),
            "simulated": self.simulated,
            "threads": self.threads,
            "batch": self.batch,
            "session_create_ms": round(self.session_create_ms, 3),
            "cold_run_ms": round(self.cold_run_ms, 4),
            "warmup": {"runs": self.warmup_runs, **{k: round(v, 4) for k, v in self.warmup_ms.items()}},
            "iterations": self.iterations,
            "measured_s": round(self.measured_s, 4),
            "loop_overhead_pct": round(self.loop_overhead_pct, 4),
            "latency_ms": {k: round(v, 4) for k, v in self.latency_ms.items()},
            "throughput_ips": round(self.throughput_ips, 3),
            "memory": {"peak_rss_mb": round(self.peak_rss_mb, 2), "rss_delta_mb": round(self.rss_delta_mb, 2)},
            "top1": self.top1,
            "op_profile": self.op_profile,
            "notes": list(self.notes),
            "checks": [c.as_dict() for c in self.checks],
            "passed": self.passed,
        }


# --------------------------------------------------------------------------------------------------------------
# Statistics


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """min/mean/std/p50/p90/p95/p99/max of samples in ms (the computation is `stats.LatencyStats`)."""
    from .stats import LatencyStats

    return LatencyStats.of(samples_ms, unit="ms").as_dict(suffix="", runs=False)


def parse_duration(text: str | float | None) -> float | None:
    """'10', '10s', '2m', '500ms' -> seconds."""
    if text is None:
        return None
    raw = str(text).strip().lower()
    scale = 1.0
    for suffix, factor in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if raw.endswith(suffix):
            raw, scale = raw[: -len(suffix)], factor
            break
    try:
        value = float(raw) * scale
    except ValueError:
        raise BadInput(f"duration {text!r} is not a duration", "e.g. 10s, 500ms or 2m") from None
    if not value > 0:
        raise BadInput(f"duration {text!r} must be positive")
    if not value <= MAX_DURATION_S:  # also inf and NaN
        raise BadInput(f"duration {text!r} is more than a day ({MAX_DURATION_S:g} s)", "e.g. 10s, 500ms or 2m")
    return value


def check_runs(value: int, name: str, low: int) -> int:
    """An iteration or warm-up count between `low` and MAX_RUNS, or BadInput naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name} must be a whole number, got {value!r}")
    if value < low:
        raise BadInput(f"{name} must be >= {low}, got {value}")
    if value > MAX_RUNS:
        raise BadInput(f"{name} must be at most {MAX_RUNS:,} runs, got {value}", "measure for a length of time instead")
    return value


@contextmanager
def _set_by_profile(prof: Profile | None, key: str):
    """A bad value the profile set is reported as the profile's key, not as a parameter nobody gave."""
    try:
        yield
    except BadInput as exc:
        if prof is None or not exc.message.startswith(key + " "):
            raise
        where = f"profile {prof.name}" + (f" ({prof.source})" if prof.source else "")
        raise BadInput(f"{where}: {key} = {exc.message[len(key) + 1:]}",
                       f"change {key} in the profile, or override it on the command line") from None


# --------------------------------------------------------------------------------------------------------------
# Model facts


def _model_facts(path: Path, proto=None, meta=None) -> tuple[dict[str, Any], int, float | None]:
    """(model section of the report, size in bytes incl. external data, top-1 recorded in the metadata).

    Any ONNX model can be benched, so a path is parsed here without the image-model checks of `Model.open`;
    a handle's proto and metadata are used as they are. A TFLite file's facts come from `tflite_model`.
    """
    from .meta import read_meta
    from .modelio import load_onnx, size_on_disk
    from .tflite_model import is_tflite, read_tflite_facts

    if proto is None and is_tflite(path):
        tfl = read_tflite_facts(path)
        m = tfl.meta
        facts = {"arch": m.arch, "width": m.width, "resolution": m.resolution, "input_format": m.input_format,
                 "precision": m.precision, "opset": None, "ir_version": None, "format": "tflite"}
        return facts, path.stat().st_size, _meta_top1(m)
    proto = proto if proto is not None else load_onnx(path, load_external_data=False)
    meta = meta if meta is not None else read_meta(proto, where=str(path))
    size = size_on_disk(path, proto)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    top1 = _meta_top1(meta)
    facts = {
        "arch": meta.arch,
        "width": meta.width,
        "resolution": meta.resolution,
        "input_format": meta.input_format,
        "precision": meta.precision,
        "opset": opset,
        "ir_version": int(proto.ir_version),
    }
    if meta.task != "classification":
        facts["task"] = meta.task
    if "detection" in meta.extra:  # where a detector's NMS runs: in the graph (see ops_by_provider) or on the host
        try:
            facts["postprocess"] = str(json.loads(meta.extra["detection"]).get("postprocess"))
        except (ValueError, AttributeError):
            pass
    return facts, size, top1


def _meta_top1(meta) -> float | None:
    top1 = None
    for key in ("top1", "eval.top1"):
        if key in meta.extra:
            try:
                top1 = as_fraction(float(meta.extra[key]))
            except ValueError:
                pass
    return top1


# --------------------------------------------------------------------------------------------------------------
# The benchmark


def _requests(profile: Profile | None, eps, ep_options: Mapping[str, Mapping[str, Any]] | None):
    from .runtime import EPRequest, as_requests

    if eps is None and profile is not None:
        reqs = profile.ep_requests()
    else:
        reqs = as_requests(eps)
        if profile is not None:  # keep the profile's options for the providers it also names
            by_name = {r.name: r.options for r in profile.ep_requests()}
            reqs = [EPRequest(r.name, {**by_name.get(r.name, {}), **r.options}) for r in reqs]
    for name, opts in (ep_options or {}).items():
        from .runtime import resolve_ep

        short = resolve_ep(name).name
        matched = [r for r in reqs if r.name == short]
        if not matched:
            raise BadInput(f"ep_options for {short}: {short} is not among the requested providers ({', '.join(r.name for r in reqs)})")
        matched[0].options.update(opts)
    return reqs


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # pragma: no cover
        return 0


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)



# The timing loop calls `on_progress` at most about this often (outside the timed region).
REPORT_EVERY_NS = 5_000_000


def timed_runs(run, arg, iterations: int | None, duration_s: float | None, on_progress: ProgressFn | None = None,
               label: str = "bench") -> tuple[list[int], int]:
    """Call run(arg) `iterations` times (or for `duration_s`); returns (per-run ns, wall ns of the whole loop).

    `on_progress(runs done, runs in total, label)` is called every REPORT_EVERY_NS or so and once at the end; the
    total is None while a timed (`duration_s`) loop runs.
    """
    clock = time.perf_counter_ns
    if duration_s is None:
        n = check_runs(int(iterations or DEFAULT_ITERATIONS), "iterations", 1)
        samples = array("q", bytes(8 * n))  # 8 bytes a run, allocated before the clock starts
        start = clock()
        if on_progress is None:
            for i in range(n):
                t0 = clock()
                run(arg)
                samples[i] = clock() - t0
            return samples, clock() - start
        due = start + REPORT_EVERY_NS
        for i in range(n):
            t0 = clock()
            run(arg)
            t1 = clock()
            samples[i] = t1 - t0
            if t1 >= due:
                on_progress(i + 1, n, label)
                due = clock() + REPORT_EVERY_NS
        wall = clock() - start
        on_progress(n, n, label)
        return samples, wall
    samples = []
    append = samples.append
    start = clock()
    if not 0 < duration_s <= MAX_DURATION_S:
        raise BadInput(f"duration must be between 0 and {MAX_DURATION_S:g} s, got {duration_s}")
    deadline = start + int(duration_s * 1e9)
    due = start + REPORT_EVERY_NS if on_progress is not None else deadline
    t1 = start
    while t1 < deadline:
        t0 = clock()
        run(arg)
        t1 = clock()
        append(t1 - t0)
        if t1 >= due and on_progress is not None:
            on_progress(len(samples), None, label)
            due = clock() + REPORT_EVERY_NS
    wall = clock() - start
    if on_progress is not None:
        on_progress(len(samples), len(samples), label)
    return samples, wall


def bench(
    model_path: "Model | Path | str",
    profile: Profile | str | Path | None = None,
    eps: Sequence[str] | str | None = None,
    threads: int | None = None,
    iterations: int | None = None,
    duration: float | str | None = None,
    batch: int | None = None,
    warmup: int | None = None,
    allow_fallback: bool = False,
    op_profile: bool = False,
    ep_options: Mapping[str, Mapping[str, Any]] | None = None,
    op_top: int = 15,
    seed: int = 0,
    gates: Gates | None = None,
    on_progress: ProgressFn | None = None,
    runtime: str | None = None,
) -> BenchResult:
    """Benchmark `model_path`; the result carries every budget check, decided once from the profile and `gates`.

    `runtime` (onnxruntime, litert, openvino; default: the profile's engine, else by the file: .tflite on LiteRT)
    picks the engine (`mnetctl.engines`); the timing loop, statistics, budgets and report are the same for all.

    `gates` is validated before anything runs; `gates.top1` becomes the result's top-1 (default: the metadata's).
    `on_progress(done, total, label)` follows the measured runs (and warm-ups, when there are more than 50).
    """
    from .hostinfo import host_info
    from .runtime import (bind_io, create_session, keep_outputs, onnxruntime_info, op_profile as run_op_profile,
                          random_feeds)

    from .model import Model

    handle = model_path if isinstance(model_path, Model) else None
    path = handle.path if handle is not None else Path(model_path)
    prof = as_profile(profile)
    gates = (gates or Gates()).checked()  # bad budgets fail before the benchmark runs
    facts, size_bytes, meta_top1 = (_model_facts(path, handle.proto, handle.meta) if handle is not None
                                    else _model_facts(path))
    duration_s = parse_duration(duration)
    if iterations is not None:
        check_runs(iterations, "iterations", 1)
    if iterations is not None and duration_s is not None:
        raise BadInput("give iterations or duration, not both")
    if isinstance(op_top, bool) or not isinstance(op_top, int) or op_top < 1:
        raise BadInput(f"op_top must be >= 1, got {op_top}")
    from .runtime import check_threads

    if threads is not None:
        check_threads(threads)
    elif prof is not None and prof.threads is not None:
        with _set_by_profile(prof, "threads"):
            threads = check_threads(prof.threads)
    batch_from_profile = batch is None and prof is not None and "batch" in prof.model_fields_set
    batch_given = batch is not None or batch_from_profile
    batch = batch if batch is not None else (prof.batch if prof else 1)
    if batch < 1:
        raise BadInput(f"batch must be >= 1, got {batch}")
    if warmup is not None:
        check_runs(warmup, "warmup", 0)
    else:
        warmup = prof.warmup if prof and prof.warmup is not None else DEFAULT_WARMUP
        with _set_by_profile(prof, "warmup"):
            check_runs(warmup, "warmup", 0)
    if iterations is None and duration_s is None:
        iterations = prof.iterations if prof and prof.iterations else DEFAULT_ITERATIONS
        with _set_by_profile(prof, "iterations"):
            check_runs(iterations, "iterations", 1)
    if gates.baseline is not None:
        from .budgets import check_baseline_model

        baseline_note = check_baseline_model(gates, facts, size_bytes)  # refused here, before the long work
    else:
        baseline_note = None
    from .engines import ONNXRUNTIME, resolve

    engine, engine_opts = resolve(path, runtime, prof)
    if engine != ONNXRUNTIME:
        if eps is not None or ep_options:
            raise BadInput(f"eps and ep_options are onnxruntime's; the {engine} runtime has none",
                           "leave out --ep/--ep-option, or pass --runtime onnxruntime")
        if op_profile:
            raise BadInput(f"op_profile needs onnxruntime's profiler; the {engine} runtime has none")
    requests = _requests(prof, eps, ep_options) if engine == ONNXRUNTIME else []

    host = host_info()
    matches, mismatch = (None, [])
    if prof is not None:
        matches, mismatch = host_matches_profile(prof, host)

    rss_before = _rss_bytes()
    session_cfg = prof.session if prof is not None else None
    if engine != ONNXRUNTIME:
        sinfo, io, run, cold_ms, feeds, runtime_facts = _load_engine(engine, engine_opts, path, threads, batch, seed)
    else:
        sinfo = create_session(path, requests, threads=threads, batch=batch, allow_fallback=allow_fallback,
                               config=session_cfg.config() if session_cfg else None,
                               graph_optimization=session_cfg.graph_optimization if session_cfg else None)
        session = sinfo.session
        with _set_by_profile(prof if batch_from_profile else None, "batch"):
            batch = _check_batch(session, batch, fixed_ok=not batch_given)
            _check_memory(session, batch, facts["resolution"])
        feeds = random_feeds(session, batch=batch, seed=seed, sizes={"height": facts["resolution"], "width": facts["resolution"]})

        io = bind_io(session, feeds)
        run = session.run_with_iobinding

        t0 = time.perf_counter_ns()
        try:
            run(io)
        except Exception as exc:  # ORT loaded the graph but cannot run it (e.g. a corrupt attribute)
            from .modelio import cannot_run

            raise cannot_run(path, exc) from None
        cold_ms = (time.perf_counter_ns() - t0) / 1e6
        keep_outputs(session, io)  # the cold run allocated them: no timed run allocates again
        runtime_facts = {"engine": ONNXRUNTIME, "version": onnxruntime_info().get("version"), "threads": threads,
                         "providers": list(sinfo.used)}

    warm_samples, _ = timed_runs(run, io, warmup, None, on_progress if warmup > 50 else None, "warm-up") if warmup else ([], 0)
    samples, wall_ns = timed_runs(run, io, iterations, duration_s, on_progress, f"bench {path.name}")
    if not samples:
        raise BadInput("no measured run completed", "increase the duration or give iterations")
    rss_after = _rss_bytes()

    samples_ms = [s / 1e6 for s in samples]
    stats = latency_stats(samples_ms)
    total_ns = sum(samples)
    overhead = max(0.0, (wall_ns - total_ns) / wall_ns * 100.0) if wall_ns else 0.0
    warm_ms = {}
    if warm_samples:
        w = [s / 1e6 for s in warm_samples]
        warm_ms = {"mean_ms": sum(w) / len(w), "max_ms": max(w)}

    ops = None
    if op_profile:
        ops = run_op_profile(path, requests, feeds, runs=min(max(10, len(samples) // 5), 100), threads=threads, batch=batch,
                             allow_fallback=True, top=op_top)

    notes = list(sinfo.notes)
    if prof is not None and prof.legacy:
        notes.append(prof.legacy_message)
    if session_cfg is not None and (session_cfg.intra_op_spinning is not None or session_cfg.graph_optimization):
        set_by = {k: v for k, v in session_cfg.model_dump().items() if v is not None}
        notes.append("session settings from the profile: " + ", ".join(f"{k}={v}" for k, v in set_by.items()))
    if baseline_note:
        notes.append(baseline_note)
    if prof is not None and matches is False:
        notes.append(f"this host is not a {prof.name}: {'; '.join(mismatch)} (latency does not transfer)")
    if prof is not None and facts["resolution"] and facts["resolution"] != prof.resolution:
        notes.append(f"model resolution {facts['resolution']} differs from the profile's default {prof.resolution}")
    fb = sinfo.fallback_dict()
    if fb["fell_back"]:
        parts = []
        if fb["unavailable"]:
            parts.append(f"unavailable: {', '.join(fb['unavailable'])}")
        if fb["no_nodes"]:
            parts.append(f"loaded but ran no node: {', '.join(fb['no_nodes'])}")
        if fb["cpu_fallback_ops"]:
            parts.append(f"{sum(fb['cpu_fallback_ops'].values())} nodes on CPU")
        notes.append("fell back (allowed): " + "; ".join(parts))

    result = BenchResult(
        model_path=str(path),
        model_size_bytes=size_bytes,
        model={**facts, "input": {n: {"shape": list(a.shape), "dtype": str(a.dtype)} for n, a in feeds.items()}},
        profile=prof.name if prof else None,
        profile_source=str(prof.source) if prof and prof.source else None,
        host_matches_profile=matches,
        host_mismatch=mismatch,
        host=host,
        onnxruntime=onnxruntime_info(),
        requested_eps=[r.name for r in requests],
        providers=list(sinfo.used),
        provider_options=sinfo.provider_options,
        node_assignment=dict(sinfo.assignment.counts),
        assignment_source=sinfo.assignment.source,
        ops_by_provider=sinfo.assignment.ops,
        fallback=fb,
        simulated=sinfo.simulated,
        threads=threads,
        batch=batch,
        session_create_ms=sinfo.create_ms,
        cold_run_ms=cold_ms,
        warmup_runs=len(warm_samples),
        warmup_ms=warm_ms,
        iterations=len(samples),
        measured_s=wall_ns / 1e9,
        loop_overhead_pct=overhead,
        latency_ms=stats,
        throughput_ips=batch * 1000.0 / stats["mean"] if stats["mean"] > 0 else 0.0,
        peak_rss_mb=_peak_rss_bytes() / 2**20,
        rss_delta_mb=(rss_after - rss_before) / 2**20,
        top1=gates.top1 if gates.top1 is not None else meta_top1,
        op_profile=ops,
        runtime=runtime_facts,
        notes=notes,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    result.checks = check_budgets(result, prof, gates)
    return result


class _EngineSession:
    """What the report reads of an onnxruntime SessionInfo, for another engine (no providers, no fallback)."""

    def __init__(self, loaded):
        from .runtime import NodeAssignment

        self.used = list(loaded.providers)
        self.provider_options: dict[str, dict[str, str]] = {}
        self.assignment = NodeAssignment({}, {}, "none")
        self.simulated = False
        self.create_ms = loaded.create_ms
        self.notes: list[str] = []

    @staticmethod
    def fallback_dict() -> dict[str, Any]:
        return {"allowed": False, "unavailable": [], "no_nodes": [], "cpu_nodes": 0, "cpu_fallback_ops": {}, "fell_back": False}


def _load_engine(engine: str, options, path: Path, threads: int | None, batch: int, seed: int):
    """(session stand-in, bound feed, run, cold ms, feeds for the report, runtime facts) for a LiteRT/OpenVINO
    model; the cold run is the first `run` on the bound input after loading."""
    from .engines import load

    from .errors import MnetctlError, short

    loaded = load(engine, path, threads=threads, options=options, batch=batch, seed=seed, first_run=False)
    t0 = time.perf_counter_ns()
    try:
        loaded.run(loaded.feed)
    except MnetctlError:
        raise
    except Exception as exc:  # the runtime loaded the model but cannot run it
        raise BadInput(f"{loaded.facts.get('engine')} cannot run {path}: {short(exc)}") from None
    cold_ms = (time.perf_counter_ns() - t0) / 1e6
    feeds = {"input": _Shape(loaded.input_shape, loaded.input_dtype)}  # shape and dtype, for the report
    return _EngineSession(loaded), loaded.feed, loaded.run, cold_ms, feeds, dict(loaded.facts)


@dataclass
class _Shape:
    shape: tuple[int, ...]
    dtype: Any


def _check_batch(session, batch: int, fixed_ok: bool = False) -> int:
    """The batch to run: `batch`, or with `fixed_ok` (nobody asked for one) the model's own fixed batch."""
    for inp in session.get_inputs():
        dim0 = inp.shape[0] if inp.shape else None
        if isinstance(dim0, int) and dim0 > 0 and dim0 != batch:
            if fixed_ok:
                batch, fixed_ok = dim0, False
                continue
            raise BadInput(f"batch {batch} cannot be used: the model's input {inp.name!r} has a fixed batch of {dim0}")
    return batch


_ITEM_BYTES = {"tensor(uint8)": 1, "tensor(int8)": 1, "tensor(float16)": 2, "tensor(double)": 8}


def _check_memory(session, batch: int, resolution: int | None) -> None:
    """Refuse a batch whose inputs and activations cannot fit in free memory (before the inputs are allocated)."""
    per_image = 0
    for inp in session.get_inputs():
        elems = shape_elements(inp.shape, resolution or 224)
        per_image += image_bytes(elems, elems * _ITEM_BYTES.get(inp.type, 4))
    check_batch_memory(batch, per_image)

