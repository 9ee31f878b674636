"""ONNX Runtime sessions (the one module that creates them)."""

from __future__ import annotations

from pathlib import Path


def cpu_session(model: Path | str | bytes, threads: int | None = None):
    """A plain CPU execution-provider session (used by eval/predict/verification)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
