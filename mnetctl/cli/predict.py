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
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Segmentation: write the class-index mask (.png); a folder for several images.", show_default=False)] = None,
    draw: Annotated[Optional[Path], typer.Option("--draw", help="Segmentation: write the mask drawn over the image; a folder for several images.", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Classify images (top-k labels with softmax probabilities) or segment them (classes per pixel; --mask, --draw).
    Exit 2 if an image cannot be read."""
    from ..evaluate import predict as run_predict

    results = run_predict(model, images, top=top, threads=threads)
    failed = [r for r in results if r.error]
    if mask is not None or draw is not None:
        _write_pictures(results, mask, draw)
    if json_out:
        print_json([r.as_dict() for r in results])
    else:
        for r in results:
            if r.error:
                continue
            console.print(f"[bold]{r.path}[/]")
            for index, label, pixels, fraction in getattr(r, "summary", lambda: [])():
                console.print(f"  {100 * fraction:6.2f}%  {index:4d}  {label}  [dim]({pixels} pixels)[/]")
            for index, label, prob in r.top:
                console.print(f"  {100 * prob:6.2f}%  {index:4d}  {label}")
    for r in results:
        if r.warning:
            err_console.print(f"[yellow]warning:[/] {r.path}: {r.warning}", soft_wrap=True)
    for r in failed:
        err_console.print(f"[yellow]unreadable:[/] {r.path}: {r.error}", soft_wrap=True)
    if failed:
        raise BadInput(f"{len(failed)} of {len(results)} images could not be read")


def _write_pictures(results, mask: Optional[Path], draw: Optional[Path]) -> None:
    """--mask / --draw: a file for one image, a folder (NAME.png inside) for several."""
    ok = [r for r in results if not r.error]
    if ok and not hasattr(ok[0], "write"):
        raise BadInput("--mask and --draw apply to segmentation models; this model is a classifier")
    several = len(results) > 1

    def target(folder: Optional[Path], r) -> Optional[Path]:
        if folder is None:
            return None
        if not several:
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (Path(r.path).stem + ".png")

    for r in ok:
        for path in r.write(mask=target(mask, r), draw=target(draw, r)):
            err_console.print(f"[green]wrote[/] {path}", soft_wrap=True)
