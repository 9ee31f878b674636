"""`mnetctl profiles list|show|validate`: the device profiles (data in profiles/*.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import JsonFlag, WideFlag, app, console, print_json
from ._table import Col, print_table

profiles_app = typer.Typer(help="Device profiles: hardware, execution providers, budgets.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")


@profiles_app.command("list")
def list_cmd(json_out: JsonFlag = False, wide: WideFlag = False) -> None:
    """Every shipped profile, and whether this host is that device."""
    from ..hostinfo import host_info
    from ..profiles import host_matches_profile, list_profiles

    host = host_info()
    rows = []
    for prof in list_profiles():
        matches, reasons = host_matches_profile(prof, host)
        rows.append((prof, matches, reasons))
    if json_out:
        print_json([{**p.summary(), "host_matches_profile": m, "host_mismatch": r} for p, m, r in rows])
        return
    cols = [Col("name", "words"), Col("execution providers", "words", drop=3), Col("threads", drop=4),
            Col("max opset/IR", drop=5), Col("latency budget", justify="left"), Col("size", justify="left", drop=1),
            Col("min top-1", drop=2), Col("this host?", "words")]
    cells = []
    for prof, matches, _ in rows:
        b = prof.budgets
        cells.append([
            prof.name + (" [yellow](legacy)[/]" if prof.legacy else ""),
            ", ".join(prof.ep_names),
            str(prof.threads or "default"),
            f"{prof.max_opset or '-'}/{prof.max_ir or '-'}",
            f"{b.percentile} <= {b.latency_ms:g} ms" if b.latency_ms else "-",
            f"{b.size_mb:g} MB" if b.size_mb else "-",
            f"{b.min_top1:.2f}" if b.min_top1 is not None else "-",
            "[green]yes[/]" if matches else "[dim]no[/]",
        ])
    print_table(cols, cells, wide=wide, title="device profiles", title_justify="left")


def _show(prof, json_out: bool, wide: bool = False) -> None:
    from ..profiles import host_matches_profile

    matches, reasons = host_matches_profile(prof)
    if json_out:
        print_json({**prof.summary(), "host_matches_profile": matches, "host_mismatch": reasons})
        return
    hw = prof.hardware
    rows = []
    rows.append(("file", str(prof.source)))
    if prof.legacy:
        rows.append(("status", f"[yellow]legacy[/]: {prof.status_note}"))
    rows.append(("hardware", f"{hw.cpu or hw.arch} | {hw.cores or '?'} cores | {hw.arch}" + (f" | {hw.memory_gb:g} GB" if hw.memory_gb else "")))
    rows.append(("accelerator", f"{hw.accelerator} {hw.accelerator_name}".strip()))
    if prof.runtime:
        rows.append(("runtime", prof.runtime))
    for i, ep in enumerate(prof.eps, 1):
        opts = ", ".join(f"{k}={v}" for k, v in ep.options.items())
        rows.append((f"EP {i}", f"{ep.name}" + (f" [dim]({opts})[/]" if opts else "")))
    rows.append(("threads", str(prof.threads or "onnxruntime default")))
    rows.append(("max opset / IR", f"{prof.max_opset or 'any'} / {prof.max_ir or 'any'}"))
    rows.append(("default resolution", str(prof.resolution)))
    b = prof.budgets
    rows.append(("budgets", f"latency {b.percentile} <= {b.latency_ms} ms | size <= {b.size_mb} MB | top-1 >= {b.min_top1}"))
    if prof.notes:
        rows.append(("notes", prof.notes))
    rows.append(("this host?", "[green]yes[/]" if matches else f"[yellow]no[/]: {'; '.join(reasons)}"))
    print_table([Col(kind="words", style="dim"), Col(kind="words")], rows, wide=wide,
                title=f"{prof.name}: {prof.description}", title_justify="left", show_header=False)


@profiles_app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Profile name or path to a TOML file.", show_default=False)],
    json_out: JsonFlag = False,
    wide: WideFlag = False,
) -> None:
    """One profile in full."""
    from ..profiles import load_profile

    _show(load_profile(name), json_out, wide)


@profiles_app.command("validate")
def validate_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Profile TOML files.", show_default=False)],
) -> None:
    """Check profile files against the schema (exit 2 naming the file and key on the first problem)."""
    from ..profiles import parse_profile

    for path in paths:
        prof = parse_profile(path)
        console.print(f"[green]ok[/] {path} ({prof.name}: {', '.join(prof.ep_names)})")
