"""`mnetctl doctor`: this host, its onnxruntime build, which execution providers really load, which profiles can run."""

from __future__ import annotations

from ._app import JsonFlag, WideFlag, app, console, print_json
from ._table import Col, print_table


@app.command("doctor")
def doctor_cmd(json_out: JsonFlag = False, wide: WideFlag = False) -> None:
    """Check what this machine can run: every EP is tried on a tiny MobileNet and its node assignment shown."""
    from ..doctor import diagnose

    report = diagnose()
    if json_out:
        print_json(report)
        return
    host, ort = report["host"], report["onnxruntime"]
    head = [
        ["cpu", f"{host['cpu']} | {host['cores_logical']} logical / {host['cores_physical']} physical cores | {host['arch']}"],
        ["memory", f"{host['memory_gb']} GiB"],
        ["board", str(host.get("board") or "-")],
        ["accelerators", ", ".join(host["accelerators"]) or "none found"],
        ["onnxruntime", f"{ort['version']} ({ort['device']}) | packages: {', '.join(f'{k} {v}' for k, v in ort['packages'].items())}"],
        ["built-in providers", ", ".join(ort["builtin_providers"])],
        ["runtimes", " | ".join(f"{k}: {v['detail'] if v['installed'] else 'not installed'}"
                                for k, v in report.get("runtimes", {}).items())],
    ]
    print_table([Col(kind="words", style="dim"), Col(kind="words")], head, wide=wide, title="this host", title_justify="left",
                show_header=False, box=None)

    eps = []
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
        eps.append([row["name"], status, nodes, how])
    print_table([Col("ep", "words"), Col("status", "words"), Col("nodes", "words", drop=1), Col("how / what it needs", "words", drop=2)],
                eps, wide=wide, title="execution providers (each tried on a tiny MobileNet)", title_justify="left")
    console.print("[dim]install hints: mnetctl doctor --json (key eps[].hint) or docs/devices.md[/]")

    profs = []
    for row in report["profiles"]:
        verdict = {"native": "[green]native[/]", "emulated": "[yellow]other hardware[/]", "fallback": "[yellow]--allow-fallback[/]"}[row["verdict"]]
        name = row["name"] + (" [yellow](legacy)[/]" if row.get("status") == "legacy" else "")
        profs.append([name, "yes" if row["host_matches_profile"] else "no", ", ".join(row["loads"]) or "-",
                      ", ".join(row["missing"]) or "-", verdict])
    print_table([Col("profile", "words"), Col("device?", justify="left", drop=2), Col("EPs loading here", "words", drop=1),
                 Col("missing EPs", "words", drop=1), Col("verdict", "words")], profs, wide=wide, title="device profiles",
                title_justify="left")
    for row in report["profiles"]:
        if row.get("status") == "legacy":
            console.print(f"[yellow]{row['name']} is legacy:[/] {row['status_note']}", soft_wrap=True)
        if row.get("error"):
            console.print(f"[yellow]{row['name']}:[/] {row['error']}", soft_wrap=True)
