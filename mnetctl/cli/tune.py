"""`mnetctl tune`: this host's levers on one model, measured interleaved; the winner as a device profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import ModelArg, WideFlag, app, console, err_console, flag_names
from ._table import Col, print_table

_FLAGS = {"max_seconds": "--max-seconds", "max_drop": "--max-drop", "profile": "--device"}


def _overlaps(a, b) -> bool:
    """Two race intervals that overlap: the race cannot tell those configurations apart."""
    return bool(a and b and a[0] <= b[1] and b[0] <= a[1])


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command("tune")
def tune_cmd(
    model: ModelArg,
    device: Annotated[str, typer.Option("--device", "-D", help="Device profile (name or TOML path) whose configuration is the reference.")] = "host",
    write_profile: Annotated[Optional[Path], typer.Option("--write-profile", help="Write the kept configuration as a device profile TOML.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where the int8 file goes when an int8 variant wins \\[default: MODEL stem + .tuned.onnx].", show_default=False)] = None,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Time for the interleaved timing (quantizing and evaluating come on top).")] = 120.0,
    limit: Annotated[Optional[int], typer.Option("--limit", "-l", help="Val images for the accuracy filter \\[default: all 200 shipped; 0.5 point is one image].", show_default=False)] = None,
    max_drop: Annotated[float, typer.Option("--max-drop", help="Drop configurations whose top-1 is more points below the model's.")] = 0.5,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also try the int8 variants mnetctl can make of a float model it built.")] = True,
    runtimes: Annotated[Optional[str], typer.Option("--runtimes", help="Other runtimes to try, comma list of litert,openvino ('' for none) \\[default: every one installed].", show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", help="Table rows: the finalists, then the best screened (all with --wide; every row is in --json).")] = 12,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the full result as JSON to this file.", show_default=False)] = None,
    wide: WideFlag = False,
) -> None:
    """Measure, interleaved, the providers, threads, spinning, graph optimisation and int8 variants this host offers;
    keep the fastest configuration whose top-1 stays within --max-drop points, checked against the profile's own."""
    import json

    from ..fsutil import check_writable, write_text
    from ..profiles import load_profile
    from ..tune import default_output, tune, write_profile as write_profile_file
    from ._progress import progress_bar

    prof = load_profile(device)
    for path, flag in ((write_profile, "--write-profile"), (json_path, "--json"),
                       (output or (default_output(model) if int8 else None), "-o/--output")):
        if path is not None:
            check_writable(Path(path), inputs=(model,), flag=flag)
    with flag_names(_FLAGS), progress_bar() as on_progress:
        result = tune(model, prof, max_seconds=max_seconds, limit=limit, max_drop=max_drop, int8=int8, output=output,
                      on_progress=on_progress,
                      runtimes=None if runtimes is None else [r for r in runtimes.split(",") if r.strip()])
    written = {"model": result.model_written} if result.model_written else {}
    if write_profile is not None:
        written["profile"] = str(write_profile_file(result, prof, write_profile))

    for name, reason in result.variant_errors.items():
        err_console.print(f"[yellow]skip[/] {name}: {reason}", soft_wrap=True)
    for name, reason in result.runtimes_skipped.items():
        err_console.print(f"[yellow]skip[/] runtime {name}: {reason}", soft_wrap=True)
    rows = sorted(result.rows, key=lambda r: (r.dropped, r.race_ratio is None, r.race_ratio or 0, r.screen_ratio or 0))
    cols = [Col("configuration", "words"), Col("top-1"), Col("screen x ref"), Col("p50 ms"), Col("x ref"),
            Col("95% CI", drop=1), Col("", "words")]
    shown = rows if wide else [r for i, r in enumerate(rows) if i < max(top, 1) or r.race_ratio is not None]
    win_ci = result.winner_row.race_ci if not result.winner.reference else None
    table = []
    for r in shown:
        mark = ("[green]kept[/]" if r.config == result.winner else
                "[dim]dropped: top-1[/]" if r.dropped else
                "tie" if _overlaps(r.race_ci, win_ci) else "")
        ci = "-" if r.race_ci is None else f"{r.race_ci[0]:.3f}-{r.race_ci[1]:.3f}"
        p50 = r.race_p50_ms if r.race_p50_ms is not None else r.screen_p50_ms
        table.append([r.config.name, f"{100 * r.top1:.1f}%", _ratio(r.screen_ratio), "-" if p50 is None else f"{p50:.3f}",
                      _ratio(r.race_ratio), ci, mark])
    print_table(cols, table, wide=wide, title_justify="left",
                title=f"{result.host}: {len(result.rows)} configurations, reference = profile {result.profile} "
                      f"({', '.join(e for e, _ in result.reference.eps)}, threads "
                      f"{result.reference.threads or 'default'}); top-1 on {result.accuracy_images} val images")
    if len(shown) < len(rows):
        console.print(f"[dim]{len(rows) - len(shown)} more configuration(s): --wide or --json[/]")
    dropped = sum(r.dropped for r in result.rows)
    if dropped:
        console.print(f"[dim]{dropped} configuration(s) dropped: top-1 more than {result.max_drop:g} points below the model's[/]")
    console.print("[dim]x ref: median over interleaved rounds of the block-median ratio to the reference "
                  "(screen: short blocks, all; race: longer blocks, the finalists); tie: race interval overlaps the "
                  "kept one's[/]", soft_wrap=True)
    c = result.check_ci
    if result.candidate.reference:
        console.print("the profile's own configuration was fastest; kept", soft_wrap=True)
    else:
        verdict = ("[yellow]slower: the profile's own configuration is kept[/]" if result.kept_reference
                   else "[green]kept[/]")
        console.print(f"check, {result.check_rounds} interleaved rounds: [bold]{result.candidate.name}[/] / reference p50 "
                      f"[bold]{result.check_ratio:.3f}x[/] (95% CI {c[0]:.3f}-{c[1]:.3f}): {verdict}", soft_wrap=True)
    if result.other_load is not None and result.other_load > 0.2:
        err_console.print(f"[yellow]note:[/] other processes kept {result.other_load:.1f} cores busy while timing;"
                          " ratios hold better than times, but re-run on a quiet host for figures to quote", soft_wrap=True)
    for what, path in written.items():
        console.print(f"wrote {what} {path}")
    if json_path is not None:
        write_text(json_path, json.dumps({**result.as_dict(), "written": written}, indent=2) + "\n")
        console.print(f"wrote {json_path}")
