"""File output: atomic writes (temporary file in the target folder, fsync, rename), single or as a set.

A crash, Ctrl-C or SIGTERM while writing never leaves a half-written model or report behind. A symlink
is written through (its target is replaced atomically); a character device or FIFO (/dev/null,
/dev/stdout, a pipe) is streamed into after the output is complete. Temporary files and folders are
locked (flock) while in use, so a later run can remove the ones a SIGKILLed run left behind.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from .errors import BadInput

try:
    import fcntl
except ImportError:  # not POSIX: no locks, so leftovers are never removed
    fcntl = None  # type: ignore[assignment]

STALE_AFTER_S = 3600  # leftovers older than this and not locked belong to a killed run
TEMP_DIR_PREFIX = "mnetctl-"
_STREAM_LINK = re.compile(r"^/(dev/std(in|out|err)|dev/fd/\d+|proc/(self|\d+)/fd/\d+)$")


class OutputError(BadInput):
    """An output could not be written: `path` as given, `reason` in the OS's words."""

    def __init__(self, path: Path | str, reason: str, hint: str | None = None):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot write {path}: {reason}", hint or "choose another output")


def _fsync(path: Path | str) -> None:
    """fsync a file or folder by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _is_stream(path: Path) -> bool:
    """True for /dev/stdout-like links and existing character devices or FIFOs: written into, not replaced."""
    if _STREAM_LINK.match(os.path.abspath(path)):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _refuse_odd(path: Path, flag: str | None = None) -> None:
    """Block devices and sockets are never outputs."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    kind = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else None
    if kind:
        where = f" ({flag})" if flag else ""
        raise BadInput(f"cannot write {path}{where}: it is {kind}", f"give a regular file to {flag or 'the output'}")


def _real_target(path: Path) -> Path:
    """The file a symlink (chain) points to; `path` itself otherwise."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_writable(path: Path, inputs: Iterable[Path | str | None] = (), flag: str = "-o/--output") -> Path:
    """Fail early (before long work) if `path` cannot be written or would overwrite or land in an input.

    `inputs` are files and folders the command reads; `flag` names the option that gave `path` in the
    messages. Writability is tested by creating (and removing) a probe file in the nearest existing
    folder: permission bits alone say nothing for root, read-only mounts or pseudo file systems such as /proc.
    """
    path = Path(path)
    if _is_stream(path):
        if path.exists() and not os.access(path, os.W_OK):
            raise BadInput(f"cannot write {path} ({flag}): permission denied", f"choose another {flag}")
        return path
    _refuse_odd(path, flag)
    target = _real_target(path)
    real = Path(os.path.realpath(target))
    for src in inputs:
        if src is None or str(src) == "":
            continue
        src_real = Path(os.path.realpath(src))
        if src_real.is_dir() and real != src_real and real.is_relative_to(src_real):
            raise BadInput(f"{flag} {path} would write into the input folder {src}", f"choose another {flag}")
        try:
            same = real == src_real or (Path(src).exists() and target.exists() and os.path.samefile(target, src))
        except OSError:
            same = False
        if same and not src_real.is_dir():
            raise BadInput(f"{flag} {path} would overwrite the input file {src}", f"choose another {flag}")
    if target.exists() and target.is_dir():
        raise BadInput(f"{flag} {path} is a directory", f"give a file name to {flag}")
    probe = target.parent if str(target.parent) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(f"cannot write {path} ({flag}): {probe} is not a directory", f"choose another {flag}")
    try:
        # an unnamed file where the OS supports it (O_TMPFILE): even Ctrl-C right here leaves nothing behind
        with tempfile.TemporaryFile(prefix=".mnetctl-probe-", suffix=".tmp", dir=probe):
            pass
    except OSError as exc:
        raise BadInput(f"cannot write {path} ({flag}): {probe} is not writable ({_reason(exc)})",
                       f"choose another {flag}") from None
    return path


# ------------------------------------------------------------------------------------------------ locks


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _remove_if_stale(path: Path, remove) -> None:
    """Remove `path` (with `remove`) if it is older than STALE_AFTER_S and nobody holds its lock."""
    try:
        if time.time() - path.lstat().st_mtime < STALE_AFTER_S or path.is_symlink():
            return
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        if _try_lock(fd):
            with contextlib.suppress(OSError):
                remove(path)
    finally:
        os.close(fd)


def clean_stale_temp_dirs(root: Path | str | None = None) -> None:
    """Remove `mnetctl-*` folders in the temporary folder that killed runs left behind."""
    root = Path(root or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if entry.name.startswith(TEMP_DIR_PREFIX) and entry.is_dir(follow_symlinks=False):
                _remove_if_stale(Path(entry.path), lambda p: shutil.rmtree(p))


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A private temporary folder (`prefix` starts with 'mnetctl-'), locked while in use, removed after."""
    clean_stale_temp_dirs()
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        fd = os.open(name, os.O_RDONLY)
        try:
            _try_lock(fd)
            yield Path(name)
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked(path: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if missing), waiting for other holders."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(path, _reason(exc)) from exc
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ outputs


