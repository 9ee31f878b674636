"""Map a TFLite checkpoint onto an ArchConfig: float weights, structure checks, metadata.

For one file, or a feature extractor + classifier head applied in order, the weight layers that
`tflite_reader` reads are mapped by order onto `ArchConfig.param_layers()` (a 1x1 classifier conv
[N, C, 1, 1] and FULLY_CONNECTED [N, C] are the same layer), checking at every step the weight shape,
the stride, the padding (TF "SAME", which the graph reproduces) and the kind of activation that
follows; the first difference is an error naming the layer on both sides. Layer counts must agree.

The metadata of the result says how the checkpoint wants its input: 1001 classes with background at
index 0 (label offset 1), RGB, and mean/std from the input tensor's quantization (a uint8 pixel p is the
real value scale * (p - zero_point), i.e. mean = zero_point, std = 1 / scale); float inputs get the
usual MobileNet [-1, 1] scaling. What the checkpoint stores as integers stays in `ImportedCheckpoint.files`
for `build --precision int8` (`tflite_qdq`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, EnvironmentMissing
from ..meta import DEFAULT_CROP, TF_MEAN, TF_STD, ModelMeta
from ..specs import FAMILIES, ArchConfig, ParamLayer, decode, format_width
from . import registry
from .tflite_reader import TFLiteCheckpoint, TFLiteLayer, read_tflite

Weights = dict[str, tuple[np.ndarray, np.ndarray]]

BACKGROUND_CLASSES = 1001  # the TF-slim checkpoints: class 0 is "background"
SHA_CHARS = 16


def expected_activations(cfg: ArchConfig) -> dict[str, str | None]:
    """Kind of nonlinearity after each weight layer of our graph (None: not checked, e.g. the SE gate)."""
    if hasattr(cfg, "layer_activations"):  # a head on a backbone (heads/) says it itself
        return cfg.layer_activations()
    family = {"relu": "relu", "relu6": "relu", "hswish": "hswish", None: "none"}
    acts: dict[str, str | None] = {"stem.conv": family[cfg.stem_act]}
    for b in cfg.blocks:
        p = f"blocks.{b.index}"
        acts[f"{p}.conv"] = family[b.act]
        acts[f"{p}.start_dw"] = "none"
        acts[f"{p}.expand"] = family[b.act]
        acts[f"{p}.dw"] = family[b.act] if b.dw_act else "none"
        acts[f"{p}.se.reduce"] = "relu"
        acts[f"{p}.se.expand"] = None
        acts[f"{p}.project"] = family[b.act] if b.project_act else "none"
    acts["head.conv"] = family[cfg.last_act]
    acts["head.hidden"] = family[cfg.head_act]
    acts["head.fc"] = "none"
    return acts


def activation_fits(found: str | None, want: str | None) -> bool:
    """Whether the activation seen in a checkpoint can be the one our graph has (None: unchecked)."""
    if found is None or want is None:
        return True
    if found == "relu-range":  # a range clamped at 0 cannot tell a ReLU from a non-negative layer
        return want in ("relu", "none")
    return found == want


def _as_target(layer: TFLiteLayer, target: ParamLayer) -> np.ndarray:
    """The checkpoint weight reshaped to the target's rank where that is a pure reshape (1x1 conv <-> fc)."""
    w = layer.weight
    if target.kind == "fc" and w.ndim == 4 and w.shape[2:] == (1, 1):
        return w.reshape(w.shape[0], w.shape[1])
    if target.kind != "fc" and w.ndim == 2 and target.kernel == 1:
        return w.reshape(w.shape[0], w.shape[1], 1, 1)
    return w


def _shapes_fit(layers: list[TFLiteLayer], targets: list[ParamLayer]) -> bool:
    if len(layers) != len(targets):
        return False
    return all(_as_target(a, b).shape == b.weight_shape and a.stride == b.stride for a, b in zip(layers, targets))


def guess_architecture(layers: list[TFLiteLayer]) -> tuple[str, float] | None:
    """The (arch, width) whose weight layers this checkpoint fills exactly, if any."""
    if not layers:
        return None
    classes = int(layers[-1].weight.shape[0])
    for fam in FAMILIES.values():
        widths = sorted(set(fam.widths) | set(registry.widths_with_weights(fam.name)))
        for width in widths:
            cfg = decode(fam.name, width, fam.default_resolution, classes)
            if _shapes_fit(layers, cfg.param_layers()):
                return fam.name, width
    return None


