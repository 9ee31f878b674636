"""Where the files mnetctl ships live: pretrained checkpoints, device profiles, sample images.

Each kind resolves, in order, to its environment override, the copy inside the installed package
(`mnetctl/_shipped/<folder>`, put there when a wheel is built) and the folder of the source tree
(an editable install or a checkout). Shipped files are read only; nothing is written beside them.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

# kind -> (environment override, folder relative to the repository root and to `_shipped/`)
KINDS: dict[str, tuple[str, str]] = {
    "pretrained": ("MNETCTL_PRETRAINED_DIR", "models/pretrained"),
    "profiles": ("MNETCTL_PROFILES_DIR", "profiles"),
    "data": ("MNETCTL_DATA_DIR", "data"),
}

SHIPPED = "_shipped"  # the package folder the wheel build fills (see setup.py)
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def packaged_dir(kind: str) -> Path | None:
    """The installed package's copy of `kind`, or None (a source tree has none)."""
    _, rel = KINDS[kind]
    root = files(__package__) / SHIPPED
    if not isinstance(root, Path):  # a package inside an archive: no directory to hand out
        return None
    path = root.joinpath(*rel.split("/"))
    return path if path.is_dir() else None


def resource_dir(kind: str) -> Path:
    """The folder of `kind` ("pretrained", "profiles" or "data"): override, package copy, source tree."""
    env_var, rel = KINDS[kind]
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    return packaged_dir(kind) or _SOURCE_ROOT.joinpath(*rel.split("/"))
