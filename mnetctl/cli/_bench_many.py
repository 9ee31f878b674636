"""`mnetctl bench A.onnx B.onnx ...`: several models timed interleaved in one run, each against the first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BadInput
from ._app import console, err_console, print_json
from ._table import Col, print_table

SCHEMA = "mnetctl.bench-many/1"
DEFAULT_ITERATIONS = 100
DEFAULT_WARMUP = 10
RUNS_PER_BLOCK = 10  # timed runs of one model before the next model's turn
BLOCK_WARMUP = 2  # untimed runs at the start of each block (the model's caches after the others ran)

# bench options that describe one model's run on a profile; with several models they are refused
_SINGLE_ONLY = {
    "device": "--device", "profile": "--profile", "ep": "--ep", "ep_option": "--ep-option",
    "allow_fallback": "--allow-fallback", "duration": "--duration", "batch": "--batch", "budget_ms": "--budget-ms",
    "budget_metric": "--budget-metric", "budget_size_mb": "--budget-size-mb", "min_top1": "--min-top1",
    "top1": "--top1", "baseline": "--baseline", "op_profile": "--op-profile", "junit_path": "--junit",
    "markdown_path": "--markdown",
}


def bench_many(models: list[Path], options: dict[str, Any]) -> int:
    """Run `bench` on several models; `options` are bench_cmd's parameters by name."""
    from .. import __version__
    from ..bench import check_runs
    from ..compare import onnx_runnable
    from ..fsutil import check_writable
    from ..hostinfo import host_info
    from ..interleave import interleave, rounds_for
    from ..modelio import check_model_path
    from ..runtime import check_threads
    from ._progress import progress_bar

    for key, flag in _SINGLE_ONLY.items():
        if options.get(key) not in (None, False, []):
            raise BadInput(f"{flag} applies to one model; {len(models)} were given", "bench one model at a time for it")
    for model in models:
        check_model_path(model)
    threads = check_threads(options["threads"]) if options.get("threads") is not None else None
    iterations = DEFAULT_ITERATIONS if options.get("iterations") is None else options["iterations"]
    warmup = DEFAULT_WARMUP if options.get("warmup") is None else options["warmup"]
    check_runs(iterations, "iterations", 1)  # the CLI's table names the flags
    check_runs(warmup, "warmup", 0)
    json_path = options.get("json_path")
    to_stdout = json_path == "-"
    if json_path and not to_stdout:
        check_writable(Path(json_path), inputs=tuple(models), flag="--json")

    names = _names(models)
    runnables = [onnx_runnable(m, threads, name=n) for m, n in zip(models, names)]
    runs = min(RUNS_PER_BLOCK, iterations)
    with progress_bar(enabled=not (options.get("quiet") or to_stdout)) as on_progress:
        timed = interleave(runnables, rounds=rounds_for(iterations, runs), runs=runs, block_warmup=BLOCK_WARMUP,
                           warmup=warmup, on_progress=on_progress)
    import onnxruntime as ort

    doc = {"schema": SCHEMA, "mnetctl_version": __version__, "host": host_info(), "onnxruntime": ort.__version__,
           "threads": threads, **timed.as_dict()}
    for entry, model in zip(doc["models"], models):
        entry["model"] = str(model)
    if to_stdout:
        print_json(doc)
    elif json_path:
        from ..fsutil import write_text
        import json

        write_text(Path(json_path), json.dumps(doc, indent=2) + "\n")
    if not to_stdout:
        _print(doc, quiet=bool(options.get("quiet")), wide=bool(options.get("wide")))
    return 0


def _names(models: list[Path]) -> list[str]:
    """File names, or full paths where two models share a file name."""
    short = [m.name for m in models]
    return short if len(set(short)) == len(short) else [str(m) for m in models]


def _print(doc: dict, quiet: bool, wide: bool = False) -> None:
    first = doc["models"][0]["name"]
    if quiet:
        for m in doc["models"]:
            console.print(f"{m['name']}: p50 {m['p50_ms']:.3f} ms, {m['ratio_p50']:.2f}x {first}", soft_wrap=True)
        return
    host = doc["host"]
    title = (f"{host.get('cpu')} ({host.get('cores_logical')} cores), onnxruntime {doc['onnxruntime']}, "
             f"threads {doc['threads'] or 'default'}: {doc['rounds']} interleaved rounds of "
             f"{doc['runs_per_block']} runs per model")
    cols = [Col("model", "fold"), Col("p50 ms"), Col("p50 95% CI", drop=2), Col("p90 ms", drop=1), Col("mean ms", drop=3),
            Col("x p50"), Col("x mean", drop=3)]
    rows = []
    for m in doc["models"]:
        lo, hi = m["p50_ci95_ms"]
        rows.append([m["name"], f"{m['p50_ms']:.3f}", f"{lo:.3f}-{hi:.3f}", f"{m['p90_ms']:.3f}", f"{m['mean_ms']:.3f}",
                     f"{m['ratio_p50']:.3f}", f"{m['ratio_mean']:.3f}"])
    print_table(cols, rows, wide=wide, title=title, title_justify="left", caption=f"x = ratio to {first}", caption_justify="left")
    load = doc.get("other_load")
    if load is not None and load > 0.2:
        err_console.print(f"[yellow]note:[/] other processes kept {load:.1f} cores busy while timing; the ratios "
                          "hold better than the absolute times", soft_wrap=True)
