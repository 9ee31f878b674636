"""`mnetctl predict`: top-k classes with probabilities for images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInput
from ._app import JsonFlag, ModelArg, app, console, err_console, print_json


@app.command()
def predict(
    model: ModelArg,
    images: Annotated[list[Path], typer.Argument(help="Image files (or folders of images).", show_default=False)],
    top: Annotated[int, typer.Option("--top", "-k", help="How many classes to list per image.")] = 5,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="Runtime threads (ONNX Runtime intra-op).", show_default=False)] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="onnxruntime, litert (.tflite) or openvino \\[default: by the file].", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Classify images: top-k labels with softmax probabilities (exit 2 if an image cannot be read)."""
    from ..evaluate import predict as run_predict

    results = run_predict(model, images, top=top, threads=threads, runtime=runtime)
    failed = [r for r in results if r.error]
    if json_out:
        print_json([r.as_dict() for r in results])
    else:
        for r in results:
            if r.error:
                continue
            console.print(f"[bold]{r.path}[/]")
            for index, label, prob in r.top:
                console.print(f"  {100 * prob:6.2f}%  {index:4d}  {label}")
    for r in results:
        if r.warning:
            err_console.print(f"[yellow]warning:[/] {r.path}: {r.warning}", soft_wrap=True)
    for r in failed:
        err_console.print(f"[yellow]unreadable:[/] {r.path}: {r.error}", soft_wrap=True)
    if failed:
        raise BadInput(f"{len(failed)} of {len(results)} images could not be read")
