"""Loading model files with clear errors: missing, empty, corrupt or non-ONNX files -> BadInput (exit 2)."""

from __future__ import annotations

from pathlib import Path

import onnx

from .errors import BadInput


def check_model_path(path: Path | str) -> Path:
    path = Path(path)
    if not path.exists():
        raise BadInput(f"model file {path} does not exist")
    if path.is_dir():
        raise BadInput(f"model path {path} is a directory, not an ONNX file")
    if path.stat().st_size == 0:
        raise BadInput(f"model file {path} is empty")
    return path


def load_onnx(path: Path | str, load_external_data: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file; anything that is not a loadable ONNX model is a BadInput naming the file."""
    path = check_model_path(path)
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError, external-data errors, ...
        raise BadInput(f"{path} is not a valid ONNX model ({type(exc).__name__})", "pass an .onnx file written by an ONNX exporter or `mnetctl build`") from None
    if not model.graph.node or not model.graph.output:
        raise BadInput(f"{path} is not a valid ONNX model (no graph nodes/outputs)")
    return model
