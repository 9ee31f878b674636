"""MLPerf LoadGen scenarios (single-stream, offline) on the session `bench` uses, with real preprocessed images.

The SUT runs the model through the same `runtime.create_session` call as `bench` (the profile's or the given
execution providers, threads, fallback rules) with IO binding; each response is the predicted class (int32, the
classifier's top-1 after its label offset). The QSL holds the images of the shipped validation sample (or `data`)
preprocessed into memory, so the timed region is inference only. LoadGen decides everything else: the query
schedule, the statistics and whether the run is valid under MLPerf's rules; its `mlperf_log_summary.txt` is parsed
for the figures reported here. Defaults are MLPerf's own rules (LoadGen's built-in mlperf.conf, image
classification); `min_duration`/`min_queries` shorten a run for a quick look, and LoadGen then reports it INVALID.
Needs the optional `mlperf_loadgen` module (`pip install 'mnetctl[mlperf]'`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .errors import BadInput, EnvironmentMissing
from .progress import ProgressFn, report

if TYPE_CHECKING:
    from .model import Model
    from .profiles import Profile

SCHEMA = "mnetctl.loadgen/1"
SCENARIOS = {"single-stream": "SingleStream", "offline": "Offline"}
MODES = {"performance": "PerformanceOnly", "accuracy": "AccuracyOnly"}
DEFAULT_OUT = Path("results") / "mlperf"
MAX_SAMPLES = 1024  # images held in memory (MLPerf's performance sample count for image classification)
RULES_MODEL = "resnet50"  # the image-classification entry of LoadGen's mlperf.conf (MobileNet follows its rules)
RESPONSE_DTYPE = np.dtype("<i4")  # one little-endian int32 class index per sample in the accuracy log
KEPT_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")
REPORT_EVERY_NS = 50_000_000  # progress reported at most this often
CALIBRATION_RUNS = 10  # runs that size LoadGen's schedule (expected latency / QPS) before the test


def import_loadgen():
    """The `mlperf_loadgen` module, or EnvironmentMissing (exit 3) saying how to install it."""
    try:
        import mlperf_loadgen
    except ImportError:
        raise EnvironmentMissing("MLPerf LoadGen (Python module mlperf_loadgen) is not installed",
                                 "pip install 'mnetctl[mlperf]'") from None
    return mlperf_loadgen


# --------------------------------------------------------------------------------------------------------------
# LoadGen's logs


def parse_summary(text: str) -> dict[str, Any]:
    """mlperf_log_summary.txt -> its figures: `fields` (every `key : value` line), `result` (VALID/INVALID),
    `checks` (e.g. {"Min duration satisfied": False}), `recommendations` and `early_stopping` (bullet lines)."""
    fields: dict[str, str] = {}
    checks: dict[str, bool] = {}
    recommendations: list[str] = []
    early: list[str] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or set(line) == {"="}:
            continue
        if line.startswith("Recommendations:"):
            section = recommendations
            continue
        if line.startswith("Early Stopping Result:"):
            section = early
            continue
        if line.startswith("* "):
            if section is not None:
                section.append(line[2:].strip())
            continue
        section = None
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key.endswith("satisfied"):
            checks[key] = value.lower() == "yes"
        else:
            fields.setdefault(key, value)
    return {"fields": fields, "result": fields.get("Result is"), "checks": checks,
            "recommendations": recommendations, "early_stopping": early}


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _latency_fields(fields: Mapping[str, str]) -> dict[str, float]:
    """'Min latency (ns)', '50.00 percentile latency (ns)', ... -> {'min': ms, 'p50': ms, ...}."""
    out: dict[str, float] = {}
    for key, value in fields.items():
        if not key.endswith("latency (ns)") or key.startswith("target"):  # target_latency is a test parameter
            continue
        head = key[: -len("latency (ns)")].strip()
        num = _number(value)
        if num is None:
            continue
        if head.endswith("percentile"):
            pct = head.split()[0]
            name = "p" + (pct[:-3] if pct.endswith(".00") else pct.rstrip("0").rstrip("."))
            if "th" in pct:  # '90.0th percentile latency (ns)': the scenario's result, not an additional stat
                continue
        else:
            name = head.lower()
        out[name] = num / 1e6
    return out


def _early_stopping_ms(lines: Sequence[str]) -> dict[str, float]:
    """' Early stopping 90.0th percentile estimate: 1195229' -> {'p90': 1.195229}."""
    out = {}
    for line in lines:
        if "percentile estimate" in line and ":" in line:
            label, _, value = line.rpartition(":")
            pct = label.split("stopping", 1)[-1].strip().split("th")[0]
            num = _number(value.strip())
            if num is not None:
                out["p" + pct.rstrip("0").rstrip(".")] = num / 1e6
    return out


def read_accuracy_log(path: Path) -> dict[int, int]:
    """mlperf_log_accuracy.json -> {qsl index: predicted class} (the int32 responses the SUT wrote)."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read LoadGen's accuracy log ({exc})") from None
    preds: dict[int, int] = {}
    for entry in entries:
        value = np.frombuffer(bytes.fromhex(entry["data"]), RESPONSE_DTYPE)
        preds[int(entry["qsl_idx"])] = int(value[0])
    return preds


