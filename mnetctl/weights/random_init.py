"""Seeded He (Kaiming normal, fan-in) initialisation: the same seed gives the same bytes."""

from __future__ import annotations

import numpy as np

from ..specs import ArchConfig


def random_weights(cfg: ArchConfig, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in cfg.param_layers():
        std = np.sqrt(2.0 / layer.fan_in)
        if layer.kind == "fc":
            std = 0.01  # a small classifier, as the reference implementations initialise it
        w = (rng.standard_normal(layer.weight_shape, dtype=np.float32) * np.float32(std)).astype(np.float32)
        b = np.zeros(layer.cout, dtype=np.float32)
        out[layer.name] = (w, b)
    return out
