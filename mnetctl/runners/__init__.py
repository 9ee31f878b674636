"""Where a stage runs. A runner takes a stage name and plain-data inputs (paths and JSON-able settings)
and returns the stage's plain-data result, so the same call can run here, in another Python environment
or on a cluster node.

`LocalRunner` runs it in this process (a device stage whose profile names an environment goes to `EnvRunner`);
`EnvRunner` in another Python environment as a subprocess; `ray.RayRunner` on a Ray cluster (import
`mnetctl.runners.ray` only when a cluster is used: it imports ray).
"""

from __future__ import annotations

from typing import Any, Protocol

from .env import EnvRunner
from .local import LocalRunner


class Runner(Protocol):
    def run(self, stage: str, inputs: dict[str, Any]) -> dict[str, Any]: ...


__all__ = ["EnvRunner", "LocalRunner", "Runner"]