# --------------------------------------------------------------------------------------------------------------
# Result


@dataclass
class LoadGenResult:
    model_path: str
    scenario: str
    mode: str
    data: str
    out_dir: str
    providers: list[str]
    threads: int | None
    batch: int
    samples: int  # images in the QSL (the performance sample count)
    settings: dict[str, Any]  # what LoadGen ran with: min_duration_ms, min_query_count, rules
    result: str | None = None  # LoadGen's VALID / INVALID (performance mode)
    unmet: list[str] = field(default_factory=list)  # LoadGen's checks that failed, e.g. "Min duration satisfied"
    recommendations: list[str] = field(default_factory=list)
    p90_ms: float | None = None  # single-stream: LoadGen's 90th-percentile latency
    early_stopping_ms: dict[str, float] = field(default_factory=dict)  # single-stream: early-stopping estimates
    samples_per_s: float | None = None  # offline: LoadGen's samples per second
    latency_ms: dict[str, float] = field(default_factory=dict)  # LoadGen's additional stats
    sut_ms: dict[str, float] = field(default_factory=dict)  # the SUT's own time per run (p50, p90), inside LoadGen's
    top1: float | None = None  # accuracy mode: from LoadGen's accuracy log
    correct1: int | None = None
    scored: int | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)  # images that could not be read (not in the QSL)
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    loadgen_version: str | None = None
    predictions: list[int | None] = field(default_factory=list, repr=False)  # accuracy mode: class per QSL image
    paths: list[str] = field(default_factory=list, repr=False)  # the QSL's images, in index order

    @property
    def valid(self) -> bool | None:
        """LoadGen's verdict against the settings the run used (None in accuracy mode)."""
        return None if self.result is None else self.result == "VALID"

    @property
    def mlperf_valid(self) -> bool | None:
        """Valid under MLPerf's rules: LoadGen says VALID and the run was not shortened below them."""
        return None if self.valid is None else self.valid and not self.settings.get("shortened", False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "model": self.model_path, "scenario": self.scenario, "mode": self.mode, "data": self.data,
            "out_dir": self.out_dir, "providers": self.providers, "threads": self.threads, "batch": self.batch,
            "samples": self.samples, "settings": self.settings, "result": self.result, "valid": self.valid, "mlperf_valid": self.mlperf_valid,
            "unmet": self.unmet, "recommendations": self.recommendations, "p90_ms": self.p90_ms,
            "early_stopping_ms": self.early_stopping_ms, "samples_per_s": self.samples_per_s,
            "latency_ms": self.latency_ms, "sut_ms": self.sut_ms, "top1": self.top1, "correct1": self.correct1, "scored": self.scored,
            "failed": [{"path": p, "reason": r} for p, r in self.failed], "files": self.files, "notes": self.notes,
            "loadgen_version": self.loadgen_version,
        }


# --------------------------------------------------------------------------------------------------------------
# QSL and SUT


