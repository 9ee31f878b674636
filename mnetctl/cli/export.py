"""`mnetctl export`: an ONNX model as a TFLite file (full-integer int8, mixed or float32), optionally checked for the Edge TPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInput
from ._app import JsonFlag, app, console, print_json


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="ONNX model file (or a .tflite file with --check).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output format: tflite.")] = "tflite",
    precision: Annotated[str, typer.Option("--precision", help="auto (mixed for a quantized model, int8 with --check edgetpu, else fp32) | int8 (full integer) | mixed (int8 where the QDQ model is, float where it kept layers float) | fp32.")] = "auto",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file \\[default: <stem>.tflite next to the input].", show_default=False)] = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Images for the ranges of layers the int8 model kept float \\[default: those quantize used].", show_default=False)] = None,
    check: Annotated[Optional[str], typer.Option("--check", help="edgetpu: check the file against the Edge TPU compiler's rules (exit 1 if it breaks them).", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Write a TFLite FlatBuffer of an mnetctl classifier (metadata inside, for LiteRT eval/predict)."""
    from ._edgetpu import gate, show_check

    if fmt != "tflite":
        raise BadInput(f"--format must be tflite, got {fmt!r}")
    if check not in (None, "edgetpu"):
        raise BadInput(f"--check must be edgetpu, got {check!r}")
    if model.suffix.lower() == ".tflite":
        if check is None:
            raise BadInput(f"{model} is already a TFLite file", "add --check edgetpu to check it")
        rep, _ = show_check(model, json_out)
        gate(rep)
        return
    from ..export.tflite import export_tflite, read_tflite_meta
    from ._progress import progress_bar

    out = output if output is not None else model.with_suffix(".tflite")
    with progress_bar(not json_out) as on_progress:
        path = export_tflite(model, out, precision, on_progress=on_progress, calib=calib, target=check)
    meta = read_tflite_meta(path)
    info = {"output": str(path), "precision": meta.get("mnetctl.precision"), "bytes": path.stat().st_size,
            "source": str(model), "source_bytes": model.stat().st_size}
    if check is None:
        if json_out:
            print_json(info)
        else:
            console.print(f"[green]wrote[/] {path}  [dim]{info['precision']}, {info['bytes'] / 1e6:.2f} MB "
                          f"(ONNX {info['source_bytes'] / 1e6:.2f} MB), metadata in its TFLite metadata 'mnetctl'[/]")
        return
    if not json_out:
        console.print(f"[green]wrote[/] {path}  [dim]{info['precision']}, {info['bytes'] / 1e6:.2f} MB[/]")
    rep, _ = show_check(path, json_out, extra=info)
    gate(rep)
