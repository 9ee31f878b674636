"""Path flags on the command line: empty values, trailing slashes, OS errors named by flag, SIGTERM.

The parsed options are `Path`s, which forget that a value was "" or ended in "/": those are checked on
the raw arguments before parsing.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from ..errors import BadInput, MnetctlError
from ..fsutil import OutputError

# flags whose value is a file to write, per command ("*": every command that has the flag)
OUTPUT_FILE_FLAGS = {"-o": ("build", "quantize", "simplify"), "--output": ("build", "quantize", "simplify"),
                     "--json": ("bench",), "--junit": ("bench",), "--markdown": ("bench",)}
OUTPUT_DIR_FLAGS = {"-o": ("sweep",), "--out": ("sweep",)}
INPUT_FLAGS = ("--data", "-d", "--calib", "--eval", "--check-images", "--profile", "--baseline", "--tflite",
               "--weights", "--device", "-D", "--cache")


def _command(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def _pairs(args: list[str]) -> list[tuple[str, str]]:
    """(flag, value) for every known path flag given as `FLAG VALUE` or `FLAG=VALUE`."""
    known = set(OUTPUT_FILE_FLAGS) | set(OUTPUT_DIR_FLAGS) | set(INPUT_FLAGS)
    found = []
    for i, arg in enumerate(args):
        if arg == "--":
            break
        flag, eq, value = arg.partition("=")
        if flag in known and eq and flag.startswith("--"):
            found.append((flag, value))
        elif arg in known and i + 1 < len(args):
            found.append((arg, args[i + 1]))
    return found


def _kind(flag: str, command: str | None) -> str:
    if command in OUTPUT_FILE_FLAGS.get(flag, ()):
        return "file"
    if command in OUTPUT_DIR_FLAGS.get(flag, ()):
        return "dir"
    return "input" if flag in INPUT_FLAGS else ""


def check_path_args(args: list[str]) -> None:
    """Refuse an empty path, and an output file name ending in '/' (that names a folder, not a file)."""
    command = _command(args)
    for flag, value in _pairs(args):
        kind = _kind(flag, command)
        if not kind:
            continue
        if value == "":
            raise BadInput(f"{flag} is empty", f"give a path to {flag}")
        if kind == "file" and value != "-" and value.endswith(("/", os.sep)):
            raise BadInput(f"{flag} {value} ends with '/', so it names a folder, not a file",
                           f"give a file name, e.g. {value}{'report.json' if command == 'bench' else 'model.onnx'}")


def flag_for(path: Path | str | None, args: list[str]) -> tuple[str, str] | None:
    """(flag, kind) of the argument that gave `path` (or the folder it is in)."""
    if path is None:
        return None
    command = _command(args)
    wanted = os.path.abspath(path)
    for flag, value in _pairs(args):
        if not value:
            continue
        given = os.path.abspath(value)
        kind = _kind(flag, command)
        if kind and (given == wanted or (kind == "dir" and os.path.dirname(wanted) == given)
                     or os.path.realpath(given) == os.path.realpath(wanted)):
            return flag, kind
    return None


def named_error(exc: BaseException, args: list[str] | None) -> MnetctlError | None:
    """An OutputError or OSError as a one-line error naming the file and, where known, the flag."""
    args = [str(a) for a in (sys.argv[1:] if args is None else args)]
    if isinstance(exc, OutputError):
        found = flag_for(exc.path, args)
        if found is None:
            return None
        flag = found[0]
        return BadInput(f"cannot write {exc.path} ({flag}): {exc.reason}", _hint(exc.reason, flag))
    if not isinstance(exc, OSError) or isinstance(exc, MnetctlError):
        return None
    reason = exc.strerror or str(exc)
    if exc.filename is None:  # stdout's failures are the consoles' (cli._app.OutputLost)
        return None
    found = flag_for(exc.filename, args)
    where = f" ({found[0]})" if found else ""
    verb = "write" if found and found[1] in ("file", "dir") else "read"
    return BadInput(f"cannot {verb} {exc.filename}{where}: {reason}", _hint(reason, found[0]) if found else None)


def _hint(reason: str, flag: str) -> str:
    return f"free some space or choose another {flag}" if "space" in reason.lower() else f"choose another {flag}"


# ---------------------------------------------------------------------------------------------- SIGTERM

EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it
_terminated = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: every cleanup (temporary files and folders) runs."""


def _on_sigterm(signum, frame) -> None:
    global _terminated
    if _terminated:  # a second SIGTERM while cleaning up: let the cleanup finish
        return
    _terminated = True
    raise Terminated()


def catch_sigterm() -> None:
    """Turn SIGTERM into Terminated for the rest of this process (the main thread only)."""
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _on_sigterm)


def exit_code(code: int) -> int:
    """130 (interrupted) becomes 143 when the interrupt was a SIGTERM."""
    return EXIT_TERMINATED if _terminated and code == 130 else code


def run(call, argv: list[str] | None):
    """`call()` (the app) after the raw path checks, with OS errors named by file and flag."""
    args = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    check_path_args(args)
    try:
        return call()
    except (OutputError, OSError) as exc:
        named = named_error(exc, args)
        if named is None:
            raise
        raise named from exc
