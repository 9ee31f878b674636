"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash or Ctrl-C while writing never leaves a half-written model or report behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import BadInput


def check_writable(path: Path, inputs: tuple[Path, ...] = ()) -> Path:
    """Fail early (before long work) if `path` cannot be written or would overwrite an input."""
    path = Path(path)
    for src in inputs:
        try:
            if src.exists() and path.exists() and path.resolve() == Path(src).resolve():
                raise BadInput(f"output {path} would overwrite the input file", "choose another -o/--output")
        except OSError:
            pass
    parent = path.parent if str(path.parent) else Path(".")
    if path.exists() and path.is_dir():
        raise BadInput(f"output {path} is a directory", "give a file name with -o/--output")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise BadInput(f"cannot write {path}: {probe} is not a writable directory", "choose another -o/--output")
    return path


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}", "choose another -o/--output") from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
