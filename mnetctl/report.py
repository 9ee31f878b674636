"""Report writers: JSON, JUnit XML (one testcase per budget) and Markdown (e.g. a CI job summary).

All files are written atomically; the bench reports as one set (write_bench_reports).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .fsutil import write_text, write_texts

if TYPE_CHECKING:  # pragma: no cover
    from .bench import BenchResult


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def write_json(path: Path | str, data: Any) -> Path:
    if hasattr(data, "as_dict"):
        data = data.as_dict()
    return write_text(path, to_json(data))


@dataclass
class JUnitCase:
    """One JUnit testcase: failure/skipped text when it did not pass."""

    name: str
    classname: str
    time_s: float = 0.0
    failure: str | None = None
    skipped: str | None = None
    output: str = ""


@dataclass
class JUnitSuite:
    name: str
    cases: list[JUnitCase]
    properties: dict[str, str] = field(default_factory=dict)
    time_s: float = 0.0
    timestamp: str = ""
    system_out: str = ""


def junit_xml(suites: Iterable[JUnitSuite]) -> str:
    suites = list(suites)
    root = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        failures = sum(1 for c in suite.cases if c.failure is not None)
        skipped = sum(1 for c in suite.cases if c.skipped is not None and c.failure is None)
        attrs = {
            "name": suite.name,
            "tests": str(len(suite.cases)),
            "failures": str(failures),
            "errors": "0",
            "skipped": str(skipped),
            "time": f"{suite.time_s:.3f}",
        }
        if suite.timestamp:
            attrs["timestamp"] = suite.timestamp
        el = ET.SubElement(root, "testsuite", attrs)
        totals["tests"] += len(suite.cases)
        totals["failures"] += failures
        totals["skipped"] += skipped
        if suite.properties:
            props = ET.SubElement(el, "properties")
            for key, value in suite.properties.items():
                ET.SubElement(props, "property", {"name": key, "value": str(value)})
        for case in suite.cases:
            c = ET.SubElement(el, "testcase", {"name": case.name, "classname": case.classname, "time": f"{case.time_s:.3f}"})
            if case.failure is not None:
                f = ET.SubElement(c, "failure", {"message": case.failure, "type": "BudgetExceeded"})
                f.text = case.failure
            elif case.skipped is not None:
                ET.SubElement(c, "skipped", {"message": case.skipped})
            if case.output:
                ET.SubElement(c, "system-out").text = case.output
        if suite.system_out:
            ET.SubElement(el, "system-out").text = suite.system_out
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path | str, suites: Iterable[JUnitSuite]) -> Path:
    return write_text(path, junit_xml(suites))


# --------------------------------------------------------------------------------------------------------------
# Bench results


def _check_title(check) -> str:
    if check.name == "latency":
        return f"latency {check.metric} <= {check.limit:g} ms"
    if check.name == "size":
        return f"model size <= {check.limit:g} MB"
    if check.name == "top1":
        return f"top-1 >= {check.limit:.4f}"
    if check.name in ("opset", "ir_version"):
        return f"{check.name} <= {check.limit:g}"
    if check.name == "regression":
        return f"no {check.metric} regression (<= {check.limit:.4g} ms)"
    return check.name


def bench_suite(result: "BenchResult") -> JUnitSuite:
    """One testsuite per bench run; one testcase per budget/gate."""
    from pathlib import PurePath

    target = result.profile or "host"
    classname = f"mnetctl.bench.{target}.{PurePath(result.model_path).stem}"
    cases = []
    for check in result.checks:
        cases.append(
            JUnitCase(
                name=_check_title(check),
                classname=classname,
                failure=check.message if check.status == "fail" else None,
                skipped=check.message if check.status == "skip" else None,
                output=check.message,
            )
        )
    lat = result.latency_ms
    props = {
        "model": result.model_path,
        "profile": target,
        "host_matches_profile": str(result.host_matches_profile).lower(),
        "providers": ",".join(result.providers),
        "fell_back": str(result.fallback.get("fell_back", False)).lower(),
        "p50_ms": f"{lat['p50']:.4f}",
        "p90_ms": f"{lat['p90']:.4f}",
        "p99_ms": f"{lat['p99']:.4f}",
        "mean_ms": f"{lat['mean']:.4f}",
        "size_mb": f"{result.model_size_mb:.4f}",
    }
    return JUnitSuite(
        name=f"mnetctl bench {PurePath(result.model_path).name} on {target}",
        cases=cases,
        properties=props,
        time_s=result.measured_s,
        timestamp=result.timestamp,
        system_out="\n".join(result.notes),
    )


def bench_markdown(result: "BenchResult") -> str:
    lat = result.latency_ms
    target = result.profile or "host"
    verdict = "PASS" if result.passed else "FAIL"
    lines = [
        f"### mnetctl bench: `{Path(result.model_path).name}` on `{target}`: **{verdict}**",
        "",
        f"Providers: {', '.join(result.providers)} ({', '.join(f'{k}: {v} nodes' for k, v in result.node_assignment.items())}); "
        f"threads {result.threads or 'default'}, batch {result.batch}, {result.iterations} runs",
        "",
        "| min | mean | p50 | p90 | p95 | p99 | max | throughput | size |",
        "|---|---|---|---|---|---|---|---|---|",
        "| " + " | ".join(f"{lat[k]:.3f} ms" for k in ("min", "mean", "p50", "p90", "p95", "p99", "max"))
        + f" | {result.throughput_ips:.1f} img/s | {result.model_size_mb:.2f} MB |",
        "",
    ]
    if result.checks:
        lines += ["| check | result | detail |", "|---|---|---|"]
        for check in result.checks:
            mark = {"pass": "pass", "fail": "**FAIL**", "skip": "skipped"}[check.status]
            lines.append(f"| {_check_title(check)} | {mark} | {check.message} |")
        lines.append("")
    if result.host_matches_profile is False:
        lines.append(f"> This host is not a `{target}`: {'; '.join(result.host_mismatch)}.")
    for note in result.notes:
        if not note.startswith("this host is not"):
            lines.append(f"> {note}")
    return "\n".join(lines).rstrip() + "\n"


def write_bench_reports(result: "BenchResult", json_path=None, junit_path=None, markdown_path=None) -> list[Path]:
    """The requested reports as one set: if any cannot be written, none of them changes."""
    files = {}
    if json_path is not None:
        files[json_path] = to_json(result.as_dict())
    if junit_path is not None:
        files[junit_path] = junit_xml([bench_suite(result)])
    if markdown_path is not None:
        files[markdown_path] = bench_markdown(result)
    return write_texts(files) if files else []


# --------------------------------------------------------------------------------------------------------------
# A/B gate results (bench NEW --against OLD)


def ab_suite(result, strict: bool = False) -> JUnitSuite:
    """One testsuite per A/B gate; one testcase, failing on a regression (inconclusive: skipped, with `strict`
    failing)."""
    from pathlib import PurePath

    s = result.stats
    summary = result.summary()
    case = JUnitCase(
        name=f"no p50 regression against {PurePath(result.old).name} (ratio <= {1 + s.tolerance:.4g})",
        classname=f"mnetctl.bench.{result.device}.{PurePath(result.new).stem}",
        time_s=result.elapsed_s,
        failure=summary if s.verdict == "regression" or (strict and s.verdict == "inconclusive") else None,
        skipped=result.warning() if s.verdict == "inconclusive" and not strict else None,
        output=summary,
    )
    props = {"new": result.new, "old": result.old, "profile": result.device, "ratio": f"{s.ratio:.4f}",
             "ci_low": f"{s.ci_low:.4f}", "ci_high": f"{s.ci_high:.4f}", "verdict": s.verdict,
             "rounds": str(s.rounds), "tolerance": f"{s.tolerance:g}", "other_load": str(result.other_load)}
    return JUnitSuite(name=f"mnetctl bench {PurePath(result.new).name} --against {PurePath(result.old).name} on "
                      f"{result.device}", cases=[case], properties=props, time_s=result.elapsed_s,
                      timestamp=result.timestamp, system_out="\n".join(result.notes))


def ab_markdown(result) -> str:
    s = result.stats
    mark = {"ok": "ok", "regression": "**REGRESSION**", "inconclusive": "inconclusive"}[s.verdict]
    lines = [
        f"### mnetctl bench `{Path(result.new).name}` --against `{Path(result.old).name}` on `{result.device}`: {mark}",
        "",
        "| model | p50 | p90 |", "|---|---|---|",
        f"| new `{Path(result.new).name}` | {result.new_p50_ms:.3f} ms | {result.new_p90_ms:.3f} ms |",
        f"| old `{Path(result.old).name}` | {result.old_p50_ms:.3f} ms | {result.old_p90_ms:.3f} ms |",
        "",
        f"Ratio new/old (p50): **{s.ratio:.3f}x**, 95% CI {s.ci_low:.3f}-{s.ci_high:.3f}, limit {1 + s.tolerance:.3f} "
        f"(tolerance {s.tolerance * 100:g}%), {s.rounds} interleaved rounds; other processes' load "
        f"{result.other_load if result.other_load is not None else 'unknown'} cores.",
        "",
    ]
    if result.warning():
        lines.append(f"> {result.warning()}")
    for note in result.notes:
        lines.append(f"> {note}")
    return "\n".join(lines).rstrip() + "\n"


def write_ab_reports(result, json_path=None, junit_path=None, markdown_path=None, strict: bool = False) -> list[Path]:
    """The requested reports of an A/B gate as one set: if any cannot be written, none of them changes."""
    files = {}
    if json_path is not None:
        files[json_path] = to_json(result.as_dict())
    if junit_path is not None:
        files[junit_path] = junit_xml([ab_suite(result, strict)])
    if markdown_path is not None:
        files[markdown_path] = ab_markdown(result)
    return write_texts(files) if files else []
