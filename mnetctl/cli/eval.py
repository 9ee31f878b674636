"""`mnetctl eval`: top-1 / top-5 of a model on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import JsonFlag, ModelArg, WideFlag, app, err_console, print_json
from ._table import Col, print_table


@app.command("eval")
def eval_cmd(
    model: ModelArg,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", "-d", help="Image folder (DIR/<wnid>/*.JPEG or DIR/<wnid>_*.JPEG), a CSV of file,label, or an image \\[default: the shipped data/imagenet-sample/val].", show_default=False),
    ] = None,
    masks: Annotated[
        Optional[Path],
        typer.Option("--masks", "-m", help="Segmentation: folder of ground-truth masks (NAME.png or NAME_mask.png per image NAME) \\[default: NAME_mask.* beside each image, or ../masks/].", show_default=False),
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-l", help="Use only the first N images (sorted order).", show_default=False)] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Images per inference call.")] = 32,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="Runtime threads (ONNX Runtime intra-op) \\[default: the runtime's].", show_default=False)] = None,
    annotations: Annotated[Optional[Path], typer.Option("--annotations", help="Detectors: COCO instances JSON of the --data images (COCO mAP via pycocotools) \\[default with the default images: data/coco-10/instances.json].", show_default=False)] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="onnxruntime, litert (.tflite) or openvino \\[default: by the file].", show_default=False)] = None,
    json_out: JsonFlag = False,
    wide: WideFlag = False,
) -> None:
    """The task's metric: top-1/top-5 for classifiers, COCO mAP for detectors (with --annotations), mIoU and pixel
    accuracy for segmentation (with --masks); preprocessing comes from the model's metadata."""
    from ..evaluate import evaluate
    from ._progress import progress_bar

    with progress_bar(not json_out) as on_progress:
        result = evaluate(model, data, limit=limit, batch=batch, threads=threads, on_progress=on_progress,
                          annotations=annotations, truth=masks, runtime=runtime)
    for path, reason in result.failed:
        err_console.print(f"[yellow]unreadable:[/] {path}: {reason}", soft_wrap=True)
    if result.nonfinite:
        err_console.print(f"[yellow]warning:[/] {model} output NaN or inf for {result.nonfinite} of {result.n} images; "
                          "its scores mean nothing", soft_wrap=True)
    if json_out:
        print_json(result.as_dict())
        return
    if result.task == "detection":
        m = result.metrics
        cols = [Col("mAP@[.5:.95]"), Col("mAP@.5"), Col("mAP@.75", drop=1), Col("images"), Col("detections", drop=2),
                Col("unreadable", drop=3), Col("images/s", drop=4)]
        row = [f"{m['map']:.4f}", f"{m['map50']:.4f}", f"{m['map75']:.4f}", str(result.n), str(m["detections"]),
               str(len(result.failed)), f"{result.images_per_s:.1f}"]
        print_table(cols, [row], wide=wide, title=f"{model} on {result.data}", title_justify="left")
        return
    if result.task == "segmentation":
        m = result.metrics
        cols = [Col("mIoU"), Col("pixel acc"), Col("pixel IoU"), Col("images"), Col("unreadable", drop=1), Col("seconds", drop=2)]
        row = [f"{100 * m['miou']:.2f}%", f"{100 * m['pixel_accuracy']:.2f}%", f"{100 * m['pixel_iou']:.2f}%", str(result.n),
               str(len(result.failed)), f"{result.seconds:.2f}"]
        print_table(cols, [row], wide=wide, title=f"{model} on {result.data}", title_justify="left")
        per_class = "  ".join(f"{name} {100 * v:.1f}%" for name, v in m["iou"].items())
        err_console.print(f"[dim]IoU per class: {per_class}[/]", soft_wrap=True)
        return
    cols = [Col("top-1"), Col("top-5"), Col("images"), Col("unreadable", drop=1), Col("images/s", drop=2), Col("seconds", drop=3)]
    row = [f"{100 * result.top1:.2f}%", f"{100 * result.top5:.2f}%", str(result.n), str(len(result.failed)),
           f"{result.images_per_s:.1f}", f"{result.seconds:.2f}"]
    print_table(cols, [row], wide=wide, title=f"{model} on {result.data}", title_justify="left")
