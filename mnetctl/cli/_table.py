"""Tables that fit the console: numbers are never cut, wrapped or ellipsised; the least important columns go first.

Every command builds its tables through `print_table`. Each column says what kind of text it holds and how
important it is; when the table would not fit the console, columns are dropped in order of `drop` (highest
first) and one dim line names them (`--wide` shows all). If even the columns that are always shown do not fit,
the table is printed wider than the console rather than cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ._app import AppConsole, console as default_console

_UNBOUNDED = 100_000


@dataclass(frozen=True)
class Col:
    """One column. kind: "num" (never wrapped: numbers, budgets, shapes), "words" (wraps at spaces only),
    "fold" (names and paths: may break anywhere, nothing is lost). drop: 0 is always shown; higher goes first."""

    header: str = ""
    kind: str = "num"
    drop: int = 0
    justify: str | None = None
    style: str | None = None


def _lengths(cells: Sequence[str]) -> tuple[int, int]:
    """(longest unbreakable word, longest line) in cells (rich markup removed)."""
    word, line = 1, 1
    for cell in cells:
        plain = Text.from_markup(cell).plain if "[" in cell else cell
        line = max(line, len(plain))
        word = max([word] + [len(w) for w in plain.split()])
    return word, line


def _bounds(col: Col, cells: Sequence[str], show_header: bool) -> tuple[int, int]:
    """(narrowest, natural) width of a column's content."""
    head_word, head_line = _lengths([col.header]) if show_header and col.header else (1, 1)
    word, line = _lengths(cells)
    natural = max(line, head_line)
    if col.kind == "num":
        return max(line, head_word), natural
    if col.kind == "words":
        return max(word, head_word), natural
    return min(max(word, head_word), 8), natural


def _build(cols: Sequence[Col], rows: Sequence[Sequence[str]], widths: Sequence[int] | None, **table_kw: Any) -> Table:
    table = Table(**table_kw)
    for i, col in enumerate(cols):
        header = Text(col.header, no_wrap=False, overflow="fold")  # a header may wrap at spaces even over numbers
        table.add_column(header, justify=col.justify or ("right" if col.kind == "num" else "left"), style=col.style,
                         no_wrap=col.kind == "num", overflow="fold", width=None if widths is None else widths[i])
    for row in rows:
        table.add_row(*row)
    return table


def _total(cols: Sequence[Col], widths: Sequence[int], cons: AppConsole, table_kw: dict) -> int:
    """Width of the whole table (padding and borders included) with these column widths."""
    table = _build(cols, [], widths, **table_kw)
    return Measurement.get(cons, cons.options.update_width(_UNBOUNDED), table).maximum


def _share(lows: list[int], highs: list[int], room: int) -> list[int]:
    """Give `room` extra columns to the columns that want more than their minimum, in proportion to the want."""
    want = [h - lo for lo, h in zip(lows, highs)]
    total = sum(want)
    if total <= 0 or room <= 0:
        return list(lows)
    widths = [lo + (room * w) // total for lo, w in zip(lows, want)]
    left = room - sum(w - lo for w, lo in zip(widths, lows))
    for i in sorted(range(len(widths)), key=lambda i: -want[i]):
        if left <= 0:
            break
        if widths[i] < highs[i]:
            widths[i] += 1
            left -= 1
    return [min(w, h) for w, h in zip(widths, highs)]


def print_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], *, wide: bool = False,
                console: AppConsole | None = None, **table_kw: Any) -> list[str]:
    """Print the table fitted to the console (all of it with wide=True); return the headers of dropped columns."""
    cons = console or default_console
    show_header = table_kw.get("show_header", True)
    keep = list(range(len(cols)))
    bounds = [_bounds(col, [row[i] for row in rows], show_header) for i, col in enumerate(cols)]
    dropped: list[str] = []
    while True:
        kept = [cols[i] for i in keep]
        lows, highs = [bounds[i][0] for i in keep], [bounds[i][1] for i in keep]
        natural = _total(kept, highs, cons, table_kw)
        if wide or natural <= cons.width:
            widths, needed = highs, natural
            break
        narrowest = _total(kept, lows, cons, table_kw)
        droppable = [i for i in keep if cols[i].drop > 0]
        if narrowest <= cons.width or not droppable:
            widths = _share(lows, highs, cons.width - narrowest) if narrowest <= cons.width else lows
            needed = max(narrowest, _total(kept, widths, cons, table_kw))
            break
        worst = max(droppable, key=lambda i: (cols[i].drop, i))  # the least important; the rightmost of equals
        keep.remove(worst)
        dropped.append(cols[worst].header)
    table = _build(kept, [[row[i] for i in keep] for row in rows], widths, **table_kw)
    with cons.widened(needed):
        cons.print(table)
    if dropped:
        cons.print(f"[dim]more columns: --wide (left out here: {', '.join(dropped)})[/]", soft_wrap=True)
    return dropped
