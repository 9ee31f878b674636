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
    min_score: Annotated[float, typer.Option("--min-score", help="Detectors: list and draw the boxes scoring at least this.")] = 0.5,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Segmentation: write the class-index mask (.png); a folder for several images.", show_default=False)] = None,
    draw: Annotated[Optional[Path], typer.Option("--draw", help="Detectors: the image with its boxes, labels and scores drawn; segmentation: the mask drawn over the image (PNG); a folder for several images.", show_default=False)] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="onnxruntime, litert (.tflite) or openvino \\[default: by the file].", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Classify images (top-k labels with softmax probabilities), detect objects (boxes [x0, y0, x1, y1] in pixels with
    label and score) or segment them (classes per pixel; --mask, --draw). Exit 2 if an image cannot be read."""
    from ..evaluate import predict as run_predict

    results = run_predict(model, images, top=top, threads=threads, min_score=min_score, runtime=runtime)
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
            for d in getattr(r, "detections", ()):
                box = ", ".join(f"{v:.0f}" for v in d.pixels(*r.size))
                console.print(f"  {100 * d.score:6.2f}%  {d.index:4d}  {d.label:<16} [{box}]")
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
    detector = bool(ok) and hasattr(ok[0], "detections")
    if ok and not detector and not hasattr(ok[0], "write"):
        raise BadInput("--mask and --draw apply to detection and segmentation models; this model is a classifier")
    if detector and mask is not None:
        raise BadInput("--mask applies to segmentation models; this model is a detector (use --draw)")
    several = len(results) > 1

    def target(folder: Optional[Path], r) -> Optional[Path]:
        if folder is None:
            return None
        if not several:
            return folder
        if folder.exists() and not folder.is_dir():
            raise BadInput(f"{folder}: with {len(results)} images --mask/--draw name a folder")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (Path(r.path).stem + ".png")

    for r in ok:
        if detector:
            from ..draw_boxes import draw_prediction

            out = target(draw, r)
            draw_prediction(r.path, r, out)
            err_console.print(f"[green]wrote[/] {out}", soft_wrap=True)
            continue
        for path in r.write(mask=target(mask, r), draw=target(draw, r)):
            err_console.print(f"[green]wrote[/] {path}", soft_wrap=True)