def _arch_label(arch: str, width: float) -> str:
    return f"{arch} width {format_width(width)}"


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def map_layers(cfg: ArchConfig, layers: list[TFLiteLayer], source: str) -> Weights:
    """Assign checkpoint layers to `cfg.param_layers()` by order, checking every step.

    `cfg` is a classifier's (or segmenter's) config, or any config with `param_layers()` and its own
    `activations()` (a detector)."""
    targets = cfg.param_layers()
    label = _arch_label(cfg.arch, cfg.width)
    classifier = not hasattr(cfg, "activations")
    acts = expected_activations(cfg) if classifier else cfg.activations()

    def hint() -> str | None:
        if not classifier:
            return None
        guess = guess_architecture(layers)
        if guess is None:
            return "its layers match no architecture/width mnetctl knows"
        if guess == (cfg.arch, cfg.width):
            return None
        return f"is this checkpoint {_arch_label(*guess)}? (mnetctl build {guess[0]} --width {format_width(guess[1])} ...)"

    out: Weights = {}
    for i, target in enumerate(targets):
        if i >= len(layers):
            missing = ", ".join(t.name for t in targets[i:i + 4]) + (", ..." if len(targets) - i > 4 else "")
            headless = targets[i].name == "head.fc" and i == len(targets) - 1
            raise BadInput(
                f"checkpoint {source} has {len(layers)} weight layers but {label} expects {len(targets)}: "
                f"nothing for {missing}",
                "it has no classifier: a feature extractor needs its classifier head file as well"
                if headless else hint(),
            )
        layer = layers[i]
        w = _as_target(layer, target)
        if tuple(w.shape) != target.weight_shape:
            message = (
                f"checkpoint {layer.describe()} has shape {_fmt(w.shape)} but {label} expects "
                f"{target.name} {_fmt(target.weight_shape)}"
            )
            if target.name == "head.fc" and w.ndim == 2 and w.shape[1] == target.cin and w.shape[0] != target.cout:
                raise BadInput(message, f"the checkpoint has {w.shape[0]} classes: build with --classes {w.shape[0]}")
            raise BadInput(message, hint())
        if layer.stride != target.stride:
            raise BadInput(
                f"checkpoint {layer.describe()} has stride {layer.stride} but {label} expects "
                f"{target.name} with stride {target.stride}",
                hint(),
            )
        if layer.dilation != target.dilation:
            raise BadInput(
                f"checkpoint {layer.describe()} has dilation {layer.dilation} but {label} expects "
                f"{target.name} with dilation {target.dilation}",
                "a dilated checkpoint is a segmentation backbone: give its --output-stride"
                if target.dilation == 1 or layer.dilation > 1 else hint(),
            )
        if layer.padding != "same" and not (layer.padding == "valid" and target.kernel == 1 and target.stride == 1):
            raise BadInput(
                f"checkpoint {layer.describe()} uses {layer.padding} padding; mnetctl reproduces TF 'SAME' "
                f"padding for checkpoints ({target.name})"
            )
        want = acts.get(target.name)
        if not activation_fits(layer.activation, want):
            raise BadInput(
                f"checkpoint {layer.describe()} is followed by {layer.activation!r} but {label} has "
                f"{want!r} after {target.name}",
                hint(),
            )
        out[target.name] = (np.ascontiguousarray(w, dtype=np.float32), layer.bias.astype(np.float32))
    if len(layers) > len(targets):
        extra = layers[len(targets)]
        raise BadInput(
            f"checkpoint {source} has {len(layers)} weight layers but {label} expects {len(targets)}: "
            f"{extra.describe()} and after are left over",
            hint(),
        )
    return out


# --------------------------------------------------------------------------------------------
# Entry point used by the builder
# --------------------------------------------------------------------------------------------


def _preprocessing(ckpt: TFLiteCheckpoint) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Mean/std in pixel units that turn a uint8 RGB pixel into the checkpoint's real-valued input."""
    if ckpt.input_dtype in ("uint8", "int8") and ckpt.input_scale:
        zp = float(ckpt.input_zero_point or 0)
        if ckpt.input_dtype == "int8":  # the int8 input is the uint8 pixel shifted by -128
            zp += 128.0
        std = float(f"{1.0 / ckpt.input_scale:.6g}")  # 1 / float32 scale, without the float32 noise
        return (zp, zp, zp), (std, std, std)
    return TF_MEAN, TF_STD


