"""`mnetctl bench NEW.onnx --against OLD.onnx`: the A/B regression gate (library: mnetctl/ab.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import EXIT_GATE, BadInput
from ._app import console, err_console, flag_names, print_json
from ._table import Col, print_table

# bench options that do not apply to the A/B gate; with --against they are refused
_NOT_WITH_AGAINST = {
    "ep": "--ep", "ep_option": "--ep-option", "allow_fallback": "--allow-fallback", "iterations": "--iterations",
    "duration": "--duration", "batch": "--batch", "budget_ms": "--budget-ms", "budget_metric": "--budget-metric",
    "budget_size_mb": "--budget-size-mb", "min_top1": "--min-top1", "top1": "--top1", "baseline": "--baseline",
    "allow_other_baseline": "--allow-other-baseline", "op_profile": "--op-profile", "scenario": "--scenario",
    "mlperf_mode": "--mlperf-mode", "out_dir": "--out", "data": "--data", "limit": "--limit",
    "min_duration": "--min-duration", "min_queries": "--min-queries",
}
_FLAGS = {"max_seconds": "--max-seconds", "tolerance": "--tolerance", "min_rounds": "--min-rounds"}


def bench_ab(models: list[Path], options: dict[str, Any]) -> int:
    """Run the A/B gate; `options` are bench_cmd's parameters by name. Exit 1 on a regression (or, with
    --strict, when still inconclusive at the time cap)."""
    from ..ab import ab_bench
    from ..fsutil import check_writable
    from ..modelio import check_model_path
    from ..report import write_ab_reports
    from ._progress import progress_bar

    against = options.get("against") or []
    if not against:
        used = "--max-seconds" if options.get("max_seconds") is not None else "--strict"
        raise BadInput(f"{used} applies to the A/B gate only", "add --against OLD.onnx")
    if len(against) > 1:
        raise BadInput(f"--against takes one model, got {len(against)}", "gate against one older model at a time")
    if len(models) > 1:
        raise BadInput(f"--against gates one model, {len(models)} were given", "give one NEW model and --against OLD")
    for key, flag in _NOT_WITH_AGAINST.items():
        if options.get(key) not in (None, False, []):
            raise BadInput(f"{flag} does not apply with --against", "the A/B gate compares the two models in one run"
                           + ("; use --baseline alone on a dedicated device" if key == "baseline" else ""))
    new, old = models[0], against[0]
    check_model_path(new)
    check_model_path(old)
    json_path = options.get("json_path")
    to_stdout = json_path == "-"
    outputs = {"--json": json_path if not to_stdout else None, "--junit": options.get("junit_path"),
               "--markdown": options.get("markdown_path")}
    given = {flag: out for flag, out in outputs.items() if out is not None}
    if len({str(Path(out).absolute()) for out in given.values()}) < len(given):
        raise BadInput(f"{', '.join(given)} name the same file", "give each report its own file")
    for flag, out in given.items():
        check_writable(Path(out), inputs=(new, old, options.get("profile")), flag=flag)

    tolerance = options.get("tolerance")
    kwargs = {"tolerance": tolerance} if tolerance is not None else {}
    if options.get("warmup") is not None:
        kwargs["warmup"] = options["warmup"]
    with flag_names(_FLAGS), progress_bar(enabled=not (options.get("quiet") or to_stdout)) as on_progress:
        result = ab_bench(new, old, device=options.get("device"), profile=options.get("profile"),
                          threads=options.get("threads"), max_seconds=options.get("max_seconds"),
                          on_progress=on_progress, **kwargs)
    write_ab_reports(result, json_path if not to_stdout else None, options.get("junit_path"),
                     options.get("markdown_path"), strict=bool(options.get("strict")))
    if to_stdout:
        print_json(result.as_dict())
    else:
        _print(result, quiet=bool(options.get("quiet")), wide=bool(options.get("wide")))
    if result.verdict == "regression":
        return EXIT_GATE
    if result.verdict == "inconclusive":
        if to_stdout:  # otherwise _print said it
            err_console.print(f"[yellow]warning:[/] {result.warning()}", soft_wrap=True)
        return EXIT_GATE if options.get("strict") else 0
    return 0


def _print(result, quiet: bool, wide: bool = False) -> None:
    s = result.stats
    state = {"ok": "[green]OK[/]", "regression": "[bold red]REGRESSION[/]", "inconclusive": "[yellow]INCONCLUSIVE[/]"}[s.verdict]
    if not quiet:
        host = result.host
        title = (f"{result.new} against {result.old} on {result.device}: {host.get('cpu')} "
                 f"({host.get('cores_logical')} cores), onnxruntime {result.onnxruntime}, threads "
                 f"{result.threads or 'default'}, {s.rounds} interleaved rounds of {result.runs_per_block} runs per model")
        rows = [["new", result.new, f"{result.new_p50_ms:.3f}", f"{result.new_p90_ms:.3f}", "x".join(map(str, result.inputs['new']['shape']))],
                ["old", result.old, f"{result.old_p50_ms:.3f}", f"{result.old_p90_ms:.3f}", "x".join(map(str, result.inputs['old']['shape']))]]
        print_table([Col("", "words"), Col("model", "fold"), Col("p50 ms"), Col("p90 ms", drop=1), Col("input", "words", drop=2)],
                    rows, wide=wide, title=title, title_justify="left")
        load = result.other_load
        if load is not None and load > 0.2:
            console.print(f"[dim]other processes kept {load:.1f} cores busy while timing (both models alike)[/]", soft_wrap=True)
        for note in result.notes:
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    console.print(f"{state} {result.summary()}", soft_wrap=True)
    if result.warning():
        err_console.print(f"[yellow]warning:[/] {result.warning()}", soft_wrap=True)
