"""Printing the Edge TPU checks (`export --check edgetpu`, `bench FILE --device coral-edge-tpu`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import EnvironmentMissing, GateFailed
from ._app import console, print_json


def show_check(path: Path, json_out: bool = False, extra: dict | None = None, json_path: Path | None = None):
    """Print the rule check of a TFLite file and what this host has (and write it as JSON to `json_path`);
    returns (report, tools)."""
    from ..edgetpu import RULES_SOURCE, check_tflite, tools

    rep, have = check_tflite(path), tools()
    if json_path is not None:
        import json

        from ..fsutil import write_text

        write_text(json_path, json.dumps({**(extra or {}), "edgetpu": rep.as_dict(), "host": have.as_dict()}, indent=1))
    if json_out:
        print_json({**(extra or {}), "edgetpu": rep.as_dict(), "host": have.as_dict()})
        return rep, have
    console.print(f"[bold]Edge TPU checks[/] of {path} [dim](rules: {RULES_SOURCE}; mnetctl checks them itself, "
                  "the compiler is not run)[/]")
    if rep.compiled:
        console.print("  already compiled for the Edge TPU (edgetpu-custom-op inside)")
    for reason in rep.rejected:
        console.print(f"  [red]rejected:[/] {reason}")
    mapped = len(rep.ops) - len(rep.fallback)
    if not rep.rejected:
        console.print(f"  ops mapped to the Edge TPU: {mapped} of {len(rep.ops)}; falling back to the CPU: {len(rep.fallback)}")
    for o in rep.fallback[:8]:
        console.print(f"    op {o.index} {o.op} -> {o.outputs[0] if o.outputs else ''}: {o.reason or 'after the first unmapped op'}")
    if len(rep.fallback) > 8:
        console.print(f"    ... and {len(rep.fallback) - 8} more (the compiler partitions once)")
    found = [f"edgetpu_compiler {have.compiler} {have.compiler_version}".strip() if have.compiler else None,
             f"libedgetpu {have.libedgetpu}" if have.libedgetpu else None, *have.devices]
    console.print("  this host has: " + (", ".join(f for f in found if f) or "nothing for the Edge TPU"))
    for item in have.missing():
        console.print(f"  [yellow]missing:[/] {item}")
    return rep, have


def gate(rep) -> None:
    """A model that breaks the rules, or has ops that fall back, fails the check (exit 1)."""
    if rep.rejected:
        raise GateFailed(f"{rep.path} cannot run on the Edge TPU: {rep.rejected[0]}")
    if rep.fallback:
        first = rep.fallback[0]
        raise GateFailed(f"{rep.path}: {len(rep.fallback)} op(s) would run on the CPU from op {first.index} "
                         f"{first.op} ({first.reason})")


def bench_edgetpu(model: Path, json_path: str | None = None) -> None:
    """`bench MODEL --device coral-edge-tpu`: the checks, then exit 3, since timing needs what this host lacks."""
    from ..errors import BadInput

    if Path(model).suffix.lower() != ".tflite":
        raise BadInput(f"{model}: the Edge TPU runs TFLite files",
                       f"export first: mnetctl export {model} --format tflite --precision int8 -o model.tflite")
    rep, have = show_check(Path(model), json_path == "-", json_path=Path(json_path) if json_path not in (None, "-") else None)
    gate(rep)
    missing = have.missing()
    if missing:
        raise EnvironmentMissing(f"cannot bench on coral-edge-tpu here, it lacks {'; '.join(missing)}",
                                 "the checks above are what this host can do; compile with edgetpu_compiler "
                                 "and time on a host with the device")
    raise EnvironmentMissing("mnetctl does not time the Edge TPU delegate yet; compile the file with "
                             f"{have.compiler} and run it with libedgetpu's delegate")