def _resolve(cfg: ArchConfig, weights: str) -> tuple[list[Path], str]:
    return resolve_files(cfg.arch, cfg.width, weights)


def resolve_files(arch: str, width: float, weights: str, output_stride: int | None = None) -> tuple[list[Path], str]:
    """The checkpoint file(s) `weights` ("pretrained" or a path) stands for, and how metadata names them."""
    if weights == "pretrained":
        ckpt = registry.find(arch, width, output_stride)
        if ckpt is None:
            have = "; ".join(
                f"{a} width {', '.join(format_width(w) for w in registry.widths_with_weights(a))}"
                for a in dict.fromkeys(c.arch for c in registry.all_checkpoints())
            )
            stride = f" at output stride {output_stride}" if output_stride else ""
            raise BadInput(
                f"no pretrained checkpoint ships for {_arch_label(arch, width)}{stride}",
                f"pretrained weights exist for: {have}; use random weights or the path of a .tflite checkpoint",
            )
        root = registry.pretrained_dir()
        paths = [root / f for f in ckpt.files]
        for p in paths:
            if not p.is_file():
                raise EnvironmentMissing(
                    f"the shipped checkpoint {p} is missing",
                    "restore models/pretrained/ from the repository or set MNETCTL_PRETRAINED_DIR",
                )
        return paths, "pretrained:" + "+".join(ckpt.files)
    path = Path(weights).expanduser()
    if not path.exists():
        raise BadInput(
            f"weights {weights}: no such file",
            "give 'random', 'pretrained' or the path of a .tflite checkpoint",
        )
    if path.is_dir():
        raise BadInput(f"weights {weights} is a folder; give a .tflite file")
    return [path], f"tflite:{path.name}"


@dataclass(frozen=True)
class ImportedCheckpoint:
    """A checkpoint mapped onto an ArchConfig: float weights, metadata, and the files as read."""

    cfg: ArchConfig
    files: tuple[TFLiteCheckpoint, ...]
    params: Weights
    meta: ModelMeta
    source: str  # file name(s), for messages
    order: tuple[tuple[int, TFLiteLayer], ...] | None = None  # where file order is not graph order (heads/)
    labels: Path | None = None  # the label file that ships with the checkpoint, where it is not ImageNet's

    @property
    def layers(self) -> list[tuple[int, TFLiteLayer]]:
        """(file index, layer) in the order of `cfg.param_layers()`."""
        if self.order is not None:
            return list(self.order)
        return [(i, layer) for i, f in enumerate(self.files) for layer in f.layers]


def load_checkpoint(cfg: ArchConfig, weights: str) -> ImportedCheckpoint:
    """Read and map a TFLite checkpoint ("pretrained" or a path) onto `cfg`, with the metadata it implies."""
    paths, source = _resolve(cfg, weights)
    files = [read_tflite(p) for p in paths]
    layers = [layer for f in files for layer in f.layers]
    label = " + ".join(p.name for p in paths)
    params = map_layers(cfg, layers, label)
    first = files[0]
    mean, std = _preprocessing(first)
    res = first.input_shape[1] if len(first.input_shape) == 4 else 0
    meta = ModelMeta(
        classes=cfg.classes,
        label_offset=1 if cfg.classes == BACKGROUND_CLASSES else 0,
        mean=mean,
        std=std,
        color_order="RGB",
        resize="short-side",
        crop_fraction=DEFAULT_CROP,
        interpolation="bilinear",
        weights=source,
        seed=None,
    ).with_extra(
        checkpoint_sha256=",".join(f.sha256[:SHA_CHARS] for f in files),
        checkpoint_resolution=res,
        checkpoint_dtype=",".join(sorted({layer.dtype for layer in layers})),
    )
    return ImportedCheckpoint(cfg=cfg, files=tuple(files), params=params, meta=meta, source=label)


def load_checkpoint_weights(cfg: ArchConfig, weights: str) -> tuple[Weights, ModelMeta]:
    """Weights for `cfg` from a TFLite checkpoint ("pretrained" or a path), plus the metadata it implies."""
    ck = load_checkpoint(cfg, weights)
    return ck.params, ck.meta
