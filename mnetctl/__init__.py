"""mnetctl: build, import, quantize, evaluate and benchmark MobileNet classifiers for edge devices.

The public library API is re-exported here (imports are lazy so that `mnetctl --help` stays fast).
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "build_model": ("mnetctl.builder", "build_model"),
    "save_model": ("mnetctl.builder", "save_model"),
    "decode": ("mnetctl.specs", "decode"),
    "analyze": ("mnetctl.analysis", "analyze"),
    "evaluate": ("mnetctl.evaluate", "evaluate"),
    "predict": ("mnetctl.evaluate", "predict"),
    "quantize_model": ("mnetctl.quant.pipeline", "quantize_model"),
    "simplify_model": ("mnetctl.simplify", "simplify_model"),
    "bench": ("mnetctl.bench", "bench"),
    "check_budgets": ("mnetctl.budgets", "check_budgets"),
    "load_profile": ("mnetctl.profiles", "load_profile"),
    "list_profiles": ("mnetctl.profiles", "list_profiles"),
    "plan_variants": ("mnetctl.sweep", "plan_variants"),
    "run_sweep": ("mnetctl.sweep", "run_sweep"),
    "compare": ("mnetctl.compare", "compare"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mnetctl' has no attribute {name!r}")
