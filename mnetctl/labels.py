"""Class names carried in a model's metadata (`mnetctl.labels`: a JSON list, name i = output i after the
label offset), and class-named folders mapped to those indices."""

from __future__ import annotations

import json
from pathlib import Path

from .data import IMAGE_SUFFIXES, Sample

KEY = "labels"  # mnetctl.labels


def labels_extra(names: list[str]) -> dict[str, str]:
    """The metadata extra (for ModelMeta.with_extra) that records `names`."""
    return {KEY: json.dumps(list(names), ensure_ascii=False)}


def read_labels(meta) -> list[str] | None:
    """The class names a model's metadata gives, or None (absent or malformed)."""
    raw = meta.extra.get(KEY)
    if raw is None:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and not p.is_dir())


def named_folder_samples(root: Path | str, names: list[str]) -> list[Sample] | None:
    """Samples of `root/<class name>/...` labelled by the position of the folder's name in `names`;
    None when `root` is no folder or none of its sub-folders is named after a class (another layout)."""
    root = Path(root)
    if not root.is_dir():
        return None
    index = {n: i for i, n in enumerate(names)}
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs or not any(p.name in index for p in subs):
        return None
    samples: list[Sample] = []
    for sub in subs:
        label = index.get(sub.name)
        samples.extend(Sample(p, label) for p in _images(sub))
    return samples


def find_labelled(meta, data: Path | str, limit: int | None = None, flag: str = "data") -> list[Sample]:
    """Labelled samples for a model: class-named folders through its label names when it has them (and the
    folder is laid out so), else the ImageNet layouts of `data.find_samples`."""
    from .data import find_samples

    names = read_labels(meta)
    samples = named_folder_samples(data, names) if names else None
    if samples:
        return samples[:limit] if limit else samples
    return find_samples(data, limit, flag=flag)
