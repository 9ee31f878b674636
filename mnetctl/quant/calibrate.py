"""Calibration: real images, preprocessed as the model's metadata says, fed to ONNX Runtime's calibrators.

Progress goes to an optional `on_progress(done, total, label)` callback (mnetctl.progress), one call per batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..data import BadImage, Preprocessor, Sample, iter_batches, read_image_bytes
from ..errors import BadInput, short
from ..progress import ProgressFn, report
from .settings import CALIB_BATCH, METHODS, QuantSettings


def calibration_hash(samples: Iterable[Sample]) -> str:
    """sha256 over the calibration set: for each image in order, its file name (as bytes) and its bytes.

    An image that cannot be read hashes as its name and a marker: the calibration reader reports it and
    goes on, so one bad file is never fatal here either.
    """
    digest = hashlib.sha256()
    for sample in samples:
        path = Path(sample.path)
        digest.update(os.fsencode(path.name) + b"\0")  # any name, also one that is not valid UTF-8
        try:
            digest.update(read_image_bytes(path))
        except BadImage:
            digest.update(b"\0unreadable")
        digest.update(b"\0")
    return digest.hexdigest()


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds real images, preprocessed by the model's own preprocessor, to the ORT calibrator."""

    def __init__(self, samples: Sequence[Sample], pre: Preprocessor, input_name: str, batch: int = CALIB_BATCH,
                 on_progress: ProgressFn | None = None, label: str = "calibrate"):
        self.samples = list(samples)
        self.pre = pre
        self.input_name = input_name
        self.batch = int(batch)
        self.on_progress = on_progress
        self.label = label
        self.failures: list[tuple[str, str]] = []
        self.used = 0
        self._iter: Any = None
        self.rewind()

    def __len__(self) -> int:
        return len(self.samples)

    def rewind(self) -> None:
        self._iter = iter_batches(self.samples, self.pre, self.batch)
        self.done = 0
        self.used = 0
        self.failures = []

    def get_next(self) -> dict[str, np.ndarray] | None:
        for b in self._iter:
            self.failures.extend((str(s.path), reason) for s, reason in b.failures)
            self.done += len(b) + len(b.failures)
            report(self.on_progress, self.done, len(self.samples), self.label)
            if len(b):
                self.used += len(b)
                return {self.input_name: np.ascontiguousarray(b.array)}
        return None


class _OneFeed(CalibrationDataReader):
    def __init__(self, feed: dict[str, np.ndarray]):
        self.feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self.feed = self.feed, None
        return feed


def quantizable_op_types() -> list[str]:
    """Every operator type ONNX Runtime's static quantizer handles (what it uses when given none)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def calibrate(model_path: Path, reader: ImageCalibrationReader, qs: QuantSettings, op_types: Sequence[str],
              workdir: Path, what: str = "") -> Path:
    """Run ORT's calibrator for `qs.method` over the reader and save the ranges it finds.

    The histogram methods get the batches one pass at a time, so that memory stays at one batch of
    activations (ORT's histogram calibrators otherwise keep every intermediate output of every image
    until the end). Returns the path of the range cache that `quantize_static(calibration_cache_path=...)`
    reads. `what` names the model in error messages.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    what = what or str(model_path)
    try:
        calibrator = create_calibrator(
            Path(model_path), list(op_types), augmented_model_path=str(workdir / "augmented.onnx"),
            calibrate_method=METHODS[qs.method], extra_options=qs.calibrator_options(),
        )
    except Exception as exc:
        raise BadInput(f"ONNX Runtime cannot calibrate {what}: {short(exc)}") from None
    with _quiet_stdout():
        try:
            if qs.method == "minmax":
                # MinMax keeps only per-batch min/max (small): one pass, so that a moving average
                # is the mean over batches (ORT merges separate passes with a 0.01 EMA instead)
                calibrator.collect_data(reader)
            else:
                while (feed := reader.get_next()) is not None:
                    calibrator.collect_data(_OneFeed(feed))
            if reader.used == 0:
                raise _none_readable(reader)
            ranges = calibrator.compute_data()
        except BadInput:
            raise
        except Exception as exc:  # ORT failing to run the model on the images
            if reader.used == 0 and reader.failures and isinstance(exc, ValueError):
                raise _none_readable(reader) from None
            raise BadInput(f"ONNX Runtime cannot calibrate {what}: {short(exc)}") from None
    cache = workdir / "calibration.json"
    save_tensors_data(ranges, cache)
    return cache


def _none_readable(reader: ImageCalibrationReader) -> BadInput:
    first = reader.failures[0] if reader.failures else None
    return BadInput(f"none of the {len(reader)} calibration images could be read",
                    f"first failure: {first[0]}: {first[1]}" if first else None)


@contextlib.contextmanager
def _quiet_stdout():
    """ORT's histogram calibrators print progress lines to stdout; keep stdout for mnetctl's report/JSON."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
