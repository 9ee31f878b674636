"""`mnetctl compare`: an ONNX model under ONNX Runtime against a TFLite checkpoint under LiteRT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import JsonFlag, ModelArg, WideFlag, app, console, err_console, flag_names, print_json
from ._table import Col, print_table

# compare's own spellings of library parameters (the rest come from _app.PARAM_FLAGS)
_FLAGS = {"tflite": "--tflite", "allow_mismatch": "--allow-mismatch"}


@app.command("compare")
def compare_cmd(
    model: ModelArg,
    tflite: Annotated[list[str], typer.Option(
        "--tflite",
        help="TFLite checkpoint to run under LiteRT; repeat it for a checkpoint in several files (feature extractor, then head), "
             "or 'pretrained' for the shipped checkpoint of the model's arch and width.",
        show_default=False)],
    threads: Annotated[int, typer.Option("--threads", "-t", help="Threads for both runtimes.")] = 2,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="What runs the ONNX model: onnxruntime or openvino (OpenVINO's own runtime) \\[default: onnxruntime].", show_default=False)] = None,
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="Timed runs per runtime, interleaved.")] = 200,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per runtime first.")] = 20,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", "-d", help="Images (folder, CSV of file,label, or one image) [default: the shipped val sample].", show_default=False),
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-l", help="Classify only the first N images.", show_default=False)] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Compare even if the TFLite model's input resolution or classes differ.")] = False,
    json_out: JsonFlag = False,
    wide: WideFlag = False,
) -> None:
    """Latency (interleaved, same threads, same images) and top-1 of ONNX Runtime vs LiteRT."""
    from ..compare import compare
    from ._progress import progress_bar

    with flag_names(_FLAGS), progress_bar(enabled=not json_out) as on_progress:
        result = compare(model, tflite if len(tflite) > 1 else tflite[0], threads=threads, iterations=iterations,
                         warmup=warmup, data=data, limit=limit, on_progress=on_progress,
                         allow_mismatch=allow_mismatch, runtime=runtime)
    for path, reason in result.failed:
        err_console.print(f"[yellow]unreadable:[/] {path}: {reason}", soft_wrap=True)
    if json_out:
        print_json(result.as_dict())
        return
    cols = [Col("runtime", "words"), Col("model", "fold", drop=3), Col("p50 ms"), Col("p90 ms", drop=1),
            Col("mean ms", drop=2), Col("top-1")]
    rows = []
    for side in (result.onnx, result.litert):
        lat = side.latency
        top1 = f"{100 * side.correct / result.labelled:.2f}%" if result.labelled else "-"
        rows.append([side.runtime, " + ".join(Path(p).name for p in side.model.split(" + ")),
                     f"{lat.p50_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.mean_ms:.3f}", top1])
    print_table(cols, rows, wide=wide, title=f"{result.host}, {result.threads} threads, {result.iterations} interleaved runs each",
                title_justify="left")
    console.print(f"[dim]{result.onnx.name} runs on: {result.onnx.detail}; litert: {result.litert.detail}[/]")
    console.print(
        f"{'onnx' if result.onnx.name == 'onnxruntime' else result.onnx.name}/litert p50 ratio [bold]{result.ratio_p50:.2f}x[/] (mean {result.ratio_mean:.2f}x); "
        f"top-1 agreement {100 * result.agreement:.1f}% ({result.agree}/{result.images} images)"
    )
    if result.other_load is not None and result.other_load > 0.2:
        err_console.print(
            f"[yellow]note:[/] other processes kept {result.other_load:.1f} cores busy while timing;"
            " interleaving keeps the ratio fairer, but re-run on a quiet host for figures to quote",
            soft_wrap=True,
        )
