"""The Typer application object and the helpers every command module shares."""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator

import typer
from rich.console import Console, ConsoleDimensions

app = typer.Typer(
    name="mnetctl",
    help="Build, import, quantize, evaluate and benchmark MobileNet classifiers for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# A console narrower than this (COLUMNS=0, a garbled terminal size) is taken as "width unknown".
MIN_WIDTH = 20
DEFAULT_WIDTH = 80


class OutputLost(Exception):
    """Writing to stdout or stderr failed: a broken pipe (the reader went away), a full disk, a closed stream.

    Not an OSError on purpose: click turns every EPIPE OSError into a silent exit 1, which reads as "gate failed".
    """

    def __init__(self, stream: str, error: OSError | None) -> None:
        self.stream, self.error = stream, error
        super().__init__(f"cannot write to {stream}: {error.strerror if error and error.strerror else 'it is closed'}")


class _Guarded:
    """A stream whose write/flush failures become OutputLost naming the stream."""

    def __init__(self, stream: Any, name: str) -> None:
        self._stream, self._name = stream, name

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputLost(self._name, exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputLost(self._name, exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AppConsole(Console):
    """The CLI's console: its width is read at each print, a width under MIN_WIDTH counts as unknown (80), and a
    failed write raises OutputLost instead of rich's silent exit 1."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kwargs.get("width") is None:
            self._width = None  # re-read COLUMNS at each print rather than once at import
        self._forced_width: int | None = None

    @property
    def size(self) -> ConsoleDimensions:
        if self._forced_width is not None:
            return ConsoleDimensions(self._forced_width, super().size.height)
        dims = super().size
        return dims if dims.width >= MIN_WIDTH else ConsoleDimensions(DEFAULT_WIDTH, dims.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    @property
    def file(self) -> Any:
        return _Guarded(Console.file.fget(self), "stderr" if self.stderr else "stdout")

    @file.setter
    def file(self, new_file: Any) -> None:
        self._file = new_file

    def on_broken_pipe(self) -> None:
        raise OutputLost("stderr" if self.stderr else "stdout", BrokenPipeError(32, "Broken pipe"))

    @contextmanager
    def widened(self, width: int) -> Iterator[None]:
        """Render at least `width` columns wide (lines longer than the terminal wrap there, nothing is cut)."""
        old, self._forced_width = self._forced_width, max(width, self.width)
        try:
            yield
        finally:
            self._forced_width = old


console = AppConsole(highlight=False)
err_console = AppConsole(stderr=True, highlight=False)

# Shared option aliases (one definition, used by every command that takes them).
ModelArg = Annotated[Path, typer.Argument(help="ONNX model file.", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
WideFlag = Annotated[bool, typer.Option("--wide", help="Show every table column, however wide the terminal.")]


def print_json(obj: Any) -> None:
    """Machine output goes to stdout unstyled."""
    if sys.stdout is None:
        raise OutputLost("stdout", None)
    out = _Guarded(sys.stdout, "stdout")
    out.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    out.flush()


def silence(stream: str) -> None:
    """Point the stream's file descriptor at /dev/null, so the interpreter's last flush cannot fail again."""
    target = sys.stdout if stream == "stdout" else sys.stderr
    try:
        fd = target.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


# Library errors name parameters ("batch must be ..."); on the command line they name the flag instead.
# Every command spells a parameter with the same flag, so one table serves them all.
PARAM_FLAGS = {
    "batch": "--batch", "data": "--data", "limit": "--limit", "threads": "--threads", "top": "--top",
    "iterations": "--iterations", "warmup": "--warmup", "duration": "--duration", "width": "--width",
    "resolution": "--resolution", "classes": "--classes", "opset": "--opset", "padding": "--padding",
    "input_format": "--input-format", "precision": "--precision", "weights": "--weights", "seed": "--seed", "crop_fraction": "--crop-fraction", "mean": "--mean", "std": "--std",
    "samples": "--samples", "calib": "--calib", "metric": "--metric", "tolerance": "--tolerance",
    "budget_ms": "--budget-ms", "precisions": "--precisions", "eps": "--ep", "ep_options": "--ep-option",
    "method": "--method", "fmt": "--format", "activations": "--activations", "weight_grid": "--weight-grid",
    "keep_float": "--keep-float", "eval_data": "--eval", "eval_limit": "--eval-limit", "max_drop": "--max-drop",
    "check_images": "--check-images", "float_max_channels": "--float-max-channels", "labels": "--labels",
    "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "optimizer": "--optimizer",
    "label_smoothing": "--label-smoothing", "dropout": "--dropout", "weight_decay": "--weight-decay",
    "hidden": "--hidden", "patience": "--patience", "views": "--views", "val_split": "--val-split",
    "annotations": "--annotations", "min_score": "--min-score", "postprocess": "--postprocess",
    "masks": "--masks", "output_stride": "--output-stride", "mask": "--mask", "draw": "--draw",
    "temperature": "--temperature", "alpha": "--alpha", "train_data": "--train-data", "val_data": "--val-data",
}


def as_flags(message: str, hint: str | None = None, extra: dict[str, str] | None = None) -> str | tuple[str, str | None]:
    """'batch must be ...' -> '--batch must be ...': a leading parameter name becomes its flag (`extra` adds or
    overrides a command's own spellings); with a hint, parameter names with an underscore in it are mapped too
    and (message, hint) is returned."""
    flags = {**PARAM_FLAGS, **(extra or {})}
    word = re.match(r"([a-z_0-9]+)(?=[ :])", message)
    if word and word.group(1) in flags:
        message = flags[word.group(1)] + message[word.end():]
    if hint is None:
        return message
    return message, re.sub(r"\b[a-z]+(?:_[a-z0-9]+)+\b", lambda m: flags.get(m.group(0), m.group(0)), hint)


@contextmanager
def flag_names(extra: dict[str, str] | None = None):
    """Re-raise a library BadInput in the command's words: parameters named by their flags."""
    from ..errors import BadInput

    try:
        yield
    except BadInput as exc:
        message, hint = as_flags(exc.message, exc.hint or "", extra)
        if message == exc.message and hint == (exc.hint or ""):
            raise
        raise BadInput(message, hint or None) from None
