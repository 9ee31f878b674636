"""`mnetctl worker`: join a Ray cluster as a node serving device profiles (wraps `ray start`)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ._app import app, console, err_console


@app.command("worker")
def worker_cmd(
    address: Annotated[str, typer.Option("--address", help="The head's HOST:PORT; the node joins this cluster only.", show_default=False)],
    device: Annotated[str, typer.Option("--device", "-D", help="Device profiles this node serves, comma-separated (e.g. raspberry-pi-4).", show_default=False)],
    node_ip_address: Annotated[Optional[str], typer.Option("--node-ip-address", help="Bind the node to this address (a private interface); Ray has no authentication.", show_default=False)] = None,
    num_cpus: Annotated[Optional[int], typer.Option("--num-cpus", help="CPUs the node offers for build/quantize/eval \\[default: all].", show_default=False)] = None,
    emulate: Annotated[bool, typer.Option("--emulate", help="Serve a device this host is not (its latencies are then this host's).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the devices and print the ray start command, without joining.")] = False,
) -> int:
    """Serve device profiles to a fleet: checks this host is each device and its EPs load, then runs `ray start`
    with one resource `mnetctl.device.NAME` per device, until stopped (Ctrl-C)."""
    from ..cluster import check_address, check_devices, run_worker, start_args
    from ..runners import LocalRunner
    from ..profiles import load_profile
    from .sweep import _split

    names = _split("--device", device)
    check_address(address)
    facts: dict = {"profiles": []}
    by_env: dict = {}
    for name in names:
        prof = load_profile(name)
        by_env.setdefault(prof.env, []).append(prof.model_dump(mode="json"))
    for profs in by_env.values():  # doctor facts, each in the Python environment its devices run in
        facts["profiles"] += LocalRunner().run("facts", {"profiles": profs})["profiles"]
    rows = check_devices(names, emulate=emulate, facts=facts)
    for r in rows:
        how = "this host is that device" if r["matches"] else "emulated: " + "; ".join(r["reasons"])
        console.print(f"serving [bold]{r['name']}[/] ({how}; EPs load{' in env ' + r['env'] if r['env'] else ''})",
                      soft_wrap=True)
    args = start_args(names, address=address, node_ip=node_ip_address, num_cpus=num_cpus)
    if dry_run:
        console.print(" ".join(args), soft_wrap=True, markup=False)
        return 0
    err_console.print(f"[dim]joining {address}; Ctrl-C stops this node[/]")
    return run_worker(args)
