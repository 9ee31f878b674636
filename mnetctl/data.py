"""Images in, model-ready arrays out: decoding, preprocessing from metadata, dataset layouts, labels.

The one module that imports cv2. Everything the model needs to know about its input comes from its
`ModelMeta` (resolution, crop fraction, interpolation, mean/std, colour order, input format), so
`eval`, `predict`, calibration for `quantize` and `sweep` all preprocess identically.

Dataset layouts understood by `find_samples`:
  * ImageFolder: `DIR/<wnid>/*.JPEG` (a sub-folder may also be named by the class index 0..999);
  * flat folder: `DIR/<wnid>_<anything>.JPEG` (unlabeled if the name does not start with a wnid);
  * CSV: `file,label` rows (label = class index 0..999 or a wnid), paths relative to the CSV file,
    an optional header row;
  * a single image file (labeled if its name starts with `<wnid>_`).
Class indices are the 1000 ImageNet classes in the usual order (`classes.txt`), without any
background offset; a model's own label offset is applied by the evaluator. Given a model's label names
(`names`, `mnetctl.labels`), class folders and CSV labels are matched by name instead (case, `_` and repeated
spaces aside): `DIR/<class name>/*.jpg`; ImageNet ids keep working when there are 1000 names.
"""

from __future__ import annotations

import csv
import errno
import functools
import io
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import BadInput, short
from .imagesize import dimensions
from .meta import ModelMeta
from .resources import resource_dir

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
NUM_CLASSES = 1000
_WNID = re.compile(r"^(n\d{8})(?:_|$)")
_INDEX = re.compile(r"^-?[0-9]+$")  # a class index as text (ASCII digits only: int() refuses '²')
MAX_PIXELS = 100_000_000  # larger images are refused before decoding (100 MP = 300 MB as RGB)
MAX_FILE_BYTES = 1 << 30  # larger image files are refused before reading
MAX_CSV_BYTES = 256 << 20
MAX_ASPECT = 4  # short-side resize: the long side is first cut to at most this many short sides
MIN_CROP_FRACTION = 0.05


class BadImage(BadInput):
    """An image file that cannot be read or decoded (missing, truncated, not an image)."""


# --------------------------------------------------------------------------------------------
# Shipped data and labels


def data_dir() -> Path:
    """The shipped `data/` folder (see mnetctl.resources); MNETCTL_DATA_DIR overrides it."""
    return resource_dir("data")


def sample_dir() -> Path:
    return data_dir() / "imagenet-sample"


def default_val_dir() -> Path:
    """The shipped labelled validation sample (ImageFolder, 200 images)."""
    return sample_dir() / "val"


def default_calib_dir() -> Path:
    """The shipped calibration sample (flat folder, 100 images)."""
    return sample_dir() / "calib"


@functools.lru_cache(maxsize=None)
def _classes() -> tuple[tuple[str, str], ...]:
    path = sample_dir() / "classes.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInput(f"cannot read the class list {path}: {exc.strerror or exc}", "set MNETCTL_DATA_DIR") from exc
    rows = []
    for line in lines:
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        rows.append((wnid, name.replace("_", " ")))
    if len(rows) != NUM_CLASSES:
        raise BadInput(f"{path} has {len(rows)} classes, expected {NUM_CLASSES}")
    return tuple(rows)


@functools.lru_cache(maxsize=None)
def wnid_to_index() -> dict[str, int]:
    """ImageNet synset id (e.g. 'n01440764') -> class index 0..999."""
    return {wnid: i for i, (wnid, _) in enumerate(_classes())}


def _labels_file() -> Path:
    from .weights.registry import pretrained_dir

    return pretrained_dir() / "coral" / "imagenet_labels.txt"


