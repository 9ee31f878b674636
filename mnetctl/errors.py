"""Errors that the CLI turns into one line on stderr and an exit code.

Exit codes used everywhere:
  0  ok
  1  a budget, gate or regression check failed
  2  usage error or bad input (file, flag, data)
  3  the environment lacks what was asked (an execution provider, an optional package)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE = 1
EXIT_USAGE = 2
EXIT_ENV = 3


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
