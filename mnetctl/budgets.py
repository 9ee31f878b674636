"""Budgets and gates: latency/size/top-1 budgets, the profile's opset/IR limits and the regression gate.

`Gates` holds what the caller asks on top of the profile; `check_budgets` decides every check in one pass over
a measurement (anything shaped like `Measured`, e.g. a `BenchResult`). Error messages name the `Gates` field;
the CLI maps field names to its flags.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import BadInput
from .metrics import Metric, parse_metric
from .profiles import Profile, as_profile

DEFAULT_TOLERANCE = 0.10


@dataclass
class BudgetCheck:
    """One budget (or compatibility/regression gate) with its outcome."""

    name: str  # "latency", "size", "top1", "opset", "ir_version", "regression"
    metric: str  # e.g. "p90", "size_mb", "top1"
    limit: float | None
    actual: float | None
    unit: str
    status: str  # "pass" | "fail" | "skip"
    message: str

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": str(self.metric),
            "limit": self.limit,
            "actual": None if self.actual is None else round(float(self.actual), 6),
            "unit": self.unit,
            "status": self.status,
            "passed": self.passed,
            "message": self.message,
        }


class Measured(Protocol):
    """What the gates read from a measurement (a `BenchResult` is one)."""

    latency_ms: Mapping[str, float]  # keyed by Metric values
    top1: float | None  # a fraction, or None when unknown
    model: Mapping[str, Any]  # "opset" and "ir_version" are read
    simulated: bool  # latencies from a simulated accelerator are not judged
    providers: Sequence[str]

    @property
    def model_size_mb(self) -> float: ...


def as_fraction(value: float | None) -> float | None:
    """Top-1 as a fraction: values above 1 are read as percent."""
    if value is None:
        return None
    value = float(value)
    return value / 100.0 if value > 1.0 else value


def parse_tolerance(text: str | float, name: str = "tolerance") -> float:
    """'10%' -> 0.10; '0.1' -> 0.10. A plain number is a fraction below 1; '1' or '5' is refused as ambiguous
    (write '1%' or '100%'), so that 1 and 1.01 cannot mean 100 % and 1.01 %."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1]) / 100.0 if percent else float(raw)
    except ValueError:
        raise BadInput(f"{name} {text!r} is not a number or percentage", "e.g. 10% (or 0.1)") from None
    if not percent and value >= 1:
        raise BadInput(f"{name} {text!r} is ambiguous: a plain number is a fraction below 1",
                       f"write {raw}% for {raw} percent, or a fraction such as 0.1 for 10%")
    if not math.isfinite(value) or not 0 <= value <= 10:
        raise BadInput(f"{name} {text!r} is out of range", "e.g. 10% (or 0.1)")
    return value


class _BaselineModel(BaseModel):
    """The model section of a bench report, as far as the baseline check reads it."""

    model_config = ConfigDict(extra="allow")
    arch: Optional[str] = None
    width: Optional[float] = Field(default=None, allow_inf_nan=False)
    resolution: Optional[int] = None
    precision: Optional[str] = None
    size_bytes: Optional[int] = Field(default=None, ge=0)


class _Baseline(BaseModel):
    """The keys of a bench report that the regression gate reads; the rest of the report is kept as it is."""

    model_config = ConfigDict(extra="allow")
    latency_ms: dict[str, float]
    providers: Optional[list[str]] = None
    model: Optional[_BaselineModel] = None

    @field_validator("latency_ms")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        for key, ms in value.items():
            if not math.isfinite(ms) or ms < 0:
                raise ValueError(f"latency_ms.{key} must be a finite number >= 0, got {ms}")
        return value


def _baseline_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(part) for part in err.get("loc", ()))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"missing key '{key}'" if err.get("type") == "missing" else f"key '{key}': {msg}"


