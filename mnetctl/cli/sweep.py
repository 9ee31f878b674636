"""`mnetctl sweep`: variants -> accuracy/latency Pareto frontier (+ selection under a budget)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from ..errors import BadInput, GateFailed
from ._app import WideFlag, app, console, err_console, flag_names
from ._table import Col, print_table


def _split(flag: str, text: str | None, cast=str) -> list | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise BadInput(f"{flag}: empty list {text!r}")
    try:
        return [cast(t) for t in items]
    except ValueError:
        kind = {float: "numbers", int: "integers"}.get(cast, "names")
        raise BadInput(f"{flag} {text!r} is not a comma-separated list of {kind}") from None


@app.command()
def sweep(
    arch: Annotated[Optional[str], typer.Option("--arch", help="Comma list, e.g. v1,v2 [default: every arch with weights].", show_default=False)] = None,
    widths: Annotated[Optional[str], typer.Option("--widths", help="Comma list, e.g. 0.25,0.5,0.75,1.0 [default: the checkpoints' widths].", show_default=False)] = None,
    resolutions: Annotated[Optional[str], typer.Option("--resolutions", help="Comma list, e.g. 128,160,192,224 [default: each checkpoint's trained resolution].", show_default=False)] = None,
    precisions: Annotated[str, typer.Option("--precisions", help="Comma list of fp32,int8.")] = "fp32,int8",
    weights: Annotated[str, typer.Option("--weights", help="pretrained | random.")] = "pretrained",
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Evaluation images [default: the shipped val set].", show_default=False)] = None,
    train_data: Annotated[Optional[Path], typer.Option("--train-data", help="Your classes: train a head per variant on DIR/<class name>/ (pretrained backbones; early stopping on a 20% split), calibrate int8 on it.", show_default=False)] = None,
    val_data: Annotated[Optional[Path], typer.Option("--val-data", help="With --train-data: the images each variant is scored on, DIR/<class name>/ with the same classes.", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-l", help="Evaluate on the first N images only.", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", "-D", help="Device profile (name or TOML path) to bench on; a comma list benches every variant on each and puts them on one frontier, e.g. host,host-litert,host-openvino.")] = "host",
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="Run every device on this runtime: onnxruntime, litert or openvino \\[default: each profile's].", show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="Intra-op threads [default: the profile's].", show_default=False)] = None,
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="Measured runs per variant.")] = 100,
    metric: Annotated[str, typer.Option("--metric", help="Latency statistic for the frontier and budget: p50, p90, p95, p99, mean.")] = "p50",
    select: Annotated[bool, typer.Option("--select", help="Write the most accurate variant (random weights: the most MACs) within --budget-ms to OUT/selected.onnx; exit 1 if none fits.")] = False,
    budget_ms: Annotated[Optional[float], typer.Option("--budget-ms", help="Latency budget for --select, on --metric [default: the profile's budget, on the profile's statistic].", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for sweep.json, pareto.png, report.md.")] = Path("results"),
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Artifact cache [default: ~/.cache/mnetctl/sweep or $MNETCTL_CACHE].", show_default=False)] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore cached artifacts and redo every stage.")] = False,
    max_load: Annotated[float, typer.Option("--max-load", help="Take a timing round again when other processes used more than this many cores during it (0.2 = a fifth of one core).")] = 0.2,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Stop taking loaded rounds again after this long; later loaded rounds are kept and flagged.")] = 60.0,
    sequential: Annotated[bool, typer.Option("--sequential", help="Bench variants one after another instead of interleaved (no intervals or ties; for comparison).")] = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="Run on the Ray cluster at HOST:PORT: benches on the nodes serving each device, the rest on any node (needs mnetctl\\[cluster]).", show_default=False)] = None,
    env: Annotated[Optional[str], typer.Option("--env", help="Python environment (name or path) the benches run in, overriding the profile's (see mnetctl env create).", show_default=False)] = None,
    wide: WideFlag = False,
) -> int:
    """Build (or with --train-data train), quantize, evaluate and benchmark every variant; flag the Pareto frontier;
    optionally select one.

    Exit codes: 0 done, 1 nothing fits the --select budget, 2 bad input, 3 a device or EP is missing, 5 a device's
    bench failed on the cluster (sweep.json lists it with the node and the reason)."""
    from ._progress import progress_bar

    from ..fsutil import check_writable
    from ..sweep import (SweepSettings, plan_variants, prepare, run_sweep, select_best, selection_budget,
                         task_of_variants, write_outputs)

    if budget_ms is not None and not select:
        raise BadInput("--budget-ms needs --select (it is the latency budget the selection applies)")
    if cache is not None and cache.exists() and not cache.is_dir():
        raise BadInput(f"--cache {cache} is a file, not a folder", "choose another --cache")
    variants, skipped = plan_variants(_split("--arch", arch), _split("--widths", widths, float),
                                      _split("--resolutions", resolutions, int), _split("--precisions", precisions), weights,
                                      train=train_data is not None)
    for s in skipped:
        err_console.print(f"[yellow]skip[/] {s}")
    # the outputs must not land in or on what the sweep reads: the images, a profile file
    devices = _split("--device", device)
    check_writable(out / "sweep.json", inputs=(data, train_data, val_data, *[Path(d) for d in devices if Path(d).is_file()]),
                   flag="--out")
    if select and len(devices) > 1:
        raise BadInput("--select takes one --device (a selection is for one device)")
    if cluster and env:
        raise BadInput("--env and --cluster: on a cluster each device's profile names its environment")
    settings = SweepSettings(weights=weights, data=data, train_data=train_data, val_data=val_data, limit=limit,
                             device=devices if len(devices) > 1 else devices[0], runtime=runtime, threads=threads,
                             iterations=iterations, metric=metric, fresh=fresh, sequential=sequential,
                             max_load=max_load, max_seconds=max_seconds, task=task_of_variants(variants))
    with flag_names({"max_load": "--max-load", "max_seconds": "--max-seconds"}):
        plan = prepare(settings)  # every bad value fails here, before any progress output
    metric = plan.settings.metric
    budget = selection_budget(plan.profile, budget_ms, metric) if select else None  # --budget-ms on --metric, else the profile's
    if select and budget is None:
        raise BadInput("--select needs --budget-ms (the profile has no latency budget)")
    runner = None
    if cluster:
        from ..cluster import check_address
        from ..runners import ray as rr

        rr.connect(check_address(cluster, "--cluster"))
        runner = rr.RayRunner()
        runner.check_devices([p.name for p in plan.profiles])
    elif env:
        from ..runners import LocalRunner

        runner = LocalRunner(env=env)
    with progress_bar(transient=False) as on_progress:
        result = run_sweep(variants, plan, cache_dir=cache, on_progress=on_progress, runner=runner)
    result.skipped = skipped
    if budget is not None:
        result.budget_ms, result.budget_metric = budget
        result.selected = select_best(result.variants, *budget)
    paths = write_outputs(result, out, metric, select=select)
    selected_path = paths.get("selected")

    _print_table(result, device, metric, wide)
    for f in result.failed:
        err_console.print(f"[bold red]failed:[/] {f['variant']} on {f['device']}: {f['reason']}", soft_wrap=True)
    for r in result.variants:
        for a in r.failed_attempts:
            err_console.print(f"[yellow]retried:[/] {r.name} on {r.device}: node {a['node'][:12]} lost ({a['reason']}); "
                              f"benched on node {(r.node or '')[:12]}", soft_wrap=True)
    if result.timing.get("loaded_rounds"):
        err_console.print(f"[yellow]note:[/] {result.timing['loaded_rounds']} timing rounds were kept although other "
                          f"processes used more than {max_load:g} cores (the {max_seconds:g} s cap ran out); "
                          "absolute times are inflated, the ranking holds better", soft_wrap=True)
    console.print(f"wrote {paths['json']}, {paths['plot']}, {paths['report']}  [dim]({result.seconds:.0f} s)[/]")
    if result.failed:
        from ..errors import StageFailed

        devices_failed = sorted({f["device"] for f in result.failed})
        raise StageFailed(f"the benches on {', '.join(devices_failed)} failed ({len(result.failed)} variants); "
                          f"the others are in {paths['json']}")
    if budget is not None:
        limit, on = budget
        if result.selected is None:
            raise GateFailed(f"no variant fits the budget of {limit:g} ms ({on}); fastest is "
                             f"{min(r.latency(on) for r in result.variants):.3f} ms")
        chosen = result.selected
        why = (f"{chosen.headline} {_pct(chosen.score)}" if chosen.score is not None
               else f"{chosen.macs / 1e6:.1f} M MACs, random weights")
        console.print(f"[green]selected[/] {chosen.name} ({why}, "
                      f"{on} {result.selected.latency(on):.3f} ms) -> {selected_path}")
    return 0


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _print_table(result, device: str, metric: str, wide: bool) -> None:
    """One row per variant, fastest first; the latency column of --metric is always shown."""
    headline = getattr(result.variants[0], "headline", "top1") if result.variants else "top1"
    cols = [Col("variant", "words"), Col("MACs M", drop=3), Col("MB", drop=2),
            Col("top-1" if headline == "top1" else headline), Col("top-5" if headline == "top1" else "-", drop=4),
            Col("p50 ms", drop=0 if metric == "p50" else 1), Col("p50 95% CI", drop=3),
            Col("p90 ms", drop=0 if metric == "p90" else 1), Col("load", drop=4), Col("x fp32", drop=2),
            Col("front"), Col("tie", drop=1), Col("cached", "words", drop=5)]
    rows = []
    several = len({getattr(r, "device", None) for r in result.variants}) > 1
    for r in sorted(result.variants, key=lambda r: (getattr(r, "device", None) or "", r.latency(metric))):
        hits = [k for k, v in r.cached.items() if v]
        cached = "all" if len(hits) == len(r.cached) else (",".join(hits) or "-")
        ci, load, ties = getattr(r, "p50_ci95_ms", None), getattr(r, "other_load", None), getattr(r, "ties_with", [])
        rows.append([r.name + (f" @{r.device}" if several else ""), f"{r.macs / 1e6:.1f}", f"{r.size_mb:.2f}",
                     _pct(getattr(r, "score", r.top1)), _pct(r.top5) if headline == "top1" else "",
                     f"{r.p50_ms:.3f}", "" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}", f"{r.p90_ms:.3f}",
                     "" if load is None else f"{load:.2f}", "" if r.speedup is None else f"{r.speedup:.2f}x",
                     "[red]*[/]" if r.pareto else "", f"~{len(ties)}" if ties else "", cached])
    notes = []
    if any(getattr(r, "ties_with", None) for r in result.variants):
        notes.append("tie ~N: p50 95% interval overlaps N other variants' (order not resolved)")
    if any(r.speedup is not None for r in result.variants):
        paired = getattr(result, "timing", {}).get("method") == "interleaved"
        notes.append("x fp32: int8 speed-up over its fp32 twin" + (" (same interleaved rounds)" if paired
                                                                    else " (each benched alone)"))
    if any(r.top1 is None for r in result.variants):
        notes.append("random weights: latency and size only; front = smallest model at its latency")
    if any(getattr(r, "other_load", None) is not None for r in result.variants):
        notes.append("load: other processes' CPU use while timed, in cores")
    print_table(cols, rows, wide=wide, title=f"sweep on profile '{device}' ({metric})", header_style="bold",
                caption="; ".join(notes) or None, caption_justify="left")
