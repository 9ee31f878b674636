"""Execution-provider environments: Python virtual environments with another onnxruntime build.

Some execution providers come in onnxruntime builds that replace the `onnxruntime` module (onnxruntime-openvino,
onnxruntime-gpu) or sit beside it as a plugin (onnxruntime-qnn), so one Python cannot hold them and the CPU build
together. `create_env` makes a venv with the build's package plus mnetctl (from this source checkout, editable, or
the same release from the package index) and mnetctl's other dependencies, leaving that venv's onnxruntime as the
build installed it. A device profile names such an environment (`env = "openvino"`) and its benches run there
(`mnetctl.runners.env`).

Environments live under `$MNETCTL_ENVS` or `~/.cache/mnetctl/envs/<name>`; a finished one carries a marker with
what was installed, and is reused while it matches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import __version__
from .errors import BadInput, EnvironmentMissing
from .progress import ProgressFn, report

# environment kind -> the onnxruntime build's package
KINDS: dict[str, str] = {
    "openvino": "onnxruntime-openvino",
    "qnn": "onnxruntime-qnn>=2.0",
    "gpu": "onnxruntime-gpu",
}
MARKER = ".mnetctl-ready"
PIP_TIMEOUT_S = 1200


def envs_dir() -> Path:
    base = os.environ.get("MNETCTL_ENVS")
    if base:
        return Path(base)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mnetctl" / "envs"


def env_python(env: Path) -> Path:
    return Path(env) / "bin" / "python"


def resolve_env(name_or_path: str | Path, flag: str = "env") -> Path:
    """The environment folder a profile's `env` (a name under envs_dir(), or a path) or `--env PATH` names."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if isinstance(name_or_path, Path) or os.sep in text or text.startswith("."):
        target = path
    else:
        target = envs_dir() / text
    if not env_python(target).exists():
        kind = text if text in KINDS else "KIND"
        raise EnvironmentMissing(f"{flag} {text!r}: no Python environment at {target}",
                                 f"make one with: mnetctl env create {kind}" + ("" if target.parent == envs_dir()
                                                                                else f" --path {target}"))
    return target


def source_checkout() -> Path | None:
    """The source tree mnetctl runs from (a checkout with its pyproject.toml), or None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and re.search(r'^name\s*=\s*"mnetctl"', pyproject.read_text(), re.M):
        return root
    return None


def project_deps() -> list[str]:
    """mnetctl's required dependencies except onnxruntime (the environment brings its own build)."""
    root = source_checkout()
    if root is not None:
        import tomllib

        deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    else:
        from importlib.metadata import requires

        deps = [d for d in (requires("mnetctl") or []) if "extra ==" not in d]
    return [d for d in deps if not re.match(r"onnxruntime\b", d.strip())]


def _mnetctl_source() -> list[str]:
    root = source_checkout()
    return ["-e", str(root), "--no-deps"] if root is not None else [f"mnetctl=={__version__}", "--no-deps"]


def _spec(package: str) -> str:
    root = source_checkout()
    return json.dumps({"package": package, "deps": project_deps(), "repo": str(root) if root else f"mnetctl=={__version__}"})


def _pip(py: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S)


def _last_line(res: subprocess.CompletedProcess) -> str:
    lines = (res.stderr or res.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit code {res.returncode}"


def create_env(kind: str, target: Path | None = None, force: bool = False, python: str | None = None,
               on_progress: ProgressFn | None = None) -> tuple[Path, float]:
    """(environment folder, seconds spent: 0 when a matching one was reused). Raises EnvironmentMissing with pip's
    reason when the build's package or mnetctl's dependencies cannot be installed."""
    if kind not in KINDS:
        raise BadInput(f"kind: unknown environment kind {kind!r}", f"choose from {', '.join(KINDS)}")
    package = KINDS[kind]
    target = Path(target) if target is not None else envs_dir() / kind
    py = env_python(target)
    spec = _spec(package)
    marker = target / MARKER
    if not force and py.exists() and marker.is_file() and marker.read_text() == spec:
        return target, 0.0
    start = time.perf_counter()
    if target.exists():
        if not (marker.exists() or py.exists()):
            raise BadInput(f"path: {target} exists and is not an mnetctl environment", "choose another --path")
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    steps = [("venv", None), (package, [package]), ("mnetctl", _mnetctl_source()), ("dependencies", project_deps())]
    for i, (label, args) in enumerate(steps):
        report(on_progress, i, len(steps), f"env {kind}: {label}")
        if args is None:
            res = subprocess.run([python or sys.executable, "-m", "venv", str(target)], capture_output=True, text=True)
            if res.returncode:
                raise EnvironmentMissing(f"python -m venv {target} failed: {_last_line(res)}")
            continue
        res = _pip(py, *args)
        if res.returncode:
            what = package if label == package else f"mnetctl's {label} next to {package}"
            raise EnvironmentMissing(f"pip cannot install {what} into {target}: {_last_line(res)}",
                                     "check the package index is reachable and offers a build for this platform")
    check = subprocess.run([str(py), "-c", "import onnxruntime, mnetctl.cli; print(onnxruntime.__version__)"],
                           capture_output=True, text=True)
    if check.returncode:
        raise EnvironmentMissing(f"environment {target} is broken: {_last_line(check)}")
    marker.write_text(spec)
    report(on_progress, len(steps), len(steps), f"env {kind}: ready")
    return target, time.perf_counter() - start


def list_envs() -> list[dict]:
    """The environments under envs_dir(): name, path, package, whether finished."""
    rows = []
    root = envs_dir()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        marker = path / MARKER
        package = None
        if marker.is_file():
            try:
                package = json.loads(marker.read_text()).get("package")
            except ValueError:
                pass
        rows.append({"name": path.name, "path": str(path), "package": package, "ready": marker.is_file()})
    return rows
