"""`mnetctl quantize` (static int8 with real calibration images) and `mnetctl simplify` (onnxsim, verified)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import JsonFlag, ModelArg, app, console, err_console, print_json

_MB = 1024 * 1024


@app.command()
def quantize(
    model: ModelArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file \\[default: <stem>.int8.onnx next to the input].", show_default=False)] = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration images: a folder, a CSV or an image \\[default: the shipped 100 calibration images].", show_default=False)] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="Calibration: minmax | entropy | percentile \\[default: per architecture].", show_default=False)] = None,
    per_channel: Annotated[Optional[bool], typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel or per tensor \\[default: per architecture].", show_default=False)] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="qdq (QuantizeLinear/DequantizeLinear pairs) | qoperator (QLinearConv, ...) \\[default: qdq].", show_default=False)] = None,
    activations: Annotated[Optional[str], typer.Option("--activations", help="Activation type: uint8 | int8 \\[default: uint8].", show_default=False)] = None,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Calibrate on the first N images.")] = 100,
    keep_float: Annotated[Optional[list[str]], typer.Option("--keep-float", help="Keep nodes whose name matches this glob in float (repeatable), e.g. 'blocks.*.se.*'.", show_default=False)] = None,
    weight_grid: Annotated[Optional[str], typer.Option("--weight-grid", help="Weights imported from an 8-bit checkpoint: channel (per-channel multiples of its grid step, zero point 0) | exact (its own per-tensor grid) | off \\[default: channel].", show_default=False)] = None,
    moving_average: Annotated[Optional[bool], typer.Option("--moving-average/--no-moving-average", help="minmax: mean of per-batch (10 images) ranges instead of the extremes \\[default: per architecture].", show_default=False)] = None,
    reduce_range: Annotated[Optional[bool], typer.Option("--reduce-range/--full-range", help="7-bit weights, for x86 CPUs without VNNI \\[default: full range].", show_default=False)] = None,
    eval_data: Annotated[Optional[Path], typer.Option("--eval", help="Labelled images for the before/after report \\[default: the shipped val sample].", show_default=False)] = None,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Skip the before/after evaluation.")] = False,
    eval_limit: Annotated[Optional[int], typer.Option("--eval-limit", help="Evaluate on the first N images only.", show_default=False)] = None,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Fail (exit 1, nothing written) if top-1 drops by more than this many points.", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Static int8 quantization (onnxsim + ORT pre-processing + calibration on real images), with a before/after report."""
    from ..errors import BadInput
    from ..quantize import DEFAULT_VAL, quantize_model

    if no_eval and (eval_data is not None or max_drop is not None):
        raise BadInput("--no-eval cannot be combined with --eval or --max-drop")
    rep = quantize_model(
        model, output, calib, method=method, per_channel=per_channel, fmt=fmt, activations=activations,
        samples=samples, eval_data=None if no_eval else (eval_data or DEFAULT_VAL), progress=not json_out,
        keep_float=keep_float, eval_limit=eval_limit, max_drop=max_drop,
        weight_grid=weight_grid, moving_average=moving_average, reduce_range=reduce_range,
    )
    if rep.calib_failed:
        err_console.print(f"[yellow]warning:[/] {rep.calib_failed} calibration image(s) could not be read and were skipped")
    if json_out:
        print_json(rep.as_dict())
        return
    _print_quant(rep)


def _print_quant(rep) -> None:
    from rich.table import Table

    s = rep.settings
    console.print(f"[green]wrote[/] {rep.output}")
    console.print(
        f"[dim]{rep.arch}: {s['fmt']} {s['method']}{' moving-average' if s['moving_average'] and s['method'] == 'minmax' else ''}, "
        f"{s['weights']} weights ({rep.weights_on_checkpoint_grid} on their checkpoint grid: {s['weight_grid']}; "
        f"others {'per-channel' if s['per_channel'] else 'per-tensor'}), {s['activations']} activations; "
        f"calibrated on {rep.calib_samples} images of {rep.calib} (sha256 {rep.calib_sha256[:12]}); "
        f"{len(rep.nodes_kept_float)} node(s) kept float[/]"
    )
    table = Table(title_justify="left")
    for col in ("", "float", "int8", "change"):
        table.add_column(col, justify="right")
    table.add_row("size", f"{rep.size_before / _MB:.2f} MB", f"{rep.size_after / _MB:.2f} MB", f"{rep.size_ratio:.2f}x smaller")
    if rep.top1_before is not None:
        table.add_row("top-1", f"{100 * rep.top1_before:.2f}%", f"{100 * rep.top1_after:.2f}%", f"{-rep.top1_drop:+.2f} pts")
        table.add_row("top-5", f"{100 * rep.top5_before:.2f}%", f"{100 * rep.top5_after:.2f}%",
                      f"{100 * (rep.top5_after - rep.top5_before):+.2f} pts")
        table.add_row("top-1 agreement", "", f"{100 * rep.agreement:.1f}%", f"on {rep.eval_n} images")
    table.add_row("time", "", f"{rep.seconds_quantize:.1f} s", f"+ {rep.seconds_eval:.1f} s eval" if rep.top1_before is not None else "")
    console.print(table)


@app.command()
def simplify(
    model: ModelArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file \\[default: <stem>.sim.onnx next to the input].", show_default=False)] = None,
    check_images: Annotated[Optional[Path], typer.Option("--check-images", help="Real images to compare outputs on \\[default: the shipped calibration images].", show_default=False)] = None,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Number of check images.")] = 8,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Largest allowed |difference| of the logits.")] = 1e-4,
    json_out: JsonFlag = False,
) -> None:
    """onnxsim alone, numerically verified on real images (nothing is written if outputs change)."""
    from ..quantize import simplify_model

    rep = simplify_model(model, output, check_images=check_images, samples=samples, tolerance=tolerance)
    if json_out:
        print_json(rep.as_dict())
        return
    console.print(
        f"[green]wrote[/] {rep.output}  [dim]{rep.nodes_before} -> {rep.nodes_after} nodes, "
        f"{rep.size_before / _MB:.2f} -> {rep.size_after / _MB:.2f} MB, max |diff| of logits {rep.max_abs_diff:.2g} "
        f"on {rep.check_images} images (tolerance {rep.tolerance:g}), {rep.seconds:.1f} s[/]"
    )
