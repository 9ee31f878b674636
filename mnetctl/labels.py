"""Class names of a classifier: label files in, `mnetctl.labels` metadata out.

`mnetctl.labels` is a JSON list of names; name i belongs to logit i + label_offset (the offset predict and eval
apply already, `mnetctl.meta.ModelMeta.label_offset`), so a model with a background logit 0 lists one name
fewer than it has outputs. A label file has one name per line, or `index name` lines numbered 0, 1, 2, ...
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import BadInput
from .meta import ModelMeta

KEY = "labels"  # metadata key mnetctl.labels
MAX_LABEL_FILE_BYTES = 16 << 20
_INDEXED = re.compile(r"^(\d+)\s+(\S.*)$")


def read_label_file(path: Path | str, classes: int) -> list[str]:
    """The names of a label file with `classes` lines (one per logit) or `classes - 1` (no background logit).

    Raises BadInput naming `labels PATH` when the file cannot be read or holds another number of names.
    """
    path = Path(path)
    try:
        raw = path.read_bytes() if path.stat().st_size <= MAX_LABEL_FILE_BYTES else None
    except OSError as exc:
        raise BadInput(f"labels {path}: cannot read ({exc.strerror or exc})") from None
    if raw is None:
        raise BadInput(f"labels {path}: larger than {MAX_LABEL_FILE_BYTES >> 20} MiB; a label file has one name a line")
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise BadInput(f"labels {path}: not UTF-8 text; a label file has one name a line") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if "" in names:
        raise BadInput(f"labels {path}: line {names.index('') + 1} is empty; a label file has one name a line")
    names = _strip_indices(names)
    if len(names) not in (classes, classes - 1):
        raise BadInput(
            f"labels {path} has {len(names)} names but the model has {classes} classes",
            f"give {classes} names (one per output) or {classes - 1} (when output 0 is a background class)",
        )
    return names


def _strip_indices(names: list[str]) -> list[str]:
    """`0 person` / `1 bicycle` ... lines (numbered 0.. or 1.. in order) -> the names; other files as they are."""
    matches = [_INDEXED.match(n) for n in names]
    if not names or not all(matches):
        return names
    numbers = [int(m.group(1)) for m in matches]
    start = numbers[0]
    if start in (0, 1) and numbers == list(range(start, start + len(numbers))):
        return [m.group(2).strip() for m in matches]
    return names


def align_labels(names: list[str], classes: int, label_offset: int) -> tuple[list[str], int]:
    """(names, label offset) for a model of `classes` outputs whose default offset is `label_offset`.

    classes - 1 names: output 0 is background (offset 1). classes names: one per output (offset 0), unless the
    model has a background output 0 and the file names it `background` first (the TF label files), which is
    then left out.
    """
    if len(names) == classes - 1:
        return list(names), 1
    if len(names) == classes:
        if label_offset == 1 and names[0].strip().lower() == "background":
            return list(names[1:]), 1
        return list(names), 0
    raise BadInput(f"labels: {len(names)} names but the model has {classes} classes")


def labels_extra(names: list[str]) -> dict[str, str]:
    """The metadata item for `ModelMeta.with_extra(**labels_extra(names))`."""
    return {KEY: json.dumps([str(n) for n in names], ensure_ascii=False)}


def model_labels(meta: ModelMeta) -> list[str] | None:
    """The model's class names, or None when it has none (a malformed value counts as none, as in meta.py)."""
    value = meta.extra.get(KEY)
    if value is None:
        return None
    try:
        names = json.loads(value)
    except ValueError:
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    return names