def load_images(handle: "Model", data: Path | str | None, limit: int | None, labels: bool):
    """The QSL's memory: (array [n, *sample shape] in the model's input dtype, samples kept, failures)."""
    from .data import BadImage, default_val_dir, failure_reason, find_samples, load_image

    limit = MAX_SAMPLES if limit is None else limit
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SAMPLES:
        raise BadInput(f"limit must be between 1 and {MAX_SAMPLES} images, got {limit!r}")
    samples = find_samples(data if data is not None else default_val_dir(), limit, flag="data", labels=labels)
    if labels:
        unlabeled = [s for s in samples if s.label is None]
        if unlabeled:
            raise BadInput(f"{unlabeled[0].path} has no class label ({len(unlabeled)} of {len(samples)} images)",
                           "accuracy mode needs labels: DIR/<wnid>/*.JPEG, DIR/<wnid>_*.JPEG or a CSV of file,label")
        handle.task.check_labels(handle, [s.label for s in samples])
    pre = handle.preprocessor
    from .memguard import check_batch_memory

    check_batch_memory(len(samples), pre.sample_bytes, name="limit")
    array = np.empty((len(samples), *pre.sample_shape), pre.dtype)
    kept, failed = [], []
    for sample in samples:
        try:
            pre(load_image(sample.path), out=array[len(kept)])
            kept.append(sample)
        except BadImage as exc:
            failed.append((str(sample.path), failure_reason(exc.message, sample.path)))
    if not kept:
        raise BadInput(f"none of the {len(samples)} images could be read (first: {failed[0][0]}: {failed[0][1]})")
    array = array[: len(kept)]
    if array.dtype != handle.input_dtype:
        array = array.astype(handle.input_dtype)
    return np.ascontiguousarray(array), kept, failed


class _Runner:
    """One batch of QSL images through the session with IO binding; returns the top-1 class per image (int32)."""

    def __init__(self, session, handle: "Model", images: np.ndarray, batch: int):
        from .tasks.classification import topk

        self.session, self.images, self.batch = session, images, batch
        self.input_name, self.output_name = handle.input_name, handle.output_name
        self.offset = handle.label_offset
        self.topk = topk
        self.inbuf = np.empty((batch, *images.shape[1:]), images.dtype)
        self.io = session.io_binding()
        self.io.bind_cpu_input(self.input_name, self.inbuf)
        self.io.bind_output(self.output_name, "cpu")
        session.run_with_iobinding(self.io)  # the cold run; its output shape sizes our own output buffer
        shape = self.io.get_outputs()[0].shape()
        self.outbuf = np.empty(shape, np.float32)
        self.io.bind_output(self.output_name, "cpu", 0, np.float32, list(shape), self.outbuf.ctypes.data)
        self.single = [self._bound_input(i) for i in range(len(images))] if batch == 1 else None

    def _bound_input(self, index: int):
        from .runtime.ort import _ort

        return _ort().OrtValue.ortvalue_from_numpy(self.images[index:index + 1])

    def __call__(self, indices: Sequence[int]) -> np.ndarray:
        """Top-1 classes of the images at `indices` (at most `batch` of them)."""
        n = len(indices)
        if self.single is not None:
            self.io.bind_ortvalue_input(self.input_name, self.single[indices[0]])  # no copy: the QSL's own memory
        else:
            np.take(self.images, indices, axis=0, out=self.inbuf[:n])
            if n < self.batch:  # a fixed-size batch: pad with the last image, its results are dropped
                self.inbuf[n:] = self.inbuf[n - 1]
        self.session.run_with_iobinding(self.io)
        scores = self.outbuf.reshape(self.outbuf.shape[0], -1)[:n, self.offset:]
        return self.topk(scores, 5)[:, 0].astype(RESPONSE_DTYPE)  # the same decoding as eval's top-1


def _settings(lg, scenario: str, mode: str, min_duration_s: float | None, min_queries: int | None,
              expected_ns: float, batch: int):
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, SCENARIOS[scenario])
    settings.mode = getattr(lg.TestMode, MODES[mode])
    # MLPerf's rules: LoadGen's built-in mlperf.conf (conf_type 0 reads no user file)
    settings.FromConfig("", RULES_MODEL, SCENARIOS[scenario], 0)
    rules = {"min_duration_ms": int(settings.min_duration_ms), "min_query_count": int(settings.min_query_count)}
    if min_duration_s is not None:
        settings.min_duration_ms = max(1, int(round(min_duration_s * 1000)))
    if min_queries is not None:
        settings.min_query_count = int(min_queries)
    settings.single_stream_expected_latency_ns = max(1, int(expected_ns))
    settings.offline_expected_qps = max(1.0, batch * 1e9 / expected_ns) if expected_ns > 0 else 1.0
    return settings, rules


