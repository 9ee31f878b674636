"""The in-process runner: calls the stage function in this Python process."""

from __future__ import annotations

import json
from typing import Any

from ..stages import STAGES


class LocalRunner:
    name = "local"

    def run(self, stage: str, inputs: dict[str, Any]) -> dict[str, Any]:
        # Inputs must already be plain data: checking it here keeps every stage shippable to another runner.
        json.dumps(inputs)
        return STAGES[stage].run(**inputs)
