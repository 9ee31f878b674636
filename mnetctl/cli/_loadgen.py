"""`mnetctl bench MODEL --scenario single-stream|offline`: an MLPerf LoadGen test (mnetctl.loadgen), printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BadInput
from ._app import console, flag_names, print_json
from ._table import Col, print_table

# bench options that only LoadGen runs read
MLPERF_ONLY = {"mlperf_mode": "--mlperf-mode", "out_dir": "--out", "data": "--data", "limit": "--limit",
               "min_duration": "--min-duration", "min_queries": "--min-queries"}
# bench options a LoadGen run has no use for (LoadGen decides how long to run and judges the run itself)
_BENCH_ONLY = {"iterations": "--iterations", "duration": "--duration", "warmup": "--warmup", "budget_ms": "--budget-ms",
               "budget_metric": "--budget-metric", "budget_size_mb": "--budget-size-mb", "min_top1": "--min-top1",
               "top1": "--top1", "baseline": "--baseline", "allow_other_baseline": "--allow-other-baseline",
               "op_profile": "--op-profile", "junit_path": "--junit", "markdown_path": "--markdown"}
_FLAGS = {**MLPERF_ONLY, "scenario": "--scenario", "out": "--out"}


def _given(value: Any) -> bool:
    return value not in (None, False, [])


def refuse_mlperf_options(options: dict[str, Any]) -> None:
    """Without --scenario, LoadGen's options mean nothing: say so instead of ignoring them."""
    for key, flag in MLPERF_ONLY.items():
        if _given(options.get(key)):
            raise BadInput(f"{flag} applies to LoadGen runs", "add --scenario single-stream or --scenario offline")


def bench_loadgen(models: list[Path], options: dict[str, Any]) -> int:
    """Run LoadGen on one model; `options` are bench_cmd's parameters by name (`ep_options` already parsed)."""
    from ..fsutil import check_writable
    from ..loadgen import run_loadgen
    from ..modelio import check_model_path
    from ..profiles import load_profile
    from ._progress import progress_bar

    if len(models) > 1:
        raise BadInput(f"--scenario runs one model; {len(models)} were given")
    for key, flag in _BENCH_ONLY.items():
        if _given(options.get(key)):
            raise BadInput(f"{flag} does not apply to --scenario runs", "LoadGen decides the run's length and validity")
    model = check_model_path(models[0])
    device, profile = options.get("device"), options.get("profile")
    prof = load_profile(profile if profile is not None else device) if (device or profile) else None
    json_path = options.get("json_path")
    to_stdout = json_path == "-"
    if json_path and not to_stdout:
        check_writable(Path(json_path), inputs=(model, profile), flag="--json")

    with flag_names(_FLAGS), progress_bar(enabled=not (options.get("quiet") or to_stdout)) as on_progress:
        result = run_loadgen(
            model, scenario=options["scenario"], mode=options.get("mlperf_mode") or "performance", profile=prof,
            eps=options.get("ep"), threads=options.get("threads"), batch=options.get("batch"),
            allow_fallback=bool(options.get("allow_fallback")), ep_options=options.get("ep_options"),
            data=options.get("data"), limit=options.get("limit"), min_duration=options.get("min_duration"),
            min_queries=options.get("min_queries"), out_dir=options.get("out_dir"), on_progress=on_progress,
        )
    if json_path and not to_stdout:
        from ..report import write_json

        write_json(Path(json_path), result.as_dict())
    if to_stdout:
        print_json(result.as_dict())
        return 0
    _print(result, bool(options.get("wide")), bool(options.get("quiet")))
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def _print(result, wide: bool, quiet: bool) -> None:
    if not quiet:
        rows = [["model", result.model_path], ["scenario", f"{result.scenario} / {result.mode}"],
                ["providers", f"{', '.join(result.providers)} | threads {result.threads or 'default'} | batch {result.batch}"],
                ["images (QSL)", f"{result.samples} from {result.data}" + (f", {len(result.failed)} unreadable" if result.failed else "")],
                ["settings", f"{result.settings['rules']}, min duration {result.settings['min_duration_ms'] / 1000:g} s, "
                             f"min queries {result.settings['min_query_count']}"]]
        if result.mode == "performance":
            lat = result.latency_ms
            rows.append(["latency", f"p50 {_ms(lat.get('p50'))}, p90 {_ms(lat.get('p90'))}, p99 {_ms(lat.get('p99'))}, "
                                            f"max {_ms(lat.get('max'))}"])
            if result.sut_ms:
                rows.append(["inside the SUT", f"p50 {_ms(result.sut_ms.get('p50'))}, p90 {_ms(result.sut_ms.get('p90'))} "
                                               "(inference and decoding, without LoadGen's issue path)"])
            if result.early_stopping_ms:
                rows.append(["early stopping", ", ".join(f"{k} {_ms(v)}" for k, v in result.early_stopping_ms.items())])
            for rec in result.recommendations:
                rows.append(["LoadGen says", rec])
        rows.append(["logs", result.out_dir])
        print_table([Col(kind="words", style="dim"), Col(kind="words")], rows, wide=wide,
                    title=f"MLPerf LoadGen {result.loadgen_version or ''}".rstrip(), title_justify="left",
                    show_header=False, box=None, pad_edge=False)
        for note in result.notes:
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if result.mode == "accuracy":
        console.print(f"top-1 {100 * result.top1:.2f}% ({result.correct1}/{result.scored}) from LoadGen's accuracy log",
                      soft_wrap=True)
        return
    figure = (f"90th percentile latency {_ms(result.p90_ms)}" if result.scenario == "single-stream"
              else f"{result.samples_per_s:g} samples/s" if result.samples_per_s is not None else "no figure")
    verdict = "[green]VALID[/]" if result.valid else f"[bold yellow]INVALID[/] ({', '.join(result.unmet) or 'see the summary'}: no)"
    if result.settings.get("shortened"):
        verdict += "; [yellow]shortened run: not valid under MLPerf's rules[/]"
    console.print(f"{result.scenario}: {figure}; LoadGen: {verdict}", soft_wrap=True)
