"""A training folder `DATA/<class name>/...` -> class names (sorted folder names) and labelled samples;
a seeded, stratified validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import IMAGE_SUFFIXES, Sample, find_samples
from ..errors import BadInput


def class_folders(data: Path | str, flag: str = "DATA") -> tuple[list[str], list[Sample]]:
    """(class names, samples labelled by index into them); refuses fewer than two classes or an empty class."""
    root = Path(data)
    if not root.is_dir():
        raise BadInput(f"{flag} {root} is not a folder", "give DATA/<class name>/*.jpg, one sub-folder per class")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise BadInput(f"cannot list {root}: {exc.strerror or exc}") from exc
    loose = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir() and not p.name.startswith(".")]
    if loose:
        raise BadInput(f"{flag} {root} has images outside class folders (e.g. {loose[0].name})",
                       "put every image in DATA/<class name>/")
    subs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if len(subs) < 2:
        raise BadInput(f"{flag} {root} has {len(subs)} class folder{'s' if len(subs) != 1 else ''}; training needs at least 2",
                       "give DATA/<class name>/*.jpg, one sub-folder per class")
    names = [p.name for p in subs]
    samples: list[Sample] = []
    for i, sub in enumerate(subs):
        if not any(p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") for p in sub.rglob("*")):
            raise BadInput(f"class folder {sub} holds no images",
                           f"every class needs images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        found = find_samples(sub, flag="class folder", labels=False)
        samples.extend(Sample(s.path, i) for s in found)
    return names, samples


def split(samples: list[Sample], classes: int, fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Per class, round(fraction * n) images (at least 1, leaving at least 1 to train on) go to validation."""
    if not 0 < fraction < 1:
        raise BadInput(f"val_split must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for c in range(classes):
        group = [s for s in samples if s.label == c]
        if len(group) < 2:
            raise BadInput(f"class {c} has {len(group)} image(s); a validation split needs at least 2 per class",
                           "add images or give --val DIR")
        order = rng.permutation(len(group))
        k = min(len(group) - 1, max(1, int(round(fraction * len(group)))))
        val.extend(group[i] for i in sorted(order[:k]))
        train.extend(group[i] for i in sorted(order[k:]))
    return train, val
