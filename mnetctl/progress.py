"""The progress contract between the library and the CLI.

Library functions never draw anything: long work takes an optional `on_progress(done, total, label)` callback
and calls it as it goes (`total` is None when the amount of work is open-ended, e.g. a timed benchmark).
The CLI turns callbacks into Rich bars (`mnetctl.cli._progress`).
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Callable[[float, Optional[float], str], None]


def report(on_progress: ProgressFn | None, done: float, total: float | None, label: str) -> None:
    """Call the callback if there is one (the one line every library loop uses)."""
    if on_progress is not None:
        on_progress(done, total, label)
