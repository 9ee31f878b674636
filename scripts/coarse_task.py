"""A small real transfer-learning task from the shipped ImageNet sample: its 300 images grouped into coarse
classes by ImageNet class index, materialised as `OUT/train/<class>/` and `OUT/val/<class>/` (symbolic links).

    python scripts/coarse_task.py /tmp/coarse      # then: mnetctl train /tmp/coarse/train --val /tmp/coarse/val
    python scripts/coarse_task.py /tmp/coarse --zero-shot-teacher v2-grouped.onnx   # also the zero-shot V2 1.0

Groups (ImageNet indices, classes.txt order): bird 7-24, 80-100, 127-146; dog 151-268; other_animal the rest
of 0-397; object 398-999. Every third image of each group (sorted by file name) goes to validation.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS = {
    "bird": [*range(7, 25), *range(80, 101), *range(127, 147)],
    "dog": list(range(151, 269)),
    "object": list(range(398, 1000)),
}
GROUPS["other_animal"] = [i for i in range(398) if i not in set(GROUPS["bird"]) | set(GROUPS["dog"])]
NAMES = sorted(GROUPS)  # the class order `mnetctl train` gives (sorted folder names)


def group_of(index: int) -> str:
    return next(name for name, members in GROUPS.items() if index in members)


def shipped_images() -> list[tuple[Path, int]]:
    from mnetctl.data import default_calib_dir, default_val_dir, find_samples

    samples = find_samples(default_val_dir()) + find_samples(default_calib_dir())
    return sorted(((s.path, s.label) for s in samples), key=lambda t: t[0].name)


def materialise(out: Path | str) -> tuple[Path, Path]:
    out = Path(out)
    by_group: dict[str, list[Path]] = {n: [] for n in NAMES}
    for path, label in shipped_images():
        by_group[group_of(label)].append(path)
    for name, paths in by_group.items():
        for i, path in enumerate(paths):
            split = "val" if i % 3 == 2 else "train"
            dest = out / split / name / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                dest.symlink_to(path.resolve())
    return out / "train", out / "val"


def zero_shot_model(arch: str = "v2", width: float = 1.0, resolution: int = 224):
    """The pretrained ImageNet model as a coarse-class classifier: softmax over its 1000 classes, each group's
    probabilities summed, then Log (so its outputs are logits to mnetctl), labelled with NAMES. A teacher for
    `mnetctl train --teacher` whose knowledge no head trained on this task's 201 images has."""
    import numpy as np
    from dataclasses import replace
    from onnx import TensorProto, helper, numpy_helper

    from mnetctl.builder import build_model
    from mnetctl.labels import labels_extra
    from mnetctl.meta import read_meta, write_meta

    model = build_model(arch, width, resolution, weights="pretrained")
    meta = read_meta(model)
    g = model.graph
    out = g.output[0].name
    member = np.zeros((meta.classes, len(NAMES)), np.float32)
    for j, name in enumerate(NAMES):
        member[[meta.label_offset + i for i in GROUPS[name]], j] = 1.0
    g.initializer.append(numpy_helper.from_array(member, "zero_shot.member"))
    g.node.extend([
        helper.make_node("Softmax", [out], ["zero_shot.prob"], name="zero_shot.softmax", axis=1),
        helper.make_node("MatMul", ["zero_shot.prob", "zero_shot.member"], ["zero_shot.group"], name="zero_shot.sum"),
        helper.make_node("Log", ["zero_shot.group"], ["zero_shot.logits"], name="zero_shot.log"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("zero_shot.logits", TensorProto.FLOAT, ["batch", len(NAMES)]))
    write_meta(model, replace(meta, classes=len(NAMES), label_offset=0).with_extra(**labels_extra(NAMES)))
    return model


if __name__ == "__main__":
    args = sys.argv[1:]
    teacher = None
    if "--zero-shot-teacher" in args:
        i = args.index("--zero-shot-teacher")
        teacher = args[i + 1]
        del args[i:i + 2]
    train, val = materialise(args[0] if args else "coarse-task")
    for split in (train, val):
        print(split, {p.name: len(list(p.iterdir())) for p in sorted(split.iterdir())})
    if teacher:
        from mnetctl.builder import save_model

        save_model(zero_shot_model(), teacher)
        print("wrote", teacher)


def zero_shot_accuracy(model_path: Path | str, val_dir: Path | str) -> float:
    """Top-1 on the coarse classes of a pretrained ImageNet model: each group's class probabilities summed."""
    import numpy as np

    from mnetctl.data import iter_batches
    from mnetctl.model import Model
    from mnetctl.tasks.classification import softmax
    from mnetctl.train.dataset import class_folders

    names, samples = class_folders(val_dir)
    model = Model.open(model_path)
    session = model.session()
    offset = model.label_offset
    member = np.zeros((model.head.classes, len(names)))
    for g, name in enumerate(names):
        member[[offset + i for i in GROUPS[name]], g] = 1.0
    correct = total = 0
    for batch in iter_batches(samples, model.preprocessor, 32):
        (out,) = session.run(None, {model.input_name: batch.array})
        grouped = softmax(np.asarray(out, np.float64).reshape(len(batch), -1)) @ member
        correct += int((grouped.argmax(axis=1) == [s.label for s in batch.samples_ok]).sum())
        total += len(batch)
    return correct / total
