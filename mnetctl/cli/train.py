"""`mnetctl train`: a new classifier head on a frozen pretrained MobileNet, from DATA/<class name>/ folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInput
from ._app import JsonFlag, app, console, err_console, print_json


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Argument(help="Training images: DATA/<class name>/*.jpg (class index = sorted folder names).", show_default=False)],
    arch: Annotated[str, typer.Option("--arch", help="Backbone architecture (a shipped pretrained checkpoint): v1, v2, v3-large, v3-small.")] = "v2",
    width: Annotated[float, typer.Option("--width", "-w", help="Width multiplier.")] = 1.0,
    resolution: Annotated[int, typer.Option("--resolution", "-r", help="Input side in pixels.")] = 224,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output model \\[default: trained-<arch>-<width>-<res>.onnx].", show_default=False)] = None,
    val: Annotated[Optional[Path], typer.Option("--val", help="Validation images DIR/<class name>/ \\[default: a split of DATA].", show_default=False)] = None,
    val_split: Annotated[float, typer.Option("--val-split", help="Fraction of each class held out for validation (without --val).")] = 0.2,
    epochs: Annotated[int, typer.Option("--epochs", help="Most epochs (early stopping keeps the best validation epoch).")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Feature vectors per optimiser step.")] = 32,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (cosine schedule) \\[default: 0.001 adam, 0.01 sgd].", show_default=False)] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam | sgd (momentum 0.9).")] = "adam",
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", help="Label smoothing of the cross-entropy.")] = 0.1,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout on the features during training.")] = 0.2,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="L2 weight decay.")] = 1e-4,
    hidden: Annotated[int, typer.Option("--hidden", help="Units of one hidden ReLU layer (0: none).")] = 0,
    patience: Annotated[int, typer.Option("--patience", help="Stop after this many epochs without a better validation score.")] = 5,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Random resized crops and flips of each training image.")] = True,
    views: Annotated[int, typer.Option("--views", help="Views per training image with --augment (the plain image + views-1 augmented).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, the views, the init and the batches.")] = 0,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Feature cache folder \\[default: $MNETCTL_CACHE/features or ~/.cache/mnetctl/features].", show_default=False)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compute every feature again and store none.")] = False,
    teacher: Annotated[Optional[Path], typer.Option("--teacher", help="Distil from this classifier (its label names must be the classes, e.g. a bigger model made by `mnetctl train`); also trains without it and reports both.", show_default=False)] = None,
    unlabeled: Annotated[Optional[Path], typer.Option("--unlabeled", help="Images without labels (any layout) that only the --teacher labels.", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="With --teacher: softmax temperature of the teacher's and the student's outputs in the distillation term \\[default: 2].", show_default=False)] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", help="With --teacher: weight of the hard-label loss; 1 - alpha goes to T^2 * KL(teacher || student) \\[default: 0.5].", show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="ONNX Runtime intra-op threads \\[default: all cores].", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Transfer learning: features of the pretrained backbone (cached), a new head trained with numpy, the model exported."""
    from ..builder import save_model
    from ..fsutil import check_writable
    from ..specs import default_filename, resolve_arch
    from ..train import HeadSettings, train
    from ._progress import progress_bar

    if teacher is None and (temperature is not None or alpha is not None or unlabeled is not None):
        given = next(f for f, v in (("--unlabeled", unlabeled), ("--temperature", temperature), ("--alpha", alpha))
                     if v is not None)
        raise BadInput(f"{given} needs --teacher (it sets up distillation from a teacher model)")
    out = output or Path("trained-" + default_filename(resolve_arch(arch), width, resolution))
    check_writable(out, inputs=(data, val, teacher, unlabeled))
    settings = HeadSettings(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                            label_smoothing=label_smoothing, dropout=dropout, weight_decay=weight_decay,
                            hidden=hidden, patience=patience, seed=seed)
    with progress_bar(not json_out) as on_progress:
        result = train(data, arch, width, resolution, val=val, val_split=val_split, views=views, augment=augment,
                       settings=settings, cache_dir=None if no_cache else (cache or "default"), threads=threads,
                       teacher=teacher, unlabeled=unlabeled,
                       temperature=2.0 if temperature is None else temperature, alpha=0.5 if alpha is None else alpha,
                       on_progress=on_progress)
    save_model(result.model, out)
    for path, reason in result.failed:
        err_console.print(f"[yellow]unreadable (skipped):[/] {path}: {reason}", soft_wrap=True)
    if json_out:
        print_json({"output": str(out), **result.as_dict()})
        return
    b = result.head.best
    console.print(
        f"[green]wrote[/] {out}  [dim]{len(result.classes)} classes ({', '.join(result.classes)}) | "
        f"{result.train_images} train images x {result.views} views, {result.val_images} val | "
        f"best epoch {result.head.best_epoch}/{len(result.head.history)}: val top-1 {100 * b.val_acc:.2f}% "
        f"(loss {b.val_loss:.3f}), train {100 * b.train_acc:.2f}% | features {result.feature_seconds:.1f} s "
        f"({result.extracted} computed, {result.cached} cached), head {result.head_seconds:.1f} s"
        f"{f' | {len(result.failed)} unreadable skipped' if result.failed else ''}[/]",
        soft_wrap=True)
    d = result.distill
    if d is not None:
        gain = 100 * (d["distilled_val_accuracy"] - d["labels_only_val_accuracy"])
        more = f", {d['unlabeled_images']} unlabeled images" if d["unlabeled_images"] else ""
        console.print(
            f"distillation (T {d['temperature']:g}, alpha {d['alpha']:g}{more}): "
            f"val top-1 {100 * d['distilled_val_accuracy']:.2f}% with the teacher vs "
            f"{100 * d['labels_only_val_accuracy']:.2f}% from the labels alone ({gain:+.2f} points); "
            f"teacher {100 * d['teacher_val_accuracy']:.2f}%  [dim](the written model is the distilled one)[/]",
            soft_wrap=True)
