"""`mnetctl cluster up|down|status`: a local cluster for trying a fleet out, and what a cluster's nodes serve."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ._app import JsonFlag, WideFlag, app, console, err_console, print_json
from ._table import Col, print_table

cluster_app = typer.Typer(help="A Ray cluster of devices: start a local one, stop it, see what its nodes serve.",
                          no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("up")
def up_cmd(
    local: Annotated[str, typer.Option("--local", help="Devices to emulate on this machine, comma-separated: a head plus one worker node each, on 127.0.0.1.", show_default=False)],
    port: Annotated[int, typer.Option("--port", help="The head's port.")] = 6379,
    num_cpus: Annotated[int, typer.Option("--num-cpus", help="CPUs each node offers.")] = 1,
) -> None:
    """Start a one-machine cluster; prints its address. `mnetctl cluster down` stops it."""
    from ..cluster import start_local, stop_local
    from ..runners import ray as rr
    from .sweep import _split

    devices = _split("--local", local)
    doc = start_local(devices, port=port, num_cpus=num_cpus)
    try:
        rr.connect(doc["address"])
        rr.wait_for_nodes(1 + len(devices))
        rr.disconnect()
    except BaseException:
        stop_local()
        raise
    pids = ", ".join(str(p["pid"]) for p in doc["processes"])
    err_console.print(f"[dim]started pids {pids}; logs in {doc['logs']}[/]", soft_wrap=True)
    console.print(doc["address"])


@cluster_app.command("down")
def down_cmd() -> None:
    """Stop every process `mnetctl cluster up` started (by pid)."""
    from ..cluster import state_path, stop_local

    stopped = stop_local()
    if stopped:
        console.print(f"stopped {len(stopped)} processes ({', '.join(map(str, stopped))})")
    else:
        console.print(f"no local cluster recorded in {state_path()}")


@cluster_app.command("status")
def status_cmd(
    address: Annotated[Optional[str], typer.Option("--address", help="HOST:PORT \\[default: the local cluster's].", show_default=False)] = None,
    json_out: JsonFlag = False,
    wide: WideFlag = False,
) -> None:
    """The cluster's nodes, the devices each serves and what each can run (the doctor facts, run on the node)."""
    from ..cluster import check_address, read_state
    from ..errors import BadInput
    from ..profiles import list_profiles
    from ..runners import ray as rr

    if address is None:
        state = read_state()
        if not state:
            raise BadInput("--address: no local cluster is recorded", "give --address HOST:PORT")
        address = state["address"]
    rr.connect(check_address(address))
    profiles = {p.name: p.model_dump(mode="json") for p in list_profiles()}
    rows = rr.cluster_facts(profiles)
    if json_out:
        print_json({"address": address, "nodes": rows})
        return
    cells = []
    for r in rows:
        facts = r["facts"]
        ort = "; ".join(f"{f['onnxruntime']['version']}" + (f" (env {f['env']})" if f.get("env") else "") for f in facts)
        eps = "; ".join(",".join(e["name"] for e in f["eps"] if e["loads"]) for f in facts)
        serves = ", ".join(f"{p['name']} ({p['verdict']})" for f in facts for p in f["profiles"]) or "-"
        cells.append([r["node"][:12] + (" head" if r["head"] else ""), r["ip"], str(r["cpus"]),
                      serves if not r["error"] else f"error: {r['error']}", ort, eps])
    print_table([Col("node", "words"), Col("ip"), Col("CPUs", drop=2), Col("devices (verdict)", "words"),
                 Col("onnxruntime", "words", drop=1), Col("EPs that load", "words", drop=0)], cells, wide=wide,
                title=f"cluster {address}", caption="verdict: native = this node is the device; emulated = it serves "
                "the device without being one; fallback = an EP does not load", caption_justify="left")
