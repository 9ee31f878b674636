"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash or Ctrl-C while writing never leaves a half-written model or report behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import BadInput


def check_writable(path: Path, inputs: tuple[Path, ...] = (), flag: str = "-o/--output") -> Path:
    """Fail early (before long work) if `path` cannot be written or would overwrite an input.

    `flag` names the option that gave `path` in the messages. Writability is tested by creating (and
    removing) a probe file in the nearest existing folder: permission bits alone say nothing for root,
    read-only mounts or pseudo file systems such as /proc.
    """
    path = Path(path)
    for src in inputs:
        try:
            same = Path(src).exists() and path.exists() and os.path.samefile(path, src)
        except OSError:
            same = False
        if same:
            raise BadInput(f"{flag} {path} would overwrite the input file {src}", f"choose another {flag}")
    if path.exists() and path.is_dir():
        raise BadInput(f"{flag} {path} is a directory", f"give a file name to {flag}")
    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(f"cannot write {path} ({flag}): {probe} is not a directory", f"choose another {flag}")
    try:
        # an unnamed file where the OS supports it (O_TMPFILE): even Ctrl-C right here leaves nothing behind
        with tempfile.TemporaryFile(prefix=".mnetctl-probe-", suffix=".tmp", dir=probe):
            pass
    except OSError as exc:
        raise BadInput(f"cannot write {path} ({flag}): {probe} is not writable ({exc.strerror or exc})",
                       f"choose another {flag}") from None
    return path


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it onto `path`, else delete it.

    The temporary name is chosen before the file is created, so a Ctrl-C at any instant (even
    between creating the file and returning its name) is cleaned up. The file is created with the
    usual permissions (0666 minus the umask), not the 0600 of `tempfile.mkstemp`, so outputs are
    readable like any other file the user writes.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(100):
                tmp_path = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
                try:
                    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                    break
                except FileExistsError:
                    tmp_path = None
            else:
                raise FileExistsError(f"no free temporary name next to {path}")
        except OSError as exc:
            raise BadInput(f"cannot write {path}: {exc.strerror or exc}", "choose another -o/--output") from exc
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        raise


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
