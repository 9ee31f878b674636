"""`mnetctl compare`: an ONNX model under ONNX Runtime against a TFLite checkpoint under LiteRT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import JsonFlag, ModelArg, app, console, err_console, print_json


@app.command("compare")
def compare_cmd(
    model: ModelArg,
    tflite: Annotated[Path, typer.Option("--tflite", help="TFLite checkpoint to run under LiteRT (e.g. the one the model was imported from).", show_default=False)],
    threads: Annotated[int, typer.Option("--threads", "-t", help="Threads for both runtimes.")] = 2,
    iterations: Annotated[int, typer.Option("--iterations", "-i", help="Timed runs per runtime, interleaved.")] = 200,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per runtime first.")] = 20,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", "-d", help="Images (folder, CSV of file,label, or one image) [default: the shipped val sample].", show_default=False),
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="Classify only the first N images.", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Latency (interleaved, same threads, same images) and top-1 of ONNX Runtime vs LiteRT."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ..compare import compare

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err_console, transient=True, disable=json_out or not err_console.is_terminal)
    tasks: dict[str, int] = {}

    def report(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task("classify images" if phase == "classify" else "time (interleaved)", total=total)
        bar.update(tasks[phase], completed=done)

    with bar:
        result = compare(model, tflite, threads=threads, iterations=iterations, warmup=warmup,
                         data=data, limit=limit, progress=report)
    for path, reason in result.failed:
        err_console.print(f"[yellow]unreadable:[/] {path}: {reason}", soft_wrap=True)
    if json_out:
        print_json(result.as_dict())
        return
    table = Table(title=f"{result.host}, {result.threads} threads, {result.iterations} interleaved runs each",
                  title_justify="left")
    for col in ("runtime", "model", "p50 ms", "p90 ms", "mean ms", "top-1"):
        table.add_column(col, justify="left" if col in ("runtime", "model") else "right")
    for side in (result.onnx, result.litert):
        lat = side.latency
        top1 = f"{100 * side.correct / result.labelled:.2f}%" if result.labelled else "-"
        table.add_row(side.runtime, Path(side.model).name,
                      f"{lat.p50_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.mean_ms:.3f}", top1)
    console.print(table)
    console.print(f"[dim]onnxruntime providers: {result.onnx.detail}; litert: {result.litert.detail}[/]")
    console.print(
        f"onnx/litert p50 ratio [bold]{result.ratio_p50:.2f}x[/] (mean {result.ratio_mean:.2f}x); "
        f"top-1 agreement {100 * result.agreement:.1f}% ({result.agree}/{result.images} images)"
    )
    if result.other_load is not None and result.other_load > 0.1:
        err_console.print(
            f"[yellow]note:[/] other processes used {100 * result.other_load:.0f}% of the CPUs while timing;"
            " interleaving keeps the ratio fairer, but re-run on a quiet host for figures to quote",
            soft_wrap=True,
        )