def load_baseline(path: Path | str, name: str = "baseline") -> dict[str, Any]:
    """An earlier bench JSON report (it must carry `latency_ms`; the keys the gates read are type-checked)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{name} {path} does not exist", "write one with mnetctl bench ... --json PATH")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM written by an editor is fine
    except (ValueError, OSError, UnicodeDecodeError, RecursionError) as exc:
        raise BadInput(f"{name} {path} is not a JSON file ({type(exc).__name__})") from None
    return checked_baseline(data, f"{name} {path}")


def checked_baseline(data: Any, where: str = "baseline") -> dict[str, Any]:
    """A bench report whose keys the gates read have the right types (BadInput naming `where` and the key)."""
    if not isinstance(data, Mapping):
        raise BadInput(f"{where}: missing key 'latency_ms'", "use a file written by mnetctl bench --json")
    try:
        checked = _Baseline.model_validate(dict(data))
    except ValidationError as exc:
        raise BadInput(f"{where}: {_baseline_problem(exc)}", "use a file written by mnetctl bench --json") from None
    except RecursionError:
        raise BadInput(f"{where}: nested too deeply", "use a file written by mnetctl bench --json") from None
    out = dict(data)
    out["latency_ms"] = checked.latency_ms
    if checked.providers is not None:
        out["providers"] = checked.providers
    return out


# The model facts a baseline must share with the benched model to be comparable.
IDENTITY_KEYS = ("arch", "width", "resolution", "precision")
SIZE_SLACK = 0.01  # sizes within 1 % are the same model (another opset or metadata changes a few bytes)


def baseline_mismatch(baseline: Mapping[str, Any], facts: Mapping[str, Any], size_bytes: int | None) -> list[str]:
    """How the model a baseline was measured on differs from this one ('arch v2 != v1', ...); [] when it matches.

    Only facts both sides record are compared; a baseline without a model section matches anything.
    """
    model = baseline.get("model")
    if not isinstance(model, Mapping):
        return []
    out = []
    for key in IDENTITY_KEYS:
        theirs, ours = model.get(key), facts.get(key)
        if theirs is not None and ours is not None and theirs != ours:
            out.append(f"{key} {theirs} != {ours}")
    theirs = model.get("size_bytes")
    if isinstance(theirs, int) and size_bytes and abs(theirs - size_bytes) > SIZE_SLACK * max(theirs, size_bytes):
        out.append(f"size {theirs} != {size_bytes} bytes")
    return out


def check_baseline_model(g: "Gates", facts: Mapping[str, Any], size_bytes: int | None) -> str | None:
    """Refuse (BadInput) a baseline measured on another model unless `g.allow_other_baseline`; then a note."""
    if g.baseline is None or not isinstance(g.baseline, Mapping):
        return None
    diff = baseline_mismatch(g.baseline, facts, size_bytes)
    if not diff:
        return None
    where = f" {g.baseline_source}" if g.baseline_source else ""
    text = f"baseline{where} was measured on another model: {'; '.join(diff)}"
    if not g.allow_other_baseline:
        raise BadInput(text, "bench the model it was measured on, or set allow_other_baseline to compare anyway")
    return text + " (allowed)"


@dataclass(frozen=True)
class Gates:
    """What a benchmark is judged on besides its profile; None means the profile's value (or no such gate).

    latency_ms/metric/size_mb/min_top1 override the profile's budgets; top1 is the model's measured top-1
    (fraction or percent; default: the figure in its metadata); baseline (a bench report, or its path) turns on
    the regression gate on `regression_metric` with `tolerance` (fraction, or text such as "10%").
    """

    latency_ms: float | None = None
    metric: Metric | str | None = None
    size_mb: float | None = None
    min_top1: float | None = None
    top1: float | None = None
    baseline: Mapping[str, Any] | Path | str | None = None
    tolerance: float | str | None = None
    regression_metric: Metric | str = Metric.P50
    allow_other_baseline: bool = False  # compare against a baseline measured on another model (noted, not refused)
    baseline_source: str | None = None  # the file the baseline was read from (set by `checked`)

    def checked(self) -> Gates:
        """The same gates validated and normalised (metrics parsed, fractions, baseline loaded); idempotent."""
        for key in ("latency_ms", "size_mb"):
            value = getattr(self, key)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise BadInput(f"{key} must be > 0 and finite, got {value}")
        for key in ("min_top1", "top1"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 100:
                raise BadInput(f"{key} must be a fraction (0..1) or a percentage, got {value}")
        tolerance = self.tolerance
        if tolerance is None:
            tolerance = DEFAULT_TOLERANCE
        elif isinstance(tolerance, str):
            tolerance = parse_tolerance(tolerance)
        elif not 0 <= float(tolerance) <= 10:  # NaN fails this too
            raise BadInput(f"tolerance {tolerance} is out of range (a fraction, e.g. 0.1 for 10%)")
        baseline, source = self.baseline, self.baseline_source
        if baseline is not None and not isinstance(baseline, Mapping):
            baseline, source = load_baseline(baseline), str(baseline)
        elif baseline is not None:
            baseline = checked_baseline(baseline)
        return replace(
            self,
            metric=None if self.metric is None else parse_metric(self.metric, "metric"),
            min_top1=as_fraction(self.min_top1),
            top1=as_fraction(self.top1),
            baseline=baseline,
            baseline_source=source,
            tolerance=float(tolerance),
            regression_metric=parse_metric(self.regression_metric, "regression_metric"),
        )


def _verdict(ok: bool) -> str:
    return "pass" if ok else "fail"


def check_budgets(measured: Measured, profile: Profile | str | Path | None = None, gates: Gates | None = None) -> list[BudgetCheck]:
    """Every check, decided once: budgets from the profile overridden by `gates`, opset/IR limits, regression."""
    prof = as_profile(profile)
    g = (gates or Gates()).checked()
    b = prof.budgets if prof else None
    checks: list[BudgetCheck] = []

    metric = g.metric or (b.percentile if b else Metric.P90)
    limit = g.latency_ms if g.latency_ms is not None else (b.latency_ms if b else None)
    if limit is not None:
        actual = measured.latency_ms[metric]
        ok = actual <= limit
        if measured.simulated:
            checks.append(BudgetCheck("latency", metric, float(limit), actual, "ms", "skip",
                                      f"{metric} latency {actual:.4g} ms comes from a simulated accelerator: not checked"))
        else:
            checks.append(BudgetCheck("latency", metric, float(limit), actual, "ms", _verdict(ok),
                                      f"{metric} latency {actual:.4g} ms {'<=' if ok else '>'} budget {limit:g} ms"))

    size_limit = g.size_mb if g.size_mb is not None else (b.size_mb if b else None)
    if size_limit is not None:
        actual = measured.model_size_mb
        ok = actual <= size_limit
        checks.append(BudgetCheck("size", "size_mb", float(size_limit), actual, "MB", _verdict(ok),
                                  f"model size {actual:.3f} MB {'<=' if ok else '>'} budget {size_limit:g} MB"))

    top1_limit = g.min_top1 if g.min_top1 is not None else (b.min_top1 if b else None)
    figure = g.top1 if g.top1 is not None else measured.top1
    if top1_limit is not None:
        if figure is None:
            checks.append(BudgetCheck("top1", "top1", top1_limit, None, "fraction", "skip",
                                      "no top-1 figure: pass --top1 (e.g. from mnetctl eval) to check it"))
        else:
            ok = figure >= top1_limit
            checks.append(BudgetCheck("top1", "top1", top1_limit, figure, "fraction", _verdict(ok),
                                      f"top-1 {figure:.4f} {'>=' if ok else '<'} minimum {top1_limit:.4f}"))

    if prof is not None:
        opset, ir = measured.model.get("opset"), measured.model.get("ir_version")
        if prof.max_opset is not None and opset is not None:
            ok = opset <= prof.max_opset
            checks.append(BudgetCheck("opset", "opset", float(prof.max_opset), float(opset), "", _verdict(ok),
                                      f"opset {opset} {'<=' if ok else '>'} {prof.max_opset} that {prof.name}'s runtime loads"))
        if prof.max_ir is not None and ir is not None:
            ok = ir <= prof.max_ir
            checks.append(BudgetCheck("ir_version", "ir_version", float(prof.max_ir), float(ir), "", _verdict(ok),
                                      f"IR version {ir} {'<=' if ok else '>'} {prof.max_ir} that {prof.name}'s runtime loads"))

    if g.baseline is not None:
        checks.append(_regression(measured, g))
    return checks


def _regression(measured: Measured, g: Gates) -> BudgetCheck:
    base, metric, tol = g.baseline, g.regression_metric, float(g.tolerance)
    ref = base["latency_ms"].get(metric)
    if not isinstance(ref, (int, float)) or ref <= 0:
        raise BadInput(f"baseline: key 'latency_ms.{metric}' is missing or not a positive number")
    actual = measured.latency_ms[metric]
    allowed = ref * (1 + tol)
    ok = actual <= allowed
    change = (actual / ref - 1) * 100
    where = ""
    if base.get("providers") and list(base["providers"]) != list(measured.providers):
        where = f" (baseline ran on {', '.join(base['providers'])})"
    text = f"{metric} {actual:.4g} ms vs baseline {ref:.4g} ms ({change:+.1f}%, tolerance {tol * 100:g}%){where}"
    if measured.simulated:
        return BudgetCheck("regression", metric, float(allowed), actual, "ms", "skip", text + "; simulated accelerator: not checked")
    return BudgetCheck("regression", metric, float(allowed), actual, "ms", _verdict(ok), text)
