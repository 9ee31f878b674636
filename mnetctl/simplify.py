"""onnxsim simplification, verified: the simplified model's logits on real images must match the model's.

The one module that imports `onnxsim`. `simplify_model` is the `mnetctl simplify` command; the quantization
pipeline (mnetctl.quant.pipeline) runs the same verified step first.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data import Preprocessor, Sample, default_calib_dir, find_samples, iter_batches
from .errors import BadInput, GateFailed, short
from .fsutil import atomic_path, check_writable
from .model import InputSpec, Model, as_model, run_batched
from .modelio import cannot_run, load_onnx

SIMPLIFY_TOLERANCE = 1e-4  # max |diff| of logits allowed between a model and its simplified form
CHECK_SAMPLES = 8  # real images used to verify a simplification


@dataclass
class SimplifyReport:
    model: str
    output: str | None
    nodes_before: int
    nodes_after: int
    size_before: int
    size_after: int
    max_abs_diff: float
    check_images: int
    tolerance: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckImages:
    """A few real images, preprocessed for the model, and the model's own logits on them."""

    batches: list[np.ndarray]
    n: int
    reference: np.ndarray


def with_weights(model: Model):
    """The model's proto with its weights (a handle leaves weights stored in external data files on disk)."""
    from onnx.external_data_helper import uses_external_data

    if model.path is None or not any(uses_external_data(t) for t in model.proto.graph.initializer):
        return model.proto
    return load_onnx(model.path)  # weights in separate files: the one case that parses the file again


def model_bytes(proto) -> bytes:
    return proto.SerializeToString(deterministic=True)


def copy_metadata(model, source) -> None:
    """Metadata of `model` := that of `source` (tools on the way add their own keys)."""
    del model.metadata_props[:]
    for p in source.metadata_props:
        entry = model.metadata_props.add()
        entry.key, entry.value = p.key, p.value
    model.producer_name = source.producer_name or model.producer_name
    model.producer_version = source.producer_version or model.producer_version
    model.doc_string = source.doc_string


def run_logits(source: bytes | Path, batches: Sequence[np.ndarray], spec: InputSpec, what: str) -> np.ndarray:
    """The first output on each batch (fed as `spec`, the model's input, takes it: dtype, fixed batch size);
    a model ORT cannot load or run is a BadInput naming `what`."""
    from .runtime import cpu_session

    try:
        session = cpu_session(source if isinstance(source, bytes) else str(source))

        def run_one(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {spec.name: x})[0], np.float32)

        outs = [run_batched(run_one, b, spec) for b in batches]
    except Exception as exc:  # ORT's own exception types: a model that loads but cannot run
        raise cannot_run(what, exc) from None
    return np.concatenate(outs)


def load_check_images(model: Model, samples: Sequence[Sample], where: Path | str) -> CheckImages:
    """Preprocess `samples` (one batch) and run the model on them: the reference a simplification must keep."""
    pre: Preprocessor = model.preprocessor
    batches = [b.array.copy() for b in iter_batches(samples, pre, len(samples)) if len(b)]
    n = sum(a.shape[0] for a in batches)
    if n == 0:
        raise BadInput(f"none of the check images in {where} could be read")
    source = model.path if model.path is not None else model_bytes(model.proto)
    return CheckImages(batches, n, run_logits(source, batches, model.input, model.name))


def simplify_checked(model: Model, proto, check: CheckImages, tolerance: float):
    """onnxsim on `proto` (the model's graph with weights), verified on `check` -> (simplified, max |diff|)."""
    import onnxsim

    try:
        simplified, _ = onnxsim.simplify(proto, check_n=0)
    except Exception as exc:
        raise BadInput(f"onnxsim cannot simplify {model.name}: {short(exc)}") from None
    copy_metadata(simplified, proto)
    got = run_logits(model_bytes(simplified), check.batches, model.input, f"the simplified {model.name}")
    ref = check.reference
    if ref.shape != got.shape:
        raise GateFailed(f"simplifying {model.name} changed the output shape {ref.shape} -> {got.shape}; nothing written")
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    if not np.isfinite(diff) or diff > tolerance:
        raise GateFailed(
            f"simplifying {model.name} changes the logits by up to {diff:.3g} (> {tolerance:g}) on {check.n} real "
            "images; nothing written",
            "keep the unsimplified model",
        )
    return simplified, diff


def simplify_model(
    model: Model | Path | str,
    output: Path | str | None = None,
    check_images: Path | str | None = None,
    samples: int = CHECK_SAMPLES,
    tolerance: float = SIMPLIFY_TOLERANCE,
) -> SimplifyReport:
    """onnxsim alone, verified: the logits on `samples` real images may differ by at most `tolerance`.

    model: a handle or a path. check_images: a folder/CSV/image (default: the shipped calibration
    images). On failure nothing is written (GateFailed, exit 1). Default output: `<stem>.sim.onnx` next
    to the input.
    """
    start = time.perf_counter()
    if int(samples) <= 0:
        raise BadInput(f"samples must be a positive number, got {samples}")
    if not 0 <= float(tolerance) < float("inf"):  # NaN would turn the verification off, a negative one fail it always
        raise BadInput(f"tolerance must be a finite number >= 0, got {tolerance}")
    handle = as_model(model)
    if output is None and handle.path is None:
        raise BadInput("output is needed for a model that has no file")
    out = Path(output) if output is not None else handle.path.with_name(handle.path.stem + ".sim.onnx")
    source = check_images if check_images is not None else default_calib_dir()
    check_writable(out, inputs=(handle.path, source))  # never onto or into what is read
    check = load_check_images(handle, find_samples(source, int(samples), flag="check_images", labels=False), source)
    proto = with_weights(handle)
    simplified, diff = simplify_checked(handle, proto, check, float(tolerance))
    data = model_bytes(simplified)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return SimplifyReport(handle.name, str(out), len(proto.graph.node), len(simplified.graph.node),
                          handle.size_bytes(), len(data), diff, check.n, float(tolerance), time.perf_counter() - start)
