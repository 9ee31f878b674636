"""`mnetctl profiles list|show|validate`: the device profiles (data in profiles/*.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import JsonFlag, app, console, print_json

profiles_app = typer.Typer(help="Device profiles: hardware, execution providers, budgets.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")


@profiles_app.command("list")
def list_cmd(json_out: JsonFlag = False) -> None:
    """Every shipped profile, and whether this host is that device."""
    from rich.table import Table

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
    table = Table(title="device profiles", title_justify="left")
    for col in ("name", "execution providers", "threads", "max opset/IR", "latency budget", "size", "min top-1", "this host?"):
        table.add_column(col)
    for prof, matches, _ in rows:
        b = prof.budgets
        table.add_row(
            prof.name,
            ", ".join(prof.ep_names),
            str(prof.threads or "default"),
            f"{prof.max_opset or '-'}/{prof.max_ir or '-'}",
            f"{b.percentile} <= {b.latency_ms:g} ms" if b.latency_ms else "-",
            f"{b.size_mb:g} MB" if b.size_mb else "-",
            f"{b.min_top1:.2f}" if b.min_top1 is not None else "-",
            "[green]yes[/]" if matches else "[dim]no[/]",
        )
    console.print(table)


def _show(prof, json_out: bool) -> None:
    from rich.table import Table

    from ..profiles import host_matches_profile

    matches, reasons = host_matches_profile(prof)
    if json_out:
        print_json({**prof.summary(), "host_matches_profile": matches, "host_mismatch": reasons})
        return
    hw = prof.hardware
    table = Table(title=f"{prof.name}: {prof.description}", title_justify="left", show_header=False)
    table.add_column(style="dim")
    table.add_column()
    table.add_row("file", str(prof.source))
    table.add_row("hardware", f"{hw.cpu or hw.arch} | {hw.cores or '?'} cores | {hw.arch}" + (f" | {hw.memory_gb:g} GB" if hw.memory_gb else ""))
    table.add_row("accelerator", f"{hw.accelerator} {hw.accelerator_name}".strip())
    if prof.runtime:
        table.add_row("runtime", prof.runtime)
    for i, ep in enumerate(prof.eps, 1):
        opts = ", ".join(f"{k}={v}" for k, v in ep.options.items())
        table.add_row(f"EP {i}", f"{ep.name}" + (f" [dim]({opts})[/]" if opts else ""))
    table.add_row("threads", str(prof.threads or "onnxruntime default"))
    table.add_row("max opset / IR", f"{prof.max_opset or 'any'} / {prof.max_ir or 'any'}")
    table.add_row("default resolution", str(prof.resolution))
    b = prof.budgets
    table.add_row("budgets", f"latency {b.percentile} <= {b.latency_ms} ms | size <= {b.size_mb} MB | top-1 >= {b.min_top1}")
    if prof.notes:
        table.add_row("notes", prof.notes)
    table.add_row("this host?", "[green]yes[/]" if matches else f"[yellow]no[/]: {'; '.join(reasons)}")
    console.print(table)


@profiles_app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Profile name or path to a TOML file.", show_default=False)],
    json_out: JsonFlag = False,
) -> None:
    """One profile in full."""
    from ..profiles import load_profile

    _show(load_profile(name), json_out)


@profiles_app.command("validate")
def validate_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Profile TOML files.", show_default=False)],
) -> None:
    """Check profile files against the schema (exit 2 naming the file and key on the first problem)."""
    from ..profiles import parse_profile

    for path in paths:
        prof = parse_profile(path)
        console.print(f"[green]ok[/] {path} ({prof.name}: {', '.join(prof.ep_names)})")
