"""`mnetctl simplify`: onnxsim alone, its outputs checked on real images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import JsonFlag, ModelArg, app, console, print_json

_MB = 1024 * 1024


@app.command()
def simplify(
    model: ModelArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file \\[default: <stem>.sim.onnx next to the input].", show_default=False)] = None,
    check_images: Annotated[Optional[Path], typer.Option("--check-images", help="Real images to compare outputs on \\[default: the shipped calibration images].", show_default=False)] = None,
    samples: Annotated[int, typer.Option("--samples", "-s", help="Number of check images.")] = 8,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Largest allowed |difference| of the logits.")] = 1e-4,
    json_out: JsonFlag = False,
) -> None:
    """onnxsim alone, numerically verified on real images (nothing is written if outputs change)."""
    from ..simplify import simplify_model

    rep = simplify_model(model, output, check_images=check_images, samples=samples, tolerance=tolerance)
    if json_out:
        print_json(rep.as_dict())
        return
    console.print(
        f"[green]wrote[/] {rep.output}  [dim]{rep.nodes_before} -> {rep.nodes_after} nodes, "
        f"{rep.size_before / _MB:.2f} -> {rep.size_after / _MB:.2f} MB, max |diff| of logits {rep.max_abs_diff:.2g} "
        f"on {rep.check_images} images (tolerance {rep.tolerance:g}), {rep.seconds:.1f} s[/]"
    )