def _temp_stem(name: str, folder: Path) -> str:
    """The target name, or a hash of it where `.NAME.xxxxxxxx.tmp` would not fit the file system's NAME_MAX."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    if len(name.encode("utf-8", "surrogateescape")) + 14 <= name_max:
        return name
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class _Output:
    """One pending output: a locked temporary file, then committed (fsync + rename, or streamed) or discarded."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.stream = _is_stream(self.path)
        self.tmp: Path | None = None
        self._fd: int | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def open(self) -> Path:
        try:
            if self.stream:  # the whole output is made first, then copied into the device or pipe
                clean_stale_temp_dirs()
                self._dir = tempfile.TemporaryDirectory(prefix=f"{TEMP_DIR_PREFIX}out-")
                self._fd = os.open(self._dir.name, os.O_RDONLY)
                _try_lock(self._fd)
                self.tmp = Path(self._dir.name) / (self.path.name or "out")
                return self.tmp
            _refuse_odd(self.path)
            target = _real_target(self.path)
            folder = target.parent
            folder.mkdir(parents=True, exist_ok=True)
            stem = _temp_stem(target.name, folder)
            pattern = re.compile(rf"^\.{re.escape(stem)}\.[0-9a-f]{{8}}\.tmp$")
            for old in folder.glob(f".{glob.escape(stem)}.*.tmp"):
                if pattern.match(old.name):
                    _remove_if_stale(old, Path.unlink)
            for _ in range(100):
                tmp = folder / f".{stem}.{secrets.token_hex(4)}.tmp"
                try:
                    self.tmp = tmp  # named before it exists: a Ctrl-C right after creation still removes it
                    self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                    _try_lock(self._fd)
                    return tmp
                except FileExistsError:
                    self.tmp = None
            raise FileExistsError(errno.EEXIST, f"no free temporary name next to {self.path}")
        except OSError as exc:
            self.discard()
            raise OutputError(self.path, _reason(exc)) from exc

    def flush(self) -> None:
        """Make the written bytes durable before anything is renamed."""
        if self.stream or self.tmp is None:
            return
        try:
            _fsync(self.tmp)
        except OSError as exc:
            raise OutputError(self.path, _reason(exc)) from exc

    def commit(self) -> None:
        assert self.tmp is not None
        try:
            if self.stream:
                with open(self.tmp, "rb") as src, open(self.path, "ab") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                target = _real_target(self.path)
                os.replace(self.tmp, target)
                self.tmp = None
                with contextlib.suppress(OSError):  # the rename itself durable too
                    _fsync(target.parent)
        except OSError as exc:
            raise OutputError(self.path, _reason(exc)) from exc
        finally:
            self.discard()

    def discard(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.cleanup()
            self._dir = None
        elif self.tmp is not None:
            with contextlib.suppress(OSError):
                self.tmp.unlink()
        self.tmp = None


def _as_output_error(exc: OSError, outputs: list[_Output]) -> OSError | OutputError:
    """An OSError raised while the outputs were being written, as an OutputError naming the output."""
    name = getattr(exc, "filename", None)
    for out in outputs:
        if name is not None and str(name) in (str(out.tmp), str(out.path)):
            return OutputError(out.path, _reason(exc))
    if name is None and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and outputs:
        folders = {out.path.parent for out in outputs}
        where = outputs[0].path if len(outputs) == 1 else folders.pop() if len(folders) == 1 else outputs[0].path
        return OutputError(where, _reason(exc))
    return exc


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """An OSError inside becomes an OutputError naming `path` (one file of a set being written)."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(path, _reason(exc)) from exc


@contextlib.contextmanager
def atomic_paths(paths: Iterable[Path | str]) -> Iterator[list[Path]]:
    """Temporary paths for several outputs; renamed onto them, in the order given, only once all were written.

    If anything fails before the renames, none of the outputs changes. Put the file readers look at
    first (e.g. sweep.json) last.
    """
    outputs = [_Output(p) for p in paths]
    try:
        temps = [out.open() for out in outputs]
        try:
            yield temps
        except OSError as exc:
            converted = _as_output_error(exc, outputs)
            if converted is exc:
                raise
            raise converted from exc
        for out in outputs:
            out.flush()
        for out in outputs:
            out.commit()
    finally:
        for out in outputs:
            out.discard()


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync and rename it onto `path`, else delete it.

    The temporary name is chosen before the file is created, so a Ctrl-C at any instant is cleaned up.
    The file is created with the usual permissions (0666 minus the umask), not the 0600 of
    `tempfile.mkstemp`, so outputs are readable like any other file the user writes.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_texts(files: dict[Path | str, str]) -> list[Path]:
    """Several text files as one set (see atomic_paths), renamed in the dict's order."""
    with atomic_paths(files) as temps:
        for path, tmp, text in zip(files, temps, files.values()):
            with writing(path):
                tmp.write_bytes(text.encode("utf-8"))
    return [Path(p) for p in files]
