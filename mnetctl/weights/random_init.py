"""Seeded He (Kaiming normal, fan-in) initialisation: the same seed gives the same bytes."""

from __future__ import annotations

import numpy as np

from ..errors import BadInput
from ..specs import ArchConfig


def random_weights(cfg: ArchConfig, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadInput(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in cfg.param_layers():
        std = np.sqrt(2.0 / layer.fan_in)
        if layer.kind == "fc":
            std = 0.01  # a small classifier, as the reference implementations initialise it
        w = (rng.standard_normal(layer.weight_shape, dtype=np.float32) * np.float32(std)).astype(np.float32)
        b = np.zeros(layer.cout, dtype=np.float32)
        out[layer.name] = (w, b)
    return out
