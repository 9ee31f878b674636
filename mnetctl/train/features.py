"""The frozen backbone: a pretrained model cut at its pooled features (the input of `head.fc`), run in ONNX
Runtime on each image and on its augmented views; features cached by content.

A view is a random resized crop (a box of the decoded image, as fractions of its sides) and an optional
horizontal flip, drawn from a generator seeded by (seed, image digest, view index), then preprocessed as the
model's metadata says. View 0 is always the plain image. Cache key: the image's sha256, the view parameters
and the backbone's identity (a digest of its graph and weights).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data import BadImage, Preprocessor, Sample, failure_reason, load_image, read_image_bytes
from ..errors import BadInput
from ..progress import ProgressFn, report

HEAD_NODE = "head.fc"
SCALE = (0.35, 1.0)  # random resized crop: area fraction of the image kept
RATIO = (3 / 4, 4 / 3)  # and its aspect ratio range


def default_feature_cache() -> Path:
    base = os.environ.get("MNETCTL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "mnetctl")
    return Path(base) / "features"


def feature_input(proto) -> tuple[str, int]:
    """(tensor name, width) of what feeds the classifier `head.fc` of a model proto."""
    node = next((n for n in proto.graph.node if n.name == HEAD_NODE), None)
    if node is None or node.op_type != "Gemm":
        raise BadInput(f"the model has no Gemm node {HEAD_NODE!r}: not an mnetctl MobileNet")
    weights = {i.name: i for i in proto.graph.initializer}
    w = weights.get(node.input[1])
    if w is None or len(w.dims) != 2:
        raise BadInput(f"{HEAD_NODE} has no 2-D weight initializer")
    return node.input[0], int(w.dims[1])


def backbone(proto):
    """A copy of `proto` that outputs its pooled features [batch, F] instead of class scores."""
    from onnx import TensorProto, helper

    feat, width = feature_input(proto)
    cut = type(proto)()
    cut.CopyFrom(proto)
    g = cut.graph
    fc = next(n for n in g.node if n.name == HEAD_NODE)
    drop = set(fc.input[1:])
    g.node.remove(fc)
    keep = [i for i in g.initializer if i.name not in drop]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(feat, TensorProto.FLOAT, ["batch", width]))
    return cut


@dataclass(frozen=True)
class View:
    """A crop box (top, left, height, width as fractions of the image) and a flip."""

    top: float = 0.0
    left: float = 0.0
    height: float = 1.0
    width: float = 1.0
    flip: bool = False

    def key(self) -> str:
        return f"{self.top:.6f},{self.left:.6f},{self.height:.6f},{self.width:.6f},{int(self.flip)}"

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        if self == View():
            return rgb
        h, w = rgb.shape[:2]
        t, l = int(round(self.top * h)), int(round(self.left * w))
        ch, cw = max(1, int(round(self.height * h))), max(1, int(round(self.width * w)))
        out = rgb[t:t + ch, l:l + cw]
        if self.flip:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)


def draw_views(seed: int, image_digest: str, count: int, augment: bool) -> list[View]:
    """View 0 plain, then `count - 1` random resized crops with a coin-flip mirror (none without augment)."""
    views = [View()]
    if not augment:
        return views
    rng = np.random.default_rng([int(seed), int(image_digest[:12], 16)])
    while len(views) < count:
        area = rng.uniform(*SCALE)
        ratio = float(np.exp(rng.uniform(np.log(RATIO[0]), np.log(RATIO[1]))))
        ch = min(1.0, float(np.sqrt(area / ratio)))
        cw = min(1.0, float(np.sqrt(area * ratio)))
        top = float(rng.uniform(0.0, 1.0 - ch))
        left = float(rng.uniform(0.0, 1.0 - cw))
        views.append(View(top, left, ch, cw, bool(rng.random() < 0.5)))
    return views


@dataclass
class FeatureSet:
    features: list[np.ndarray]  # per readable sample: [views, F] float32
    samples: list[Sample]  # the readable samples, in order
    failed: list[tuple[str, str]]  # (path, reason)
    extracted: int  # views run through the backbone (cache misses)
    cached: int  # views taken from the cache
    seconds: float


class FeatureExtractor:
    """Features of images and their views through a backbone session, batch by batch (memory flat in the
    number of images apart from the features themselves)."""

    def __init__(self, proto, pre: Preprocessor, cache_dir: Path | None, batch: int = 32,
                 threads: int | None = None):
        from ..runtime import cpu_session

        cut = backbone(proto)
        self.width = feature_input(proto)[1]
        data = cut.SerializeToString(deterministic=True)
        self.identity = hashlib.sha256(data).hexdigest()[:20]
        self.session = cpu_session(data, threads)
        self.input = cut.graph.input[0].name
        self.pre = pre
        self.batch = max(1, int(batch))
        self.cache_dir = Path(cache_dir) / self.identity if cache_dir is not None else None

    def _cached(self, key: str) -> np.ndarray | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / key[:2] / f"{key}.npy"
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return arr if arr.dtype == np.float32 and arr.ndim == 2 else None

    def _store(self, key: str, arr: np.ndarray) -> None:
        if self.cache_dir is None:
            return
        from ..fsutil import atomic_path

        path = self.cache_dir / key[:2] / f"{key}.npy"
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)
        except Exception:  # a cache that cannot be written only costs time
            pass

    def _run(self, array: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {self.input: array})
        return np.asarray(out, np.float32).reshape(len(array), -1)

    def extract(self, samples: Sequence[Sample], views_for: Callable[[str], list[View]],
                on_progress: ProgressFn | None = None, label: str = "features") -> FeatureSet:
        """[views, F] features of each readable sample; unreadable images are skipped and listed."""
        import time

        start = time.perf_counter()
        slots: list[np.ndarray] = []
        ok: list[Sample] = []
        failed: list[tuple[str, str]] = []
        to_store: list[tuple[int, str]] = []
        pending: list[tuple[int, int]] = []  # (slot, view index) of each row of `buf`
        buf = np.empty((self.batch, *self.pre.sample_shape), self.pre.dtype)
        extracted = cached = 0

        def flush() -> None:
            nonlocal extracted
            if pending:
                out = self._run(buf[: len(pending)])
                for row, (slot, v) in enumerate(pending):
                    slots[slot][v] = out[row]
                extracted += len(pending)
                pending.clear()

        for i, s in enumerate(samples):
            try:
                raw = read_image_bytes(s.path)
                rgb = load_image(s.path)
            except BadImage as exc:
                failed.append((str(s.path), failure_reason(exc.message, s.path)))
                report(on_progress, i + 1, len(samples), label)
                continue
            digest = hashlib.sha256(raw).hexdigest()
            views = views_for(digest)
            key = hashlib.sha256(f"{digest}|{self.identity}|{';'.join(v.key() for v in views)}".encode()).hexdigest()[:32]
            hit = self._cached(key)
            ok.append(s)
            if hit is not None and hit.shape == (len(views), self.width):
                slots.append(hit)
                cached += len(views)
            else:
                slot = len(slots)
                slots.append(np.zeros((len(views), self.width), np.float32))
                to_store.append((slot, key))
                for v, view in enumerate(views):
                    self.pre(view.apply(rgb), out=buf[len(pending)])
                    pending.append((slot, v))
                    if len(pending) == self.batch:
                        flush()
            report(on_progress, i + 1, len(samples), label)
        flush()
        for slot, key in to_store:
            self._store(key, slots[slot])
        return FeatureSet(slots, ok, failed, extracted, cached, time.perf_counter() - start)