def run_loadgen(
    model: "Model | Path | str",
    scenario: str = "single-stream",
    mode: str = "performance",
    profile: "Profile | str | Path | None" = None,
    eps: Sequence[str] | str | None = None,
    threads: int | None = None,
    batch: int | None = None,
    allow_fallback: bool = False,
    ep_options: Mapping[str, Mapping[str, Any]] | None = None,
    data: Path | str | None = None,
    limit: int | None = None,
    min_duration: float | str | None = None,
    min_queries: int | None = None,
    out_dir: Path | str | None = None,
    on_progress: ProgressFn | None = None,
) -> LoadGenResult:
    """Run one LoadGen test of `model`; LoadGen's logs are written to `out_dir` (default results/mlperf/SCENARIO-MODE).

    Single-stream queries one image at a time; offline sends every query at once and the SUT runs them in
    batches of `batch` (default: the profile's, else 1). Accuracy mode scores each image once and computes top-1
    from LoadGen's accuracy log.
    """
    from .bench import _requests, check_runs, parse_duration
    from .model import as_model
    from .profiles import as_profile
    from .runtime import check_threads, create_session

    if scenario not in SCENARIOS:
        raise BadInput(f"scenario {scenario!r} is not one of {', '.join(SCENARIOS)}")
    if mode not in MODES:
        raise BadInput(f"mlperf_mode {mode!r} is not one of {', '.join(MODES)}")
    try:
        min_duration_s = parse_duration(min_duration) if min_duration is not None else None
    except BadInput as exc:
        raise BadInput("min_" + exc.message, exc.hint) from None
    if min_queries is not None:
        check_runs(min_queries, "min_queries", 1)
    if threads is not None:
        check_threads(threads)
    lg = import_loadgen()
    prof = as_profile(profile)
    if threads is None and prof is not None and prof.threads is not None:
        threads = check_threads(prof.threads)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise BadInput(f"batch must be >= 1, got {batch!r}")
    if scenario == "single-stream":
        if batch not in (None, 1):
            raise BadInput(f"batch {batch} does not apply to single-stream (one image per query)", "use --scenario offline")
        batch = 1
    else:
        batch = batch if batch is not None else (prof.batch if prof is not None else 1)
    handle = as_model(model)
    if handle.fixed_batch and handle.fixed_batch != batch:
        raise BadInput(f"batch {batch} cannot be used: the model's input has a fixed batch of {handle.fixed_batch}")
    images, kept, failed = load_images(handle, data, limit, labels=mode == "accuracy")
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT / f"{scenario}-{mode}"
    from .fsutil import check_writable

    if out.exists() and not out.is_dir():
        raise BadInput(f"out {out} is not a folder", "give a folder for LoadGen's logs")
    check_writable(out / KEPT_FILES[0], inputs=(handle.path, data), flag="out")
    out.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:  # a file left by an earlier run must not pass for this run's
        (out / name).unlink(missing_ok=True)

    report(on_progress, 0, None, "loadgen: session")
    source = handle.path if handle.path is not None else handle.proto.SerializeToString()
    sinfo = create_session(source, _requests(prof, eps, ep_options), threads=threads, batch=batch,
                           allow_fallback=allow_fallback)
    try:
        runner = _Runner(sinfo.session, handle, images, batch)
    except Exception as exc:  # ORT loaded the graph but cannot run it
        from .modelio import cannot_run

        raise cannot_run(handle.path, exc) from None
    t0 = time.perf_counter_ns()
    for i in range(CALIBRATION_RUNS):
        runner([j % len(images) for j in range(i, i + batch)])
    expected_ns = (time.perf_counter_ns() - t0) / CALIBRATION_RUNS

    keep: dict[int, np.ndarray] = {}  # responses stay alive until LoadGen has copied them
    done, due = [0], [0]
    clock, sut_ns = time.perf_counter_ns, []  # the SUT's own time per call (inference + decoding)

    def issue_queries(queries) -> None:
        for start in range(0, len(queries), batch):
            chunk = queries[start:start + batch]
            t0 = clock()
            preds = runner([q.index for q in chunk])
            sut_ns.append(clock() - t0)
            responses = []
            for q, pred in zip(chunk, preds):
                buf = np.array([pred], RESPONSE_DTYPE)
                keep[q.id] = buf
                responses.append(lg.QuerySampleResponse(q.id, buf.ctypes.data, buf.nbytes))
            lg.QuerySamplesComplete(responses)
            for q in chunk:
                keep.pop(q.id, None)
            done[0] += len(chunk)
            now = time.perf_counter_ns()
            if on_progress is not None and now >= due[0]:  # after the response: outside LoadGen's timing
                on_progress(done[0], None, f"loadgen {scenario} {mode}")
                due[0] = now + REPORT_EVERY_NS

    def flush_queries() -> None:
        pass

    settings, rules = _settings(lg, scenario, mode, min_duration_s, min_queries, expected_ns, batch)
    log = lg.LogSettings()
    log.log_output.outdir = str(out)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut = lg.ConstructSUT(issue_queries, flush_queries)
    qsl = lg.ConstructQSL(len(images), len(images), lambda idx: None, lambda idx: None)  # images already in memory
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    report(on_progress, done[0], done[0], f"loadgen {scenario} {mode}")
    trace = out / "mlperf_log_trace.json"
    if trace.exists() and trace.stat().st_size == 0:
        trace.unlink()

    summary_path = out / "mlperf_log_summary.txt"
    if not summary_path.exists():
        raise EnvironmentMissing(f"LoadGen wrote no summary to {out}", "see LoadGen's messages above")
    summary = parse_summary(summary_path.read_text())
    result = LoadGenResult(
        model_path=str(handle.path), scenario=scenario, mode=mode,
        data=str(data) if data is not None else "shipped val sample", out_dir=str(out),
        providers=list(sinfo.used), threads=threads, batch=batch, samples=len(images),
        settings={"rules": f"mlperf.conf ({RULES_MODEL} {SCENARIOS[scenario]})",
                  "min_duration_ms": int(settings.min_duration_ms), "min_query_count": int(settings.min_query_count),
                  "rules_min_duration_ms": rules["min_duration_ms"], "rules_min_query_count": rules["min_query_count"],
                  "shortened": (int(settings.min_duration_ms) < rules["min_duration_ms"]
                                or int(settings.min_query_count) < rules["min_query_count"])},
        failed=failed, paths=[str(s.path) for s in kept], files={n: str(out / n) for n in KEPT_FILES if (out / n).exists()},
        notes=list(sinfo.notes), loadgen_version=_loadgen_version(out / "mlperf_log_detail.txt"),
    )
    if failed:
        result.notes.append(f"{len(failed)} images could not be read and are not in the QSL")
    if mode == "performance":
        fields = summary["fields"]
        result.result = summary["result"]
        result.unmet = [k for k, ok in summary["checks"].items() if not ok]
        result.recommendations = summary["recommendations"]
        result.latency_ms = _latency_fields(fields)
        if sut_ns:
            result.sut_ms = {"p50": float(np.percentile(sut_ns, 50)) / 1e6, "p90": float(np.percentile(sut_ns, 90)) / 1e6}
        if scenario == "single-stream":
            p90 = next((v for k, v in fields.items() if k.startswith("90") and "th percentile latency" in k), None)
            result.p90_ms = _number(p90) / 1e6 if _number(p90) is not None else None
            result.early_stopping_ms = _early_stopping_ms(summary["early_stopping"])
        else:
            result.samples_per_s = _number(fields.get("Samples per second"))
        if result.valid is False:
            why = ", ".join(k.replace(" satisfied", "").lower() for k in result.unmet) or "see the summary"
            result.notes.append(f"LoadGen reports this run INVALID ({why} not met)")
        if result.settings["shortened"]:
            result.notes.append(
                f"shortened run (min duration {settings.min_duration_ms / 1000:g} s, min queries "
                f"{settings.min_query_count}): not valid under MLPerf's rules, which ask for at least "
                f"{rules['min_duration_ms'] / 1000:g} s and {rules['min_query_count']} queries; "
                "LoadGen judged it against the shortened settings")
    else:
        preds = read_accuracy_log(out / "mlperf_log_accuracy.json")
        labels = [s.label for s in kept]
        result.scored = len(preds)
        result.correct1 = sum(1 for idx, pred in preds.items() if pred == labels[idx])
        result.top1 = result.correct1 / len(preds) if preds else 0.0
        result.predictions = [preds.get(i) for i in range(len(kept))]
        if len(preds) != len(kept):
            result.notes.append(f"LoadGen's accuracy log holds {len(preds)} of {len(kept)} images")
    return result


def _loadgen_version(detail: Path) -> str | None:
    try:
        for line in detail.read_text().splitlines():
            if '"key": "loadgen_version"' in line:
                return str(json.loads(line.split(":::MLLOG", 1)[1])["value"]).split(" ")[0]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return None
