"""`mnetctl inspect`: per-layer MACs/params of any ONNX classifier."""

from __future__ import annotations

from typing import Annotated

import typer
from ._app import JsonFlag, ModelArg, WideFlag, app, console, print_json
from ._table import Col, print_table


@app.command()
def inspect(
    model: ModelArg,
    as_json: JsonFlag = False,
    all_nodes: Annotated[bool, typer.Option("--all", help="List every node, not only conv/fc layers.")] = False,
    wide: WideFlag = False,
) -> None:
    """Per-layer table (name, op, output shape, MACs, params) and totals."""
    from ..analysis import analyze
    from ..meta import PREFIX
    from ..modelio import load_onnx

    proto = load_onnx(model)
    stats = analyze(proto, all_nodes=all_nodes, where=str(model))
    meta = {p.key[len(PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(PREFIX)}
    if as_json:
        doc = {"file": str(model), "opset": _opset(proto), "ir_version": proto.ir_version, **stats.as_dict(), "metadata": meta}
        print_json(doc)
        return
    cols = [Col("#", drop=3), Col("layer", "fold"), Col("op", "words", drop=2), Col("output", justify="left", drop=1),
            Col("MACs"), Col("params")]
    rows = [[str(i), layer.name, layer.op, "x".join(str(d) for d in layer.output_shape), f"{layer.macs:,}", f"{layer.params:,}"]
            for i, layer in enumerate(stats.layers)]
    print_table(cols, rows, wide=wide, title=f"{model}", show_lines=False, header_style="bold")
    console.print(
        f"[bold]total[/] {stats.macs:,} MACs ({stats.macs / 1e6:.2f} M), {stats.params:,} params ({stats.params / 1e6:.3f} M), "
        f"{stats.nodes} nodes, opset {_opset(proto)}, IR {proto.ir_version}"
    )
    if meta:
        console.print("[dim]" + "  ".join(f"{k}={v}" for k, v in meta.items() if k in ("arch", "width", "resolution", "classes", "weights", "precision", "input_format", "padding")) + "[/]")
    from ..labels import model_labels
    from ..meta import read_meta

    names = model_labels(read_meta(proto, str(model)))
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        console.print(f"[dim]labels ({len(names)}): {shown}[/]", soft_wrap=True)


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
