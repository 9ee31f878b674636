"""`mnetctl doctor`: this host, its onnxruntime build, which execution providers really load, which profiles can run."""

from __future__ import annotations

from ._app import JsonFlag, app, console, print_json


@app.command("doctor")
def doctor_cmd(json_out: JsonFlag = False) -> None:
    """Check what this machine can run: every EP is tried on a tiny MobileNet and its node assignment shown."""
    from rich.table import Table

    from ..doctor import diagnose

    report = diagnose()
    if json_out:
        print_json(report)
        return
    host, ort = report["host"], report["onnxruntime"]
    head = Table(title="this host", title_justify="left", show_header=False, box=None)
    head.add_column(style="dim")
    head.add_column()
    head.add_row("cpu", f"{host['cpu']} | {host['cores_logical']} logical / {host['cores_physical']} physical cores | {host['arch']}")
    head.add_row("memory", f"{host['memory_gb']} GiB")
    head.add_row("board", str(host.get("board") or "-"))
    head.add_row("accelerators", ", ".join(host["accelerators"]) or "none found")
    head.add_row("onnxruntime", f"{ort['version']} ({ort['device']}) | packages: {', '.join(f'{k} {v}' for k, v in ort['packages'].items())}")
    head.add_row("built-in providers", ", ".join(ort["builtin_providers"]))
    console.print(head)

    eps = Table(title="execution providers (each tried on a tiny MobileNet)", title_justify="left")
    for col in ("ep", "status", "nodes", "how / what it needs"):
        eps.add_column(col)
    for row in report["eps"]:
        if row["loads"]:
            status = "[green]loads[/]" + (" [yellow](simulated)[/]" if row.get("simulated") else "")
        elif row["available"]:
            status = "[yellow]found, fails[/]"
        else:
            status = "[dim]missing[/]"
        nodes = ", ".join(f"{k.replace('ExecutionProvider', '')}: {v}" for k, v in (row.get("nodes") or {}).items()) or "-"
        how = row["how"] if row["available"] else f"[dim]{', '.join(row['packages'])}[/]"
        if row.get("error"):
            how = f"{how} [red]{row['error']}[/]"
        eps.add_row(row["name"], status, nodes, how)
    console.print(eps)
    console.print("[dim]install hints: mnetctl doctor --json (key eps[].hint) or docs/devices.md[/]")

    profs = Table(title="device profiles", title_justify="left")
    profs.add_column("profile", no_wrap=True)
    for col in ("device?", "EPs loading here", "missing EPs"):
        profs.add_column(col)
    profs.add_column("verdict", no_wrap=True)
    for row in report["profiles"]:
        verdict = {"native": "[green]native[/]", "emulated": "[yellow]other hardware[/]", "fallback": "[yellow]--allow-fallback[/]"}[row["verdict"]]
        profs.add_row(row["name"], "yes" if row["host_matches_profile"] else "no", ", ".join(row["loads"]) or "-",
                      ", ".join(row["missing"]) or "-", verdict)
    console.print(profs)
    for row in report["profiles"]:
        if row.get("error"):
            console.print(f"[yellow]{row['name']}:[/] {row['error']}", soft_wrap=True)
