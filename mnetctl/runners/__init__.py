"""Where a stage runs. A runner takes a stage name and plain-data inputs (paths and JSON-able settings)
and returns the stage's plain-data result, so the same call can run here, in another Python environment
or on a cluster node.

Only the in-process runner exists today; a runner elsewhere implements the same `run`.
"""

from __future__ import annotations

from typing import Any, Protocol

from .local import LocalRunner


class Runner(Protocol):
    def run(self, stage: str, inputs: dict[str, Any]) -> dict[str, Any]: ...


__all__ = ["LocalRunner", "Runner"]
