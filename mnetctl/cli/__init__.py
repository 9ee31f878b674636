"""`mnetctl` command line: thin command modules over the library layer.

Known errors become one red line on stderr (plus a hint) and an exit code; a full traceback is
shown only with MNETCTL_DEBUG=1.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import EXIT_INTERNAL, EXIT_USAGE, MnetctlError, debug_enabled
from . import _paths
from ._app import OutputLost, app, as_flags, err_console, silence

# One module per command (or command group); each registers itself on `app` when imported.
COMMAND_MODULES = [
    "build",
    "inspect",
    "archs",
    "eval",
    "predict",
    "compare",
    "bench",
    "profiles",
    "doctor",
    "quantize",
    "simplify",
    "sweep",
    "tune",
    "train",
    "export",
    "env",
    "worker",
    "cluster",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def _one_line(text: str) -> str:
    """One line, with rich markup escaped (a hint like `pip install 'mnetctl[litert]'` must print as is)."""
    from rich.markup import escape

    return escape(" ".join(str(text).split()))


# A reader that went away (`mnetctl ... | head -n 1`) ends the run quietly with the shell's code for SIGPIPE.
EXIT_BROKEN_PIPE = 141


def _output_lost(exc: OutputLost) -> int:
    """A write to stdout/stderr failed: quiet 141 for a broken pipe, else one line on stderr and exit 2."""
    silence(exc.stream)  # the interpreter's last flush must not fail a second time
    if isinstance(exc.error, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    if exc.stream == "stdout":
        err_console.print(f"[bold red]error:[/] {_one_line(exc)} [dim]- hint: redirect stdout to a file or /dev/null[/]",
                          soft_wrap=True)
    return EXIT_USAGE


def _flush_stdout() -> int | None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as exc:
        return _output_lost(OutputLost("stdout", exc))
    return None


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the process exit code (143 after SIGTERM)."""
    if argv is None:
        _paths.catch_sigterm()  # SIGTERM cleans up like Ctrl-C
    try:
        if sys.stdout is None:  # started with stdout closed (`>&-`): every command reports on stdout
            raise OutputLost("stdout", None)
        rc = _paths.run(lambda: app(args=argv, prog_name="mnetctl", standalone_mode=False), argv)
        code = rc if isinstance(rc, int) else 0
        if code == 130:  # Ctrl-C: typer turns KeyboardInterrupt into exit code 130 without a word
            err_console.print("[bold red]interrupted[/]")
    except MnetctlError as exc:
        if debug_enabled():
            raise
        # One line, whatever the terminal width: what went wrong (naming the file or flag), then what to do.
        hint = f" [dim]- hint: {_one_line(exc.hint)}[/]" if exc.hint else ""
        err_console.print(f"[bold red]error:[/] {_one_line(as_flags(exc.message))}{hint}", soft_wrap=True)
        code = exc.exit_code
    except OutputLost as exc:
        code = _output_lost(exc)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err_console.print("[bold red]aborted[/]")
        code = 130
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        code = 130
    except Exception as exc:  # usage errors of the CLI parser, then unknown failures
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            if hasattr(exc, "format_message") and type(exc).__name__ != "NoArgsIsHelpError":
                # the parser's usage errors (unknown option, value of the wrong type, ...) as one line too
                ctx = getattr(exc, "ctx", None)
                where = f"{ctx.command_path} --help" if ctx is not None else "mnetctl --help"
                err_console.print(f"[bold red]error:[/] {_one_line(exc.format_message())} [dim]- hint: see {where}[/]",
                                  soft_wrap=True)
            else:
                exc.show()  # `mnetctl` or a command group without arguments: its help
            code = _flush_stdout() or exc.exit_code
            if argv is None:
                sys.exit(code)
            return code
        if debug_enabled():
            raise
        err_console.print(
            f"[bold red]error:[/] {type(exc).__name__}: {_one_line(exc)}"
            " [dim](set MNETCTL_DEBUG=1 for the traceback)[/]",
            soft_wrap=True,
        )
        code = EXIT_USAGE if isinstance(exc, OSError) else EXIT_INTERNAL
    code = _paths.exit_code(code)
    code = _flush_stdout() or code
    if argv is None:
        sys.exit(code)
    return code
