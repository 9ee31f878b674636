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
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="ONNX Runtime intra-op threads.", show_default=False)] = None,
    min_score: Annotated[float, typer.Option("--min-score", help="Detectors: list and draw the boxes scoring at least this.")] = 0.5,
    draw: Annotated[Optional[Path], typer.Option("--draw", help="Detectors: write the image with its boxes, labels and scores drawn (PNG); with several images, a folder for <name>.png each.", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Classify images: top-k labels with softmax probabilities; detectors: boxes [x0, y0, x1, y1] in pixels with
    label and score (exit 2 if an image cannot be read)."""
    from ..evaluate import predict as run_predict

    results = run_predict(model, images, top=top, threads=threads, min_score=min_score)
    failed = [r for r in results if r.error]
    if draw is not None:
        _draw(results, draw)
    if json_out:
        print_json([r.as_dict() for r in results])
    else:
        for r in results:
            if r.error:
                continue
            console.print(f"[bold]{r.path}[/]")
            for d in getattr(r, "detections", ()):
                box = ", ".join(f"{v:.0f}" for v in d.pixels(*r.size))
                console.print(f"  {100 * d.score:6.2f}%  {d.index:4d}  {d.label:<16} [{box}]")
            for index, label, prob in r.top:
                console.print(f"  {100 * prob:6.2f}%  {index:4d}  {label}")
    for r in results:
        if r.warning:
            err_console.print(f"[yellow]warning:[/] {r.path}: {r.warning}", soft_wrap=True)
    for r in failed:
        err_console.print(f"[yellow]unreadable:[/] {r.path}: {r.error}", soft_wrap=True)
    if failed:
        raise BadInput(f"{len(failed)} of {len(results)} images could not be read")


def _draw(results, draw: Path) -> None:
    from ..draw_boxes import draw_prediction

    done = [r for r in results if not r.error]
    if len(results) == 1:
        if done:
            draw_prediction(done[0].path, done[0], draw)
        return
    if draw.exists() and not draw.is_dir():
        raise BadInput(f"--draw {draw}: with {len(results)} images --draw names a folder")
    draw.mkdir(parents=True, exist_ok=True)
    for r in done:
        draw_prediction(r.path, r, draw / (Path(r.path).stem + ".png"))
