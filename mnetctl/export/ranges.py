"""Activation ranges a QDQ model does not carry (the layers `quantize` kept float), measured on real images.

A full-integer export needs int8 parameters on every activation. For the tensors the QDQ model quantizes
they are its own; for the others this module runs the QDQ model itself in ONNX Runtime over calibration
images (the same default set as `quantize`: the task's shipped calibration sample, or a trained model's own
images) and takes each tensor's min/max (0 always inside the range), giving asymmetric int8 parameters;
with `average`, the mean over batches of CALIB_BATCH images of each batch's min/max (ORT's moving average).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import BadInput
from ..progress import ProgressFn, report
from .graph_ops import QParams

CALIB_IMAGES = 100
CALIB_BATCH = 10


def int8_params(lo: float, hi: float) -> QParams:
    """Asymmetric int8 parameters for a real range (0 inside it, as integer kernels need an exact zero)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255.0
    zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return QParams(float(scale), zero)


def input_params(mean: Iterable[float], std: Iterable[float]) -> QParams:
    """int8 parameters of the normalised image input: the exact range (0 - mean) / std .. (255 - mean) / std."""
    mean, std = np.asarray(list(mean), np.float64), np.asarray(list(std), np.float64)
    lo, hi = np.minimum(-mean / std, (255 - mean) / std), np.maximum(-mean / std, (255 - mean) / std)
    return int8_params(float(lo.min()), float(hi.max()))


def measure(model, tensors: list[str], calib: Path | str | None = None, limit: int = CALIB_IMAGES,
            on_progress: ProgressFn | None = None, average: bool = False) -> dict[str, QParams]:
    """int8 parameters of the named float tensors of `model` (a Model handle), from its outputs on real images."""
    from onnx import TensorProto, helper

    from ..data import find_samples, iter_batches
    from ..model import fit_batches
    from ..quant.pipeline import default_calib_data
    from ..runtime import open_cpu_session

    if not tensors:
        return {}
    proto = type(model.proto)()
    proto.CopyFrom(model.proto)
    known = {o.name for o in proto.graph.output}
    for name in tensors:
        if name not in known:
            proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = open_cpu_session(proto.SerializeToString(), model.name)
    source = Path(calib) if calib is not None else default_calib_data(model)
    samples = find_samples(source, limit=limit, flag="calib", labels=False)
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    los: dict[str, list[float]] = {t: [] for t in tensors}
    his: dict[str, list[float]] = {t: [] for t in tensors}
    seen = 0
    for batch in iter_batches(samples, model.preprocessor, CALIB_BATCH):
        for chunk, _ in fit_batches(batch.array, model.input):
            outs = session.run(tensors, {model.input_name: chunk})
            for name, value in zip(tensors, outs):
                lo[name] = min(lo[name], float(np.min(value)))
                hi[name] = max(hi[name], float(np.max(value)))
                los[name].append(float(np.min(value)))
                his[name].append(float(np.max(value)))
        seen += len(batch) + len(batch.failures)
        report(on_progress, seen, len(samples), "ranges")
    if not np.isfinite(list(lo.values())).all():
        raise BadInput(f"none of the calibration images in {source} could be read", "give readable images with --calib")
    if average:
        return {t: int8_params(float(np.mean(los[t])), float(np.mean(his[t]))) for t in tensors}
    return {t: int8_params(lo[t], hi[t]) for t in tensors}
