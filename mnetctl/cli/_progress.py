"""Rich progress bars for the library's `on_progress(done, total, label)` callbacks (the only place bars are drawn)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from ..progress import ProgressFn
from ._app import AppConsole


@contextmanager
def progress_bar(enabled: bool = True, transient: bool = True) -> Iterator[ProgressFn | None]:
    """Yield a callback that draws one bar per label on stderr, or None when disabled or stderr is no terminal.

    A label "stage · detail" keeps one bar per stage and shows the latest detail beside it.

    Refreshes at most ~8 times a second, so a tight timing loop that reports every run costs next to nothing.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = AppConsole(stderr=True)  # COLUMNS=0 or garbage: width 80, not an empty bar
    if not enabled or not console.is_terminal:
        yield None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, transient=transient, auto_refresh=False)
    tasks: dict[str, int] = {}
    last = [0.0]

    def on_progress(done: float, total: float | None, label: str) -> None:
        key = label.partition(" · ")[0]
        if key not in tasks:
            tasks[key] = bar.add_task(label, total=total)
        bar.update(tasks[key], completed=done, total=total, description=label)
        now = time.perf_counter()
        if now - last[0] > 0.125 or (total is not None and done >= total):
            last[0] = now
            bar.refresh()

    with bar:
        yield on_progress
