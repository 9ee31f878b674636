"""`mnetctl bench`: latency on a device profile's execution providers, budgets, regression gate, reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EXIT_GATE, BadInput
from ._app import WideFlag, app, console, err_console, flag_names, print_json
from ._table import Col, print_table


def _ep_options(items: list[str]) -> dict[str, dict[str, str]]:
    """--ep-option values -> {'openvino': {'device_type': 'GPU'}}; a malformed one is reported with the flag."""
    from ..runtime import parse_ep_option, parse_ep_options

    for item in items:
        try:
            parse_ep_option(item)
        except BadInput:
            raise BadInput(f"--ep-option {item!r} must look like EP.KEY=VALUE", "e.g. --ep-option openvino.device_type=CPU") from None
    return parse_ep_options(items)


# bench's own spellings of library parameters (the rest come from _app.PARAM_FLAGS)
_FLAGS = {
    "latency_ms": "--budget-ms", "metric": "--budget-metric", "size_mb": "--budget-size-mb", "min_top1": "--min-top1",
    "top1": "--top1", "baseline": "--baseline", "regression_metric": "--regression-metric", "op_top": "--op-top",
    "allow_other_baseline": "--allow-other-baseline",
}


_MLPERF = "MLPerf LoadGen (--scenario)"
_AB = "A/B regression gate (--against; also --tolerance, --device/--profile, --threads, reports)"


@app.command("bench")
def bench_cmd(
    models: Annotated[list[Path], typer.Argument(help="ONNX model file; give several to time them interleaved against the first.", show_default=False)],
    device: Annotated[Optional[str], typer.Option("--device", "-D", help="Shipped device profile (mnetctl profiles list).", show_default=False)] = None,
    profile: Annotated[Optional[Path], typer.Option("--profile", help="Your own device profile TOML file.", show_default=False)] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="Runtime: onnxruntime, litert (.tflite files) or openvino \\[default: the profile's, else by the file].", show_default=False)] = None,
    ep: Annotated[Optional[str], typer.Option("--ep", help="Execution providers in priority order, e.g. openvino,cpu \\[default: the profile's, else cpu].", show_default=False)] = None,
    ep_option: Annotated[Optional[list[str]], typer.Option("--ep-option", help="Provider option EP.KEY=VALUE (repeatable).", show_default=False)] = None,
    allow_fallback: Annotated[bool, typer.Option("--allow-fallback", help="Run even if a requested EP is missing or nodes fall back to CPU (reported).")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="Intra-op threads \\[default: the profile's, else onnxruntime's].", show_default=False)] = None,
    iterations: Annotated[Optional[int], typer.Option("--iterations", "-n", help="Measured runs \\[default: 100].", show_default=False)] = None,
    duration: Annotated[Optional[str], typer.Option("--duration", help="Measure for this long instead, e.g. 10s.", show_default=False)] = None,
    warmup: Annotated[Optional[int], typer.Option("--warmup", help="Warm-up runs after the cold run \\[default: 10].", show_default=False)] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", "-b", help="Batch size (models with a free batch axis).", show_default=False)] = None,
    budget_ms: Annotated[Optional[float], typer.Option("--budget-ms", help="Latency budget in ms (overrides the profile's).", show_default=False)] = None,
    budget_metric: Annotated[Optional[str], typer.Option("--budget-metric", help="Statistic the latency budget applies to: min mean p50 p90 p95 p99 max.", show_default=False)] = None,
    budget_size_mb: Annotated[Optional[float], typer.Option("--budget-size-mb", help="Model size budget in MB (10^6 bytes).", show_default=False)] = None,
    min_top1: Annotated[Optional[float], typer.Option("--min-top1", help="Minimum top-1 (0..1 or percent).", show_default=False)] = None,
    top1: Annotated[Optional[float], typer.Option("--top1", help="The model's measured top-1 (e.g. from mnetctl eval) for the min-top1 budget.", show_default=False)] = None,
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Earlier bench --json output to compare against.", show_default=False)] = None,
    tolerance: Annotated[Optional[str], typer.Option("--tolerance", help="Allowed slowdown against --baseline or --against: a percentage (5%) or a fraction below 1 (0.05) \\[default: 10% with --baseline, 5% with --against].", show_default=False)] = None,
    allow_other_baseline: Annotated[bool, typer.Option("--allow-other-baseline", help="Compare with a --baseline measured on another model (noted) instead of refusing it.")] = False,
    regression_metric: Annotated[str, typer.Option("--regression-metric", help="Statistic compared with the baseline.")] = "p50",
    op_profile: Annotated[bool, typer.Option("--op-profile", help="Also list the slowest operators (onnxruntime profiler, separate runs).")] = False,
    op_top: Annotated[int, typer.Option("--op-top", help="How many operators --op-profile lists.")] = 15,
    # A/B gate: bench NEW --against OLD (cli/_bench_ab.py)
    against: Annotated[Optional[list[Path]], typer.Option("--against", help="Gate the model against this older model, timed interleaved in the same run (A/B regression gate).", show_default=False, rich_help_panel=_AB)] = None,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="With --against: time cap for the rounds taken while the verdict is inconclusive \\[default: 120].", show_default=False, rich_help_panel=_AB)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="With --against: exit 1 when the verdict is still inconclusive at the time cap.", rich_help_panel=_AB)] = False,
    json_path: Annotated[Optional[str], typer.Option("--json", help="Write the JSON report to PATH ('-' prints it instead of the table).", show_default=False)] = None,
    junit_path: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML (one testcase per budget) to PATH.", show_default=False)] = None,
    markdown_path: Annotated[Optional[Path], typer.Option("--markdown", help="Write a Markdown summary to PATH (e.g. $GITHUB_STEP_SUMMARY).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; print only the verdict line.")] = False,
    wide: WideFlag = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Bench on a node of the Ray cluster at HOST:PORT that serves --device (needs mnetctl\\[cluster]).", show_default=False)] = None,
    env: Annotated[Optional[str], typer.Option("--env", help="Bench in this Python environment (name or path; see mnetctl env create) instead of the profile's or this one.", show_default=False)] = None,
    scenario: Annotated[Optional[str], typer.Option("--scenario", help="Run an MLPerf LoadGen test instead: single-stream or offline (needs the extra: pip install mnetctl\\[mlperf]).", show_default=False, rich_help_panel=_MLPERF)] = None,
    mlperf_mode: Annotated[Optional[str], typer.Option("--mlperf-mode", help="LoadGen mode: performance or accuracy (top-1 from LoadGen's accuracy log) \\[default: performance].", show_default=False, rich_help_panel=_MLPERF)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for LoadGen's logs \\[default: results/mlperf/SCENARIO-MODE].", show_default=False, rich_help_panel=_MLPERF)] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Images for LoadGen's sample library \\[default: the shipped val sample].", show_default=False, rich_help_panel=_MLPERF)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use the first N images (at most 1024).", show_default=False, rich_help_panel=_MLPERF)] = None,
    min_duration: Annotated[Optional[str], typer.Option("--min-duration", help="Shorten LoadGen's minimum duration (MLPerf: 600s), e.g. 5s; the run is then not valid under MLPerf's rules.", show_default=False, rich_help_panel=_MLPERF)] = None,
    min_queries: Annotated[Optional[int], typer.Option("--min-queries", help="Override LoadGen's minimum query count (offline: samples).", show_default=False, rich_help_panel=_MLPERF)] = None,
) -> int:
    """Benchmark a model: cold run, warm-up, measured runs, statistics, EPs and node assignment, budgets.

    Exit codes: 0 all budgets met, 1 a budget or the regression gate failed, 2 bad input, 3 a requested execution provider (or, for --scenario, MLPerf LoadGen) is not available here.
    """
    from ..bench import bench
    from ..budgets import Gates
    from ..fsutil import check_writable
    from ..modelio import check_model_path
    from ..profiles import load_profile
    from ..report import write_bench_reports
    from ._progress import progress_bar

    if device and profile:  # first: every path below reads one of them
        raise BadInput("give --device NAME or --profile PATH, not both")
    if runtime is not None and runtime.strip().lower() != "onnxruntime" and (against or max_seconds is not None or strict
                                                                            or scenario is not None or len(models) > 1):
        raise BadInput(f"--runtime {runtime} times one model; --against, --scenario and several models run on onnxruntime",
                       "bench one model per run, or compare runtimes with mnetctl sweep --device host,host-litert,host-openvino")
    if against or max_seconds is not None or strict:
        from ._bench_ab import bench_ab

        return bench_ab(models, dict(locals()))
    if cluster or env:
        return _bench_elsewhere(dict(locals()))
    if (device or profile) and not os.environ.get("MNETCTL_ENV_ACTIVE"):
        named = load_profile(profile if profile is not None else device).env
        if named:  # the profile's benches run in its own Python environment
            return _bench_elsewhere(dict(locals(), env=named, env_from_profile=True))
    from ._loadgen import bench_loadgen, refuse_mlperf_options

    if scenario is not None:
        return bench_loadgen(models, dict(locals(), ep_options=_ep_options(ep_option or [])))
    refuse_mlperf_options(dict(locals()))
    if len(models) > 1:
        from ._bench_many import bench_many

        return bench_many(models, dict(locals()))
    model = models[0]
    from ..edgetpu import is_edgetpu_profile

    if is_edgetpu_profile(device or (profile and str(profile))):  # checks only: timing needs the device
        from ._edgetpu import bench_edgetpu

        return bench_edgetpu(model, json_path)
    check_model_path(model)
    prof = load_profile(profile if profile is not None else device) if (device or profile) else None
    if prof is not None and prof.legacy:
        err_console.print(f"[yellow]legacy profile:[/] {prof.legacy_message}", soft_wrap=True)
    with flag_names(_FLAGS):
        gates = Gates(latency_ms=budget_ms, metric=budget_metric, size_mb=budget_size_mb, min_top1=min_top1, top1=top1,
                      baseline=baseline, tolerance=tolerance, regression_metric=regression_metric,
                      allow_other_baseline=allow_other_baseline).checked()
    outputs = {"--json": json_path if json_path not in (None, "-") else None, "--junit": junit_path, "--markdown": markdown_path}
    given = {flag: out for flag, out in outputs.items() if out is not None}
    if len({str(Path(out).absolute()) for out in given.values()}) < len(given):
        raise BadInput(f"{', '.join(given)} name the same file", "give each report its own file")
    for flag, out in given.items():  # every output checked before any work (and before any report is written)
        check_writable(Path(out), inputs=(model, profile, baseline), flag=flag)
    to_stdout = json_path == "-"

    with flag_names(_FLAGS), progress_bar(enabled=not (quiet or to_stdout)) as on_progress:
        result = bench(
            model, profile=prof, eps=ep, threads=threads, iterations=iterations, duration=duration, batch=batch, warmup=warmup,
            allow_fallback=allow_fallback, op_profile=op_profile, ep_options=_ep_options(ep_option or []), op_top=op_top,
            gates=gates, on_progress=on_progress, runtime=runtime,
        )
    write_bench_reports(result, json_path if not to_stdout else None, junit_path, markdown_path)
    if to_stdout:
        print_json(result.as_dict())
    elif quiet:
        _verdict(result)
    else:
        _print(result, wide)
    return 0 if result.passed else EXIT_GATE


# what `bench --cluster/--env` passes on; every other option is refused there
_ELSEWHERE_OK = {"models", "device", "profile", "threads", "iterations", "warmup", "json_path", "quiet", "wide", "cluster", "env",
                 "env_from_profile"}


def _bench_elsewhere(opts: dict) -> int:
    """bench --cluster / --env: the profile's bench, run on a cluster node serving the device or in another Python
    environment; the same JSON report plus where it ran."""
    from ..modelio import check_model_path
    from ..profiles import load_profile
    from ..report import to_json
    from ..fsutil import check_writable, write_text

    import inspect

    params = inspect.signature(bench_cmd).parameters
    given = [k for k, v in opts.items() if k in params and k not in _ELSEWHERE_OK and v != params[k].default]
    if given:
        raise BadInput(f"--cluster/--env take the profile's settings; not supported with them: {', '.join(sorted(given))}")
    if len(opts["models"]) != 1:
        raise BadInput("--cluster/--env bench one model")
    if opts["cluster"] and opts["env"]:
        raise BadInput("--env and --cluster: on a cluster the device's profile names its environment")
    model = opts["models"][0]
    check_model_path(model)
    if not (opts["device"] or opts["profile"]):
        raise BadInput("--cluster/--env need --device NAME or --profile PATH")
    prof = load_profile(opts["profile"] if opts["profile"] is not None else opts["device"])
    json_path = opts["json_path"]
    if json_path not in (None, "-"):
        check_writable(Path(json_path), inputs=(model, opts["profile"]), flag="--json")
    inputs = {"model": str(model), "profile": prof.model_dump(mode="json"), "threads": opts["threads"],
              "iterations": opts["iterations"], "warmup": opts["warmup"]}
    if opts["cluster"]:
        from ..cluster import check_address
        from ..runners import ray as rr

        rr.connect(check_address(opts["cluster"], "--cluster"))
        runner = rr.RayRunner()
        runner.check_devices([prof.name])
    else:
        from ..runners import LocalRunner

        runner = LocalRunner() if opts.get("env_from_profile") else LocalRunner(env=opts["env"])
    doc = runner.run("bench_report", inputs)
    doc["model"]["path"] = str(model)  # not the node's copy
    if json_path == "-":
        print_json(doc)
    elif json_path is not None:
        write_text(Path(json_path), to_json(doc))
    lat = doc["latency_ms"]
    where = doc.get("where")
    at = f" on node {where['node'][:12]} ({where['host']})" if where else (f" in env {opts['env']}" if opts["env"] else "")
    if json_path != "-":
        state = "[green]PASS[/]" if doc["passed"] else "[bold red]FAIL[/]"
        console.print(f"{state} {model}: p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms on "
                      f"{', '.join(doc['providers'])}{at}", soft_wrap=True)
        for w in (where or {}).get("failed_attempts", []):
            err_console.print(f"[yellow]retried:[/] node {w['node'][:12]} lost ({w['reason']})", soft_wrap=True)
    return 0 if doc["passed"] else EXIT_GATE


def _verdict(result) -> None:
    lat = result.latency_ms
    state = "[green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
    console.print(f"{state} {result.model_path}: p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms on {', '.join(result.providers)}", soft_wrap=True)
    for check in result.failed_checks:
        err_console.print(f"[bold red]budget broken:[/] {check.message}", soft_wrap=True)


def _print(result, wide: bool = False) -> None:
    target = result.profile or "host"
    head = []
    m = result.model
    head.append(["model", f"{m.get('arch')} w{m.get('width')} r{m.get('resolution')} {m.get('precision')} | opset {m.get('opset')} IR {m.get('ir_version')} | {result.model_size_mb:.3f} MB"])
    rt = result.runtime or {}
    rt_name = f"{rt.get('version')}" if rt.get("engine", "onnxruntime") != "onnxruntime" else f"onnxruntime {result.onnxruntime.get('version')}"
    head.append(["host", f"{result.host.get('cpu')} ({result.host.get('cores_logical')} cores, {result.host.get('arch')}) | {rt_name}"])
    if result.profile:
        match = "[green]yes[/]" if result.host_matches_profile else f"[yellow]no[/] ({'; '.join(result.host_mismatch)})"
        head.append(["host is the device", match])
    nodes = ", ".join(f"{p.replace('ExecutionProvider', '')}: {n}" for p, n in result.node_assignment.items())
    if result.node_assignment:
        head.append(["providers", f"{', '.join(result.providers)}  [dim]nodes ({result.assignment_source}): {nodes}[/]"])
    else:
        head.append(["runs on", ", ".join(result.providers)])
    if result.fallback.get("fell_back"):
        head.append(["fell back", f"[yellow]{_fallback_text(result.fallback)}[/]"])
    head.append(["threads / batch", f"{result.threads or 'default'} / {result.batch}"])
    head.append(["session / cold run", f"{result.session_create_ms:.1f} ms / {result.cold_run_ms:.3f} ms"])
    if result.warmup_runs:
        head.append(["warm-up", f"{result.warmup_runs} runs, mean {result.warmup_ms.get('mean_ms', 0):.3f} ms, max {result.warmup_ms.get('max_ms', 0):.3f} ms"])
    head.append(["measured", f"{result.iterations} runs in {result.measured_s:.2f} s (loop overhead {result.loop_overhead_pct:.2f}%)"])
    head.append(["memory", f"peak RSS {result.peak_rss_mb:.1f} MiB (+{result.rss_delta_mb:.1f} MiB for the session)"])
    print_table([Col(kind="words", style="dim"), Col(kind="words")], head, wide=wide, title=f"{result.model_path} on {target}",
                title_justify="left", show_header=False, box=None, pad_edge=False)

    lat = result.latency_ms
    gated = {c.metric for c in result.checks if c.name == "latency"}  # a gated statistic is always shown
    keys = ("min", "mean", "std", "p50", "p90", "p95", "p99", "max")
    drops = {"min": 3, "mean": 1, "std": 4, "p50": 0, "p90": 0, "p95": 4, "p99": 2, "max": 3}
    stats = [Col(k, drop=0 if k in gated else drops[k]) for k in keys] + [Col("img/s", drop=2)]
    print_table(stats, [[f"{lat[k]:.3f}" for k in keys] + [f"{result.throughput_ips:.1f}"]], wide=wide,
                title="latency (ms)", title_justify="left")

    if result.op_profile:
        ops = [[row["node"], row["op"], str(row["provider"]).replace("ExecutionProvider", ""), f"{row['mean_ms']:.4f}",
                f"{100 * row['share']:.1f}%"] for row in result.op_profile]
        print_table([Col("node", "fold", drop=1), Col("op", "words"), Col("provider", "words", drop=2), Col("mean ms"), Col("share")],
                    ops, wide=wide, title="slowest operators (onnxruntime profiler)", title_justify="left")

    if result.checks:
        checks = []
        for check in result.checks:
            mark = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[yellow]skip[/]"}[check.status]
            checks.append([check.name if check.name != "latency" else f"latency {check.metric}", mark, check.message])
        print_table([Col("check", "words"), Col("result", "words"), Col("detail", "words")], checks, wide=wide,
                    title="budgets", title_justify="left")
    for note in result.notes:
        if " is a legacy device profile: " not in note:  # already said on stderr before the run
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    state = "[green]PASS[/]" if result.passed else "[bold red]FAIL[/]"
    console.print(f"{state} {len([c for c in result.checks if c.status == 'pass'])}/{len(result.checks)} checks passed")


def _fallback_text(fb: dict) -> str:
    parts = []
    if fb.get("unavailable"):
        parts.append(f"unavailable: {', '.join(fb['unavailable'])}")
    if fb.get("no_nodes"):
        parts.append(f"ran no node: {', '.join(fb['no_nodes'])}")
    if fb.get("cpu_fallback_ops"):
        parts.append(f"{sum(fb['cpu_fallback_ops'].values())} nodes on CPU")
    return "; ".join(parts)