@functools.lru_cache(maxsize=None)
def class_names() -> list[str]:
    """1000 human-readable class names in index order (no background entry).

    Taken from the shipped TF label file (1001 lines, line 0 = 'background'); falls back to the
    short names of `classes.txt` if that file is absent.
    """
    try:
        lines = [ln.strip() for ln in _labels_file().read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError:
        lines = []
    if len(lines) == NUM_CLASSES + 1 and lines[0].lower() == "background":
        return lines[1:]
    if len(lines) == NUM_CLASSES:
        return lines
    return [name for _, name in _classes()]


def class_name(index: int) -> str:
    names = class_names()
    return names[index] if 0 <= index < len(names) else f"class {index}"


# --------------------------------------------------------------------------------------------
# Decoding


@functools.lru_cache(maxsize=None)
def _cv2():
    """cv2, imported once: its log silenced (failures are reported per file instead), and its own decode limit
    set to MAX_PIXELS for formats whose size the header parser cannot read (unless the user set one)."""
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # an OpenCV build without the logging module
        pass
    return cv2


def _truncation(data: bytes) -> str | None:
    """A reason if an encoded JPEG/PNG is visibly cut short (decoders may otherwise pad it silently)."""
    if data[:2] == b"\xff\xd8":
        body = data.rstrip(b"\x00")
        sos = body.rfind(b"\xff\xda")
        if sos < 0 or body.find(b"\xff\xd9", sos) < 0:
            return "truncated JPEG (no end-of-image marker after the last scan)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            return "truncated PNG (no IEND chunk)"
    return None


def read_image_bytes(path: Path | str) -> bytes:
    """The bytes of an image file (a regular file of at most MAX_FILE_BYTES); else a BadImage naming the file."""
    return _read_regular(Path(path), MAX_FILE_BYTES, BadImage)


def _read_regular(path: Path, limit: int, error: type[BadInput]) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else raises `error` naming the file.

    Opened without blocking (a FIFO never waits for a writer) and checked on the open descriptor, so a
    device, FIFO or socket (or a link to one) is refused, never read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        what = "dangling symbolic link" if path.is_symlink() else "no such file"
        raise error(f"{path}: {what}") from exc
    except IsADirectoryError as exc:
        raise error(f"{path}: is a directory, not an image") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{path}: symbolic link loop") from exc
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise error(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: not a regular file ({_file_kind(st.st_mode)})")
        try:
            expected = min(st.st_size, limit)  # read() sizes its buffer by the request: ask for what is there
            data = fh.read(expected + 1)
            if len(data) > expected:  # grew since fstat
                data += fh.read(limit + 1 - len(data))
        except OSError as exc:
            raise error(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise error(f"{path}: larger than {limit >> 20} MiB")
    return data


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def load_image(path: Path | str) -> np.ndarray:
    """Decode an image file to RGB uint8 HxWx3 (grey and alpha images are converted).

    Raises BadImage (a BadInput) naming the file if it is missing, not a regular file, unreadable, truncated,
    not an image, or larger than MAX_PIXELS (checked from the header, before decoding).
    """
    cv2 = _cv2()
    path = Path(path)
    data = read_image_bytes(path)
    if not data:
        raise BadImage(f"{path}: empty file")
    reason = _truncation(data)
    if reason:
        raise BadImage(f"{path}: {reason}")
    size = dimensions(data)
    if size is not None:
        width, height = size
        if width * height > MAX_PIXELS:
            raise BadImage(f"{path}: {width} x {height} pixels is more than the {MAX_PIXELS // 1_000_000} MP limit")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError) as exc:  # e.g. over OpenCV's own pixel limit for a format we cannot size
        raise BadImage(f"{path}: cannot decode ({short(exc)})") from None
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise BadImage(f"{path}: not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: one image-sized buffer, not two


# --------------------------------------------------------------------------------------------
# Preprocessing

_INTERPOLATION = {"bilinear": "INTER_LINEAR", "linear": "INTER_LINEAR", "area": "INTER_AREA",
                  "bicubic": "INTER_CUBIC", "cubic": "INTER_CUBIC", "nearest": "INTER_NEAREST"}
_INPUT_FORMATS = ("float-nchw", "float-nhwc", "uint8-nhwc")


@dataclass
class Preprocessor:
    """RGB uint8 image -> one model input sample (no batch dimension).

    resize "short-side": scale so that the short side is round(resolution / crop_fraction), then
    take the centre resolution x resolution crop; "full": resize the whole image to
    resolution x resolution (aspect ratio not kept).
    float-nchw: (x - mean) / std as float32 CHW. float-nhwc: the same, HWC.
    uint8-nhwc: HWC uint8, normalisation happens inside the graph.
    Mean/std are per RGB channel in 0..255 units; colour order "BGR" reverses the channels last.
    """

    resolution: int
    crop_fraction: float = 0.875
    resize: str = "short-side"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    color_order: str = "RGB"
    input_format: str = "float-nchw"
    _scale: np.ndarray = field(init=False, repr=False)
    _shift: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if int(self.resolution) <= 0:
            raise BadInput(f"model resolution must be positive, got {self.resolution}")
        self.resolution = int(self.resolution)
        if not MIN_CROP_FRACTION <= float(self.crop_fraction) <= 1.0:  # also refuses NaN
            raise BadInput(f"crop fraction (model metadata mnetctl.crop_fraction) must be in "
                           f"{MIN_CROP_FRACTION}..1, got {self.crop_fraction}")
        if self.resize not in ("short-side", "full"):
            raise BadInput(f"unknown resize policy {self.resize!r} in model metadata (short-side or full)")
        if self.interpolation not in _INTERPOLATION:
            raise BadInput(
                f"unknown interpolation {self.interpolation!r} in model metadata",
                f"one of {', '.join(sorted(_INTERPOLATION))}",
            )
        if self.color_order.upper() not in ("RGB", "BGR"):
            raise BadInput(f"unknown colour order {self.color_order!r} in model metadata (RGB or BGR)")
        if self.input_format not in _INPUT_FORMATS:
            raise BadInput(f"unsupported model input format {self.input_format!r} ({', '.join(_INPUT_FORMATS)})")
        std = np.asarray(self.std, np.float32).reshape(3)
        if np.any(std == 0):
            raise BadInput("model metadata has a zero std")
        self._scale = (1.0 / std).astype(np.float32)
        self._shift = (-np.asarray(self.mean, np.float32).reshape(3) / std).astype(np.float32)

    @classmethod
    def from_meta(cls, meta: ModelMeta) -> "Preprocessor":
        return cls(
            resolution=meta.resolution,
            crop_fraction=meta.crop_fraction,
            resize=meta.resize,
            interpolation=meta.interpolation,
            mean=tuple(meta.mean),
            std=tuple(meta.std),
            color_order=meta.color_order,
            input_format=meta.input_format,
        )

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.input_format == "uint8-nhwc" else np.float32)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        r = self.resolution
        return (3, r, r) if self.input_format == "float-nchw" else (r, r, 3)

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self.sample_shape)) * self.dtype.itemsize

    def resize_crop(self, rgb: np.ndarray) -> np.ndarray:
        """Geometric part only: RGB uint8 HxWx3 -> RGB uint8 RxRx3.

        Short-side: an image longer than MAX_ASPECT times its short side is first cut to its centre
        (the crop never reaches the rest), so the resized image is at most MAX_ASPECT short sides long.
        """
        cv2 = _cv2()
        res = self.resolution
        interp = getattr(cv2, _INTERPOLATION[self.interpolation])
        if self.resize == "full":
            return cv2.resize(rgb, (res, res), interpolation=interp)
        h, w = rgb.shape[:2]
        short_side = min(h, w)
        if max(h, w) > MAX_ASPECT * short_side:
            keep = MAX_ASPECT * short_side
            if h > w:
                rgb = rgb[(h - keep) // 2:(h - keep) // 2 + keep]
            else:
                rgb = rgb[:, (w - keep) // 2:(w - keep) // 2 + keep]
            h, w = rgb.shape[:2]
        target = int(round(res / self.crop_fraction))
        scale = target / short_side
        new_w = max(res, int(round(w * scale)))
        new_h = max(res, int(round(h * scale)))
        if (new_w, new_h) != (w, h):
            rgb = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
        top = (new_h - res) // 2
        left = (new_w - res) // 2
        return rgb[top:top + res, left:left + res]

    def __call__(self, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Preprocess one image; with `out` (shape `sample_shape`, dtype `dtype`) write into it."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInput(f"expected an RGB uint8 HxWx3 image, got {rgb.dtype} {rgb.shape}")
        img = self.resize_crop(rgb)
        scale, shift = self._scale, self._shift
        if self.color_order.upper() == "BGR":
            img = img[:, :, ::-1]
            scale, shift = scale[::-1], shift[::-1]
        if out is None:
            out = np.empty(self.sample_shape, self.dtype)
        if self.input_format == "uint8-nhwc":
            out[...] = img
            return out
        if self.input_format == "float-nchw":
            # transpose the uint8 pixels (cheap), then convert and normalise in place
            out[...] = img.transpose(2, 0, 1)
            out *= scale[:, None, None]
            out += shift[:, None, None]
        else:
            out[...] = img
            out *= scale
            out += shift
        return out


# --------------------------------------------------------------------------------------------
# Dataset layouts


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int | None  # ImageNet class index 0..999, None if unknown


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _label_from_name(name: str) -> int | None:
    m = _WNID.match(name)
    if not m:
        return None
    return wnid_to_index().get(m.group(1))


class LabelNames:
    """A model's class names, looked up by a folder name or CSV label (normalised, see `key`)."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.index: dict[str, int] = {}
        self.repeated: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            k = self.key(name)
            if k in self.index:
                self.repeated.setdefault(k, [self.index[k]]).append(i)
            else:
                self.index[k] = i

    @staticmethod
    def key(name: str) -> str:
        return " ".join(name.replace("_", " ").split()).casefold()

    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, name: str, where: Path | str) -> int | None:
        """The class index a name stands for; None if it names no class. A name two classes share is a BadInput."""
        k = self.key(name)
        if k in self.repeated:
            shown = ", ".join(str(i) for i in self.repeated[k])
            raise BadInput(f"{where}: {name!r} names more than one class of the model ({shown})",
                           "use a CSV of file,label with class indices for these")
        if k in self.index:
            return self.index[k]
        if len(self.names) == NUM_CLASSES and name in wnid_to_index():  # ImageNet layouts keep working
            return wnid_to_index()[name]
        if _INDEX.match(name) and len(name) <= 6 and 0 <= int(name) < len(self.names):
            return int(name)
        return None


def _folder_label(name: str, names: LabelNames | None = None, where: Path | str = "") -> int | None:
    if names is not None:
        return names.lookup(name, where)
    if name in wnid_to_index():
        return wnid_to_index()[name]
    if _INDEX.match(name) and len(name) <= 4 and 0 <= int(name) < NUM_CLASSES:
        return int(name)
    return None


def _file_label(name: str, names: LabelNames | None) -> int | None:
    """A top-level file's label from a `<wnid>_` name prefix (ImageNet classes only)."""
    if names is not None and len(names) != NUM_CLASSES:
        return None
    return _label_from_name(name)


def _parse_label(text: str, names: LabelNames | None = None, where: Path | str = "") -> int | None:
    """A class index (any ASCII integer, range checked by the caller), a known wnid or (with `names`) a class
    name; None otherwise."""
    text = text.strip()
    if _INDEX.match(text):
        return int(text) if len(text) <= 12 else 1 << 62  # a huge number: just out of range
    if names is not None:
        return names.lookup(text, where)
    return wnid_to_index().get(text)


_HEADER_WORD = re.compile(r"^[A-Za-z][A-Za-z _-]*$")  # 'label', 'class_index'; never '0.0', '1e2', 'n0144076'


def _from_csv(path: Path, names: LabelNames | None = None) -> list[Sample]:
    raw = _read_regular(path, MAX_CSV_BYTES, BadInput)
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"cannot read CSV {path}: {exc}") from exc
    base = path.parent
    samples: list[Sample] = []
    for lineno, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) < 2:
            raise BadInput(f"{path}:{lineno}: expected 'file,label', got {','.join(row)!r}")
        label = _parse_label(cells[1], names, f"{path}:{lineno}")
        count = NUM_CLASSES if names is None else len(names)
        if label is None:
            if not samples and lineno == 1 and _HEADER_WORD.match(cells[1]):
                continue  # header row
            what = "a known wnid" if names is None else "a class name of the model"
            raise BadInput(f"{path}:{lineno}: label {cells[1]!r} is neither a class index nor {what}")
        if not 0 <= label < count:
            raise BadInput(f"{path}:{lineno}: label {cells[1]} is outside 0..{count - 1}")
        file = Path(cells[0])
        samples.append(Sample(file if file.is_absolute() else base / file, label))
    if not samples:
        raise BadInput(f"CSV {path} lists no images", "rows are 'file,label_index', paths relative to the CSV")
    return samples


def _listed(path: Path) -> bool:
    """An image name that is not a folder: a dangling link, a link loop or a FIFO is listed too, so that
    reading it reports it as unreadable instead of leaving it out silently."""
    return _is_image(path) and not path.is_dir()


def _from_folder(root: Path, names: LabelNames | None = None) -> list[Sample]:
    """Images at the top (labelled by a wnid name prefix) and in sub-folders (labelled by the folder's name,
    None when the name is no class id or, with `names`, no class name)."""
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise BadInput(f"cannot list {root}: {exc.strerror or exc}") from exc
    samples = [Sample(p, _file_label(p.name, names)) for p in entries if _listed(p)]
    subdirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    for sub in subdirs:
        label = _folder_label(sub.name, names, sub)
        samples.extend(Sample(p, label) for p in sorted(p for p in sub.rglob("*") if _listed(p)))
    return samples


def _check_class_folders(root: Path, samples: list[Sample], names: LabelNames | None = None) -> None:
    """Refuse sub-folders whose names are no class ids (labels are needed: eval)."""
    unknown = sorted({s.path.relative_to(root).parts[0] for s in samples if s.label is None and s.path.parent != root})
    if unknown:
        shown = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        if names is not None:
            some = ", ".join(repr(n) for n in names.names[:3]) + (", ..." if len(names) > 3 else "")
            raise BadInput(
                f"{root}: sub-folders {shown} are not class names of the model ({len(names)} names: {some})",
                "name each class folder by one of the model's label names (see `mnetctl inspect`), or use a CSV of "
                "file,label",
            )
        raise BadInput(
            f"{root}: sub-folders {shown} are not ImageNet class ids",
            "name class folders by wnid (n01440764) or class index (0..999), or use a CSV of file,label",
        )


def find_samples(data: Path | str, limit: int | None = None, flag: str = "data", labels: bool = True,
                 names: Sequence[str] | None = None) -> list[Sample]:
    """The images (and labels) of a dataset folder, CSV file or single image; sorted and deterministic.

    `names`: the model's class names (`Model.label_names`): class folders and CSV labels are matched by name.
    `limit` keeps the first N samples in that order. Raises BadInput naming the path (and `flag`, the
    option that gave it, e.g. "--calib") when it is missing, empty or holds no images. With `labels`
    False (predict, calibration) a folder's sub-folders may have any name; their images have no label.
    """
    data = Path(data)
    if limit is not None and int(limit) <= 0:
        raise BadInput(f"limit must be a positive number, got {limit}")
    if not data.exists():
        raise BadInput(f"{flag} {data} does not exist", "give a folder of images, a CSV of file,label or an image file")
    lookup = LabelNames(names) if names is not None else None
    if data.is_dir():
        samples = _from_folder(data, lookup if labels else None)
        if labels:
            _check_class_folders(data, samples, lookup)
        if not samples:
            raise BadInput(
                f"{flag} folder {data} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
                "layouts: DIR/<wnid>/*.JPEG, DIR/<wnid>_*.JPEG, or a CSV of file,label",
            )
        samples.sort(key=lambda s: str(s.path))
    elif data.suffix.lower() == ".csv":
        samples = _from_csv(data, lookup)  # keep the CSV's own order
    elif _is_image(data):
        samples = [Sample(data, _file_label(data.name, lookup))]
    else:
        raise BadInput(
            f"{flag} {data} is neither a folder, a CSV (.csv) nor an image ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if limit is not None:
        samples = samples[: int(limit)]
    return samples


# --------------------------------------------------------------------------------------------
# Batching


@dataclass
class Batch:
    array: np.ndarray  # [n, ...] model input, n = len(samples_ok) (may be 0 when every image failed)
    samples_ok: list[Sample]
    failures: list[tuple[Sample, str]]

    def __len__(self) -> int:
        return len(self.samples_ok)


def iter_batches(samples: Iterable[Sample], pre: Preprocessor, batch_size: int) -> Iterator[Batch]:
    """Decode and preprocess lazily, `batch_size` images at a time (at most one batch held).

    Unreadable images do not stop the stream: they come back in `Batch.failures` with the reason.
    """
    if int(batch_size) <= 0:
        raise BadInput(f"batch must be a positive number, got {batch_size}")
    batch_size = int(batch_size)

    def fresh() -> np.ndarray:
        return np.empty((batch_size, *pre.sample_shape), pre.dtype)

    buf = fresh()
    ok: list[Sample] = []
    failures: list[tuple[Sample, str]] = []
    for sample in samples:
        try:
            pre(load_image(sample.path), out=buf[len(ok)])
            ok.append(sample)
        except BadImage as exc:
            failures.append((sample, failure_reason(exc.message, sample.path)))
        if len(ok) + len(failures) == batch_size:
            yield Batch(buf[: len(ok)], ok, failures)
            buf, ok, failures = fresh(), [], []
    if ok or failures:
        yield Batch(buf[: len(ok)], ok, failures)


def failure_reason(message: str, path: Path | str) -> str:
    """A BadImage message without its leading `PATH: ` (reports print the path once, next to the reason)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


# --------------------------------------------------------------------------------------------
# Segmentation masks (class-index images) and pictures


def voc_palette(n: int = 256) -> np.ndarray:
    """The Pascal VOC colour map: class i -> RGB, its index bits spread over the colour bits, high bits first."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        out[i] = (r, g, b)
    return out


def load_mask(path: Path | str) -> np.ndarray:
    """A ground-truth mask as HxW uint8 class indices (255: ignore).

    Grey images (and colour images whose three channels agree) hold the indices themselves; colour images
    are read as the Pascal VOC colour map (as VOC's palette PNGs decode), any other colour is an error.
    """
    cv2 = _cv2()
    path = Path(path)
    data = read_image_bytes(path)
    if not data:
        raise BadImage(f"{path}: empty file")
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except (cv2.error, MemoryError) as exc:
        raise BadImage(f"{path}: cannot decode ({short(exc)})") from None
    if arr is None or arr.size == 0:
        raise BadImage(f"{path}: not a decodable mask image")
    if arr.dtype != np.uint8:
        raise BadImage(f"{path}: mask pixels are {arr.dtype}; a mask holds 8-bit class indices")
    if arr.ndim == 2:
        return arr
    rgb = cv2.cvtColor(arr[:, :, :3], cv2.COLOR_BGR2RGB)
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2]):
        return np.ascontiguousarray(rgb[:, :, 0])
    codes = (rgb[:, :, 0].astype(np.int32) << 16) | (rgb[:, :, 1].astype(np.int32) << 8) | rgb[:, :, 2]
    pal = voc_palette()
    keys = (pal[:, 0].astype(np.int32) << 16) | (pal[:, 1].astype(np.int32) << 8) | pal[:, 2]
    order = np.argsort(keys)
    pos = np.searchsorted(keys[order], codes)
    pos = np.clip(pos, 0, len(keys) - 1)
    found = keys[order][pos] == codes
    if not found.all():
        y, x = np.argwhere(~found)[0]
        raise BadImage(f"{path}: pixel ({x}, {y}) has colour {tuple(int(v) for v in rgb[y, x])}, which is no class "
                       "of the Pascal VOC colour map; give class indices as a grey image")
    return order[pos].astype(np.uint8)


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) of an image file, from its header where possible."""
    data = read_image_bytes(path)
    size = dimensions(data)
    if size is not None:
        return size
    rgb = load_image(path)
    return rgb.shape[1], rgb.shape[0]


def resize_nearest(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """A class map resized to width x height by nearest neighbour (class indices are never blended)."""
    if labels.shape[:2] == (height, width):
        return labels
    return _cv2().resize(labels, (int(width), int(height)), interpolation=_cv2().INTER_NEAREST)


def encode_image(pixels: np.ndarray, suffix: str) -> bytes:
    """HxW grey or HxWx3 RGB uint8 pixels encoded as `suffix` (.png, .jpg, .bmp); BadInput for another suffix."""
    cv2 = _cv2()
    suffix = suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise BadInput(f"cannot write a {suffix or 'suffix-less'} image; use .png, .jpg or .bmp")
    arr = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(suffix, arr)
    if not ok:
        raise BadInput(f"cannot encode the image as {suffix}")
    return buf.tobytes()


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5, skip: int | None = 0) -> np.ndarray:
    """The class map drawn over the image in the VOC colours (class `skip`, e.g. background, left as it is)."""
    colours = voc_palette()[labels]
    out = rgb.astype(np.float32)
    mask = np.ones(labels.shape, bool) if skip is None else labels != skip
    out[mask] = (1 - alpha) * out[mask] + alpha * colours[mask]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
