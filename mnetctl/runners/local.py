"""The in-process runner: calls the stage function in this Python process.

A device stage (bench, bench_group, bench_report, facts) whose profile names a Python environment (`env`) runs
there instead, through the environment runner (`runners/env.py`); `use_envs=False` (inside such an environment)
runs it here.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..stages import DEVICE_STAGES, stage_function


class LocalRunner:
    name = "local"

    def __init__(self, use_envs: bool = True, env: str | None = None):
        """env: a Python environment (name or path) for every device stage, overriding the profiles' `env`."""
        self.use_envs = use_envs
        self.env = env

    def run(self, stage: str, inputs: dict[str, Any]) -> dict[str, Any]:
        # Inputs must already be plain data: checking it here keeps every stage shippable to another runner.
        json.dumps(inputs)
        env = self.env_for(stage, inputs)
        if env is not None:
            from ..envs import resolve_env
            from .env import EnvRunner

            return EnvRunner(resolve_env(env, flag="--env" if self.env else "env")).run(stage, inputs)
        return stage_function(stage)(**inputs)

    def env_for(self, stage: str, inputs: dict[str, Any]) -> str | None:
        """The environment a stage runs in: None for this process."""
        if not self.use_envs or stage not in DEVICE_STAGES:
            return None
        if self.env:
            return self.env
        if os.environ.get("MNETCTL_ENV_ACTIVE"):  # already inside an environment a profile named
            return None
        profiles = [inputs["profile"]] if "profile" in inputs else list(inputs.get("profiles") or [])
        envs = {p.get("env") for p in profiles}
        return next(iter(envs)) if len(envs) == 1 else None
