"""`mnetctl env create|list`: Python environments with another onnxruntime build (OpenVINO, GPU, QNN)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import JsonFlag, app, console, print_json

env_app = typer.Typer(help="Execution-provider environments: a venv per onnxruntime build, for profiles that name one.",
                      no_args_is_help=True)
app.add_typer(env_app, name="env")


@env_app.command("create")
def create_cmd(
    kind: Annotated[str, typer.Argument(help="openvino | gpu | qnn.", show_default=False)],
    path: Annotated[Optional[Path], typer.Option("--path", help="Where to make it \\[default: ~/.cache/mnetctl/envs/KIND or $MNETCTL_ENVS/KIND].", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Make it again even if a matching one exists.")] = False,
) -> None:
    """Make a venv with the build's onnxruntime package plus mnetctl and its other dependencies (needs the
    package index); a profile with `env = "KIND"` then benches there."""
    from ..envs import create_env
    from ._progress import progress_bar

    with progress_bar() as on_progress:
        target, seconds = create_env(kind, path, force=force, on_progress=on_progress)
    console.print(f"{'made' if seconds else 'reusing'} {target}" + (f" ({seconds:.0f} s)" if seconds else ""))


@env_app.command("list")
def list_cmd(json_out: JsonFlag = False) -> None:
    """The environments made so far."""
    from ..envs import envs_dir, list_envs

    rows = list_envs()
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print(f"no environments in {envs_dir()}")
    for r in rows:
        console.print(f"{r['name']}: {r['path']} ({r['package'] or '?'}{'' if r['ready'] else ', unfinished'})")
