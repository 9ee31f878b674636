"""Errors that the CLI turns into one line on stderr and an exit code.

Exit codes used everywhere:
  0  ok
  1  a budget, gate or regression check failed
  2  usage error or bad input (file, flag, data)
  3  the environment lacks what was asked (an execution provider, an optional package)
  4  an internal error (a bug in mnetctl or a library under it); MNETCTL_DEBUG=1 shows the traceback
  5  the run ended but part of it failed where it ran (a cluster node died and no other node serves its device);
     the outputs name what failed, where and why
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE = 1
EXIT_USAGE = 2
EXIT_ENV = 3
EXIT_INTERNAL = 4
EXIT_PARTIAL = 5


class MnetctlError(Exception):
    """A known failure with a message for the user and an optional hint."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class BadInput(MnetctlError):
    """Bad flag value, missing/corrupt file, unusable data (exit 2)."""

    exit_code = EXIT_USAGE


class EnvironmentMissing(MnetctlError):
    """An execution provider or optional package is not available here (exit 3)."""

    exit_code = EXIT_ENV


class GateFailed(MnetctlError):
    """A budget, accuracy gate or regression check failed (exit 1)."""

    exit_code = EXIT_GATE


class StageFailed(MnetctlError):
    """A stage could not finish where it ran: its node or worker died and no other node could take it (exit 5)."""

    exit_code = EXIT_PARTIAL


def short(exc: BaseException, limit: int = 300) -> str:
    """One line for any exception: its last non-empty line (libraries put the detail last), at most `limit` chars.

    The one way mnetctl turns a foreign exception (ONNX Runtime, protobuf, OS) into message text.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def debug_enabled() -> bool:
    """MNETCTL_DEBUG=1 (or any value but '', 0, false, no): show tracebacks and runtime logs."""
    import os

    return os.environ.get("MNETCTL_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
