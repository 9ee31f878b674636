"""Loading model files with clear errors: missing, empty, corrupt or non-ONNX files -> BadInput (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from .errors import BadInput, short


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
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, ...
        raise BadInput(f"{path} is not a valid ONNX model ({type(exc).__name__})", "pass an .onnx file written by an ONNX exporter or `mnetctl build`") from None
    files = external_data_files(path, model)
    if load_external_data and files:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(path.parent))
        except Exception as exc:  # a truncated or unreadable data file
            raise BadInput(f"cannot read the external data of {path}: {short(exc)}") from None
    if not model.graph.node or not model.graph.output:
        raise BadInput(f"{path} is not a valid ONNX model (no graph nodes/outputs)")
    bad = _non_text_name(model)
    if bad is not None:
        raise BadInput(f"{path} is not a valid ONNX model ({bad} is not UTF-8 text: the file is corrupt)")
    return model


def _non_text_name(model: onnx.ModelProto) -> str | None:
    """The first name or metadata string that protobuf could only return as bytes (invalid UTF-8), if any.

    ONNX strings are UTF-8; a corrupt file can still parse, with such strings surfacing as `bytes`
    that no report or table can print.
    """
    graph = model.graph
    for i, node in enumerate(graph.node):
        for text in (node.name, node.op_type, node.domain, *node.input, *node.output):
            if isinstance(text, bytes):
                return f"a name in node {i}"
    for kind, items in (("graph input", graph.input), ("graph output", graph.output), ("initializer", graph.initializer)):
        for i, item in enumerate(items):
            if isinstance(item.name, bytes):
                return f"the name of {kind} {i}"
    for prop in model.metadata_props:
        if isinstance(prop.key, bytes) or isinstance(prop.value, bytes):
            return "a metadata entry"
    return None


def cannot_run(path: Path | str, exc: BaseException) -> BadInput:
    """The error for a model ONNX Runtime loaded but cannot run (e.g. a corrupt attribute)."""
    return BadInput(f"ONNX Runtime cannot run {path}: {short(exc)}")


def guarded_run(session, path: Path | str):
    """`feeds -> session.run(None, feeds)`, a run error raised as `cannot_run(path, ...)` (an interleave.Runnable fn)."""

    def run(feeds: dict):
        try:
            return session.run(None, feeds)
        except Exception as exc:  # ORT loaded the graph but cannot run it
            raise cannot_run(path, exc) from None

    return run


def _locations(proto) -> list[str]:
    """The external-data file names of the initializers, in order, each once."""
    names: dict[str, None] = {}
    for init in proto.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                names.setdefault(entry.value)
    return list(names)


def external_data_files(path: Path, proto) -> list[Path]:
    """The external-data files a model names; each must be a file inside the model's folder (BadInput if not)."""
    files = []
    for loc in _locations(proto):
        rel = os.path.normpath(loc) if loc else ""
        if not rel or os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
            raise BadInput(f"{path} names external data {loc!r} outside its folder; refused")
        f = path.parent / rel
        if not f.is_file():
            raise BadInput(f"{path} needs its external data file {f}, which does not exist"
                           if not f.exists() else f"{path}: its external data {f} is not a file")
        files.append(f)
    return files


def size_on_disk(path: Path | str, proto) -> int:
    """Bytes of a model file plus the external-data files its initializers name (each counted once)."""
    path = Path(path)
    total = path.stat().st_size
    for loc in _locations(proto):
        f = path.parent / loc
        if f.is_file():
            total += f.stat().st_size
    return total
