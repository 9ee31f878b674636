"""The environment runner: a stage runs in another Python environment (`mnetctl.envs`) as a subprocess.

The parent writes `{"stage", "inputs"}` as JSON to the child's stdin; the child (`python -m mnetctl.runners.env
RESULT_FILE`) runs the stage function and writes `{"version", "result"}` or `{"version",
"error"}` to RESULT_FILE (stdout stays free for whatever the runtime prints). A known mnetctl error comes back as
the same kind with its message; a child that dies is reported with the end of its stderr. The child must run
the same mnetctl version as the parent, since cache keys name the version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EXIT_INTERNAL, BadInput, EnvironmentMissing, GateFailed, MnetctlError

_KINDS = {"BadInput": BadInput, "EnvironmentMissing": EnvironmentMissing, "GateFailed": GateFailed}


class EnvRunner:
    name = "env"

    def __init__(self, env: Path, timeout_s: float | None = None):
        from ..envs import env_python

        self.env = Path(env)
        self.python = env_python(self.env)
        self.timeout_s = timeout_s

    def run(self, stage: str, inputs: dict[str, Any]) -> dict[str, Any]:
        request = json.dumps({"stage": stage, "inputs": inputs})
        with tempfile.TemporaryDirectory(prefix="mnetctl-env-") as tmp:
            out = Path(tmp) / "result.json"
            proc = subprocess.Popen([str(self.python), "-m", "mnetctl.runners.env", str(out)], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_child_env())
            try:
                _, err = proc.communicate(request, timeout=self.timeout_s)
            except BaseException:  # Ctrl-C or a timeout: the child must not outlive the stage
                proc.kill()
                proc.wait()
                raise
            doc = _read(out)
        if doc is None:
            tail = " | ".join((err or "").strip().splitlines()[-3:]) or f"exit code {proc.returncode}"
            raise MnetctlError(f"env {self.env}: stage {stage} ended without a result ({tail})")
        if doc.get("version") != __version__:
            raise EnvironmentMissing(f"env {self.env} runs mnetctl {doc.get('version')}, this is {__version__}",
                                     "recreate it: mnetctl env create KIND --force")
        if "error" in doc:
            e = doc["error"]
            exc = _KINDS.get(e.get("kind"), MnetctlError)(f"{e.get('message')} (in env {self.env})", e.get("hint"))
            if exc.__class__ is MnetctlError:
                exc.exit_code = int(e.get("exit_code", EXIT_INTERNAL))
            raise exc
        return doc["result"]


ACTIVE = "MNETCTL_ENV_ACTIVE"  # set in the child: a profile's `env` is where it already runs


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env[ACTIVE] = "1"
    return env


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def serve(result_path: str) -> int:
    """The child's side: one request from stdin, its answer to `result_path`."""
    from ..errors import short
    from ..fsutil import write_text
    from ..stages import stage_function

    doc: dict[str, Any] = {"version": __version__}
    try:
        request = json.loads(sys.stdin.read())
        doc["result"] = stage_function(request["stage"])(**request["inputs"])  # here, never in a further env
    except MnetctlError as exc:
        doc["error"] = {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}
    except Exception as exc:  # a bug or a runtime's failure: reported, never a traceback on the parent's terminal
        doc["error"] = {"kind": "internal", "message": f"{type(exc).__name__}: {short(exc)}", "exit_code": EXIT_INTERNAL}
    write_text(Path(result_path), json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
