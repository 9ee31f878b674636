"""Shared fixtures: the repo's shipped data and small real models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "imagenet-sample"
VAL = DATA / "val"
CALIB = DATA / "calib"
PRETRAINED = REPO / "models" / "pretrained"
# Third-party checkpoints and images that are user inputs, not shipped (beside the checkout; tests skip without it)
SHARED = Path(os.environ.get("MNETCTL_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(rel: str) -> Path:
    """A file of the shared data folder; the test is skipped when it is absent."""
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"needs {path} (the shared data folder beside the checkout, or MNETCTL_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """V1 0.25 at 128 px, random weights: the cheapest real MobileNet."""
    from mnetctl.builder import build_model, save_model

    path = tmp_path_factory.mktemp("models") / "v1-0.25-128.onnx"
    save_model(build_model("v1", 0.25, 128), path)
    return path


@pytest.fixture(scope="session")
def pretrained_small(tmp_path_factory) -> Path:
    """V1 0.25 at 128 px with the shipped checkpoint: the cheapest model with real accuracy."""
    from mnetctl.builder import build_model, save_model

    path = tmp_path_factory.mktemp("pretrained") / "v1-0.25-128.onnx"
    save_model(build_model("v1", 0.25, 128, weights="pretrained"), path)
    return path


def optimized_ops(path, tmp_path):
    """Counter of the op types in the graph ONNX Runtime's CPU EP actually runs (its saved optimized model)."""
    import collections

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp_path / (Path(path).stem + ".ort-optimized.onnx"))
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)
