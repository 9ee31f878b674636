"""MobileNet architectures as data.

One typed row per row of the papers' tables; `decode()` turns the rows plus a width multiplier
into concrete blocks with resolved channel counts. Channel rounding is decided in exactly one
place, `make_divisible`, and bound to the width multiplier once per decode.

Sources of the tables:
  V1        Howard et al. 2017, "MobileNets", Table 1
  V2        Sandler et al. 2018, "MobileNetV2", Table 2
  V3-Large  Howard et al. 2019, "Searching for MobileNetV3", Table 1
  V3-Small  Howard et al. 2019, Table 2

Scaling rules (as in the reference TF-slim code and the released checkpoints):
  * every channel count c becomes make_divisible(c * width, 8), never rounding down by more than 10 %;
  * V2 keeps its 1280-channel last conv for width <= 1 (it scales up for width > 1);
  * V2 expansion channels are make_divisible(in_channels * t) of the already-scaled input;
  * V3 output and stem channels scale; a row's expansion size is read as a ratio of the paper's input
    (e.g. 72 / 24 = 3) applied to the already-scaled input; the last 1x1 conv (960 / 576) scales with width;
    the 1x1 conv after pooling (1280 / 1024) is kept for width <= 1 and scaled above 1;
    squeeze-excite channels are make_divisible(expanded / 4, 8), as in the checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Literal

from .errors import BadInput

Act = Literal["relu6", "relu", "hswish"]

MIN_RESOLUTION = 32
MAX_WIDTH = 4.0


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round `value` to the nearest multiple of `divisor`, not going below `round_limit * value`."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


# --------------------------------------------------------------------------------------------
# Paper-table rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class V1Row:
    """One 'Conv dw / s, Conv 1x1' pair of Table 1: output channels of the pointwise conv, dw stride."""

    out: int
    stride: int


@dataclass(frozen=True)
class V2Row:
    """One row of Table 2: expansion t, output channels c, repeats n, first stride s."""

    t: int
    c: int
    n: int
    s: int


@dataclass(frozen=True)
class V3Row:
    """One row of Tables 1/2: kernel, expansion size, output channels, SE, nonlinearity, stride."""

    k: int
    exp: int
    out: int
    se: bool
    act: Act
    s: int


# MobileNet V1, Table 1: stem "Conv / s2, 3x3x3x32" then 13 depthwise-separable layers.
V1_STEM = 32
V1_ROWS: tuple[V1Row, ...] = (
    V1Row(64, 1),    # Conv dw / s1 + Conv 1x1 32 -> 64
    V1Row(128, 2),   # Conv dw / s2 + Conv 1x1 64 -> 128
    V1Row(128, 1),
    V1Row(256, 2),
    V1Row(256, 1),
    V1Row(512, 2),
    V1Row(512, 1),   # 5x Conv dw / s1 + Conv 1x1 512 -> 512
    V1Row(512, 1),
    V1Row(512, 1),
    V1Row(512, 1),
    V1Row(512, 1),
    V1Row(1024, 2),  # Conv dw / s2 + Conv 1x1 512 -> 1024
    V1Row(1024, 1),  # Conv dw / s1 (the paper's "s2" here is a known typo) + Conv 1x1 1024 -> 1024
)

# MobileNet V2, Table 2: conv2d 3x3 32 / s2, seven bottleneck rows, conv2d 1x1 1280.
V2_STEM = 32
V2_ROWS: tuple[V2Row, ...] = (
    V2Row(1, 16, 1, 1),
    V2Row(6, 24, 2, 2),
    V2Row(6, 32, 3, 2),
    V2Row(6, 64, 4, 2),
    V2Row(6, 96, 3, 1),
    V2Row(6, 160, 3, 2),
    V2Row(6, 320, 1, 1),
)
V2_LAST = 1280

# MobileNet V3-Large, Table 1 (stem conv2d 3x3 16 / s2 h-swish).
V3_LARGE_STEM = 16
V3_LARGE_ROWS: tuple[V3Row, ...] = (
    V3Row(3, 16, 16, False, "relu", 1),
    V3Row(3, 64, 24, False, "relu", 2),
    V3Row(3, 72, 24, False, "relu", 1),
    V3Row(5, 72, 40, True, "relu", 2),
    V3Row(5, 120, 40, True, "relu", 1),
    V3Row(5, 120, 40, True, "relu", 1),
    V3Row(3, 240, 80, False, "hswish", 2),
    V3Row(3, 200, 80, False, "hswish", 1),
    V3Row(3, 184, 80, False, "hswish", 1),
    V3Row(3, 184, 80, False, "hswish", 1),
    V3Row(3, 480, 112, True, "hswish", 1),
    V3Row(3, 672, 112, True, "hswish", 1),
    V3Row(5, 672, 160, True, "hswish", 2),
    V3Row(5, 960, 160, True, "hswish", 1),
    V3Row(5, 960, 160, True, "hswish", 1),
)
V3_LARGE_HEAD = 1280  # conv2d 1x1, NBN, after the pool

# MobileNet V3-Small, Table 2 (stem conv2d 3x3 16 / s2 h-swish).
V3_SMALL_STEM = 16
V3_SMALL_ROWS: tuple[V3Row, ...] = (
    V3Row(3, 16, 16, True, "relu", 2),
    V3Row(3, 72, 24, False, "relu", 2),
    V3Row(3, 88, 24, False, "relu", 1),
    V3Row(5, 96, 40, True, "hswish", 2),
    V3Row(5, 240, 40, True, "hswish", 1),
    V3Row(5, 240, 40, True, "hswish", 1),
    V3Row(5, 120, 48, True, "hswish", 1),
    V3Row(5, 144, 48, True, "hswish", 1),
    V3Row(5, 288, 96, True, "hswish", 2),
    V3Row(5, 576, 96, True, "hswish", 1),
    V3Row(5, 576, 96, True, "hswish", 1),
)
V3_SMALL_HEAD = 1024

V3_LAST_EXPANSION = 6  # last 1x1 conv = 6 x the last block's output (960 / 576)


# --------------------------------------------------------------------------------------------
# Decoded (concrete) architecture
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A concrete block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project [-> + input].

    V1's depthwise-separable layer is the special case with no expansion and an activated projection.
    """

    index: int
    in_ch: int
    exp_ch: int
    out_ch: int
    kernel: int
    stride: int
    act: Act
    se_ch: int = 0  # squeeze channels; 0 = no squeeze-excite
    project_act: bool = False  # V1: pointwise conv is followed by the activation
    dw_act: bool = True

    @property
    def has_expand(self) -> bool:
        return self.exp_ch != self.in_ch

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_ch == self.out_ch and not self.project_act


@dataclass(frozen=True)
class ParamLayer:
    """A layer that carries a weight (and bias): conv, depthwise conv or fully connected."""

    name: str
    kind: Literal["conv", "dw", "fc"]
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    dilation: int = 1

    @property
    def groups(self) -> int:
        return self.cin if self.kind == "dw" else 1

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "fc":
            return (self.cout, self.cin)
        return (self.cout, self.cin // self.groups, self.kernel, self.kernel)

    @property
    def fan_in(self) -> int:
        shape = self.weight_shape
        return math.prod(shape[1:])


@dataclass(frozen=True)
class ArchConfig:
    """A fully resolved MobileNet: every channel count and stride known."""

    arch: str
    width: float
    resolution: int
    classes: int
    stem_ch: int
    stem_act: Act
    blocks: tuple[Block, ...]
    last_ch: int | None  # 1x1 conv after the blocks, before pooling (V2 1280, V3 960/576); None for V1
    last_act: Act | None
    head_ch: int | None  # V3 only: 1x1 conv after pooling (1280/1024), no batch norm
    head_act: Act | None

    @property
    def features_ch(self) -> int:
        return self.head_ch or self.last_ch or self.blocks[-1].out_ch

    def param_layers(self) -> list[ParamLayer]:
        """Weight-carrying layers in graph (and checkpoint) order."""
        layers = [ParamLayer("stem.conv", "conv", 3, self.stem_ch, 3, 2)]
        for b in self.blocks:
            p = f"blocks.{b.index}"
            if b.has_expand:
                layers.append(ParamLayer(f"{p}.expand", "conv", b.in_ch, b.exp_ch))
            layers.append(ParamLayer(f"{p}.dw", "dw", b.exp_ch, b.exp_ch, b.kernel, b.stride))
            if b.se_ch:
                layers.append(ParamLayer(f"{p}.se.reduce", "conv", b.exp_ch, b.se_ch))
                layers.append(ParamLayer(f"{p}.se.expand", "conv", b.se_ch, b.exp_ch))
            layers.append(ParamLayer(f"{p}.project", "conv", b.exp_ch, b.out_ch))
        prev = self.blocks[-1].out_ch
        if self.last_ch:
            layers.append(ParamLayer("head.conv", "conv", prev, self.last_ch))
            prev = self.last_ch
        if self.head_ch:
            layers.append(ParamLayer("head.hidden", "conv", prev, self.head_ch))
            prev = self.head_ch
        layers.append(ParamLayer("head.fc", "fc", prev, self.classes))
        return layers

    def spatial_sizes(self) -> list[int]:
        """Output side length after the stem and after each block (SAME / symmetric agree on shapes)."""
        size = math.ceil(self.resolution / 2)
        sizes = [size]
        for b in self.blocks:
            size = math.ceil(size / b.stride)
            sizes.append(size)
        return sizes

    def count_macs_params(self) -> tuple[int, int]:
        """Independent MAC/parameter count from the config alone (used to cross-check graph analysis)."""
        macs = 0
        params = 0
        cur = self.resolution
        for layer in self.param_layers():
            if layer.name.endswith(".se.reduce") or layer.name.endswith(".se.expand"):
                out = 1
            elif layer.name in ("head.hidden", "head.fc"):
                out = 1
            else:
                cur = math.ceil(cur / layer.stride)
                out = cur
            macs += out * out * layer.cout * layer.fan_in
            params += math.prod(layer.weight_shape) + layer.cout
        return macs, params


# --------------------------------------------------------------------------------------------
# Decoding rows + width into blocks
# --------------------------------------------------------------------------------------------

Round = Callable[[float], int]


def scale_channels(channels: float, width: float) -> int:
    """The one width-scaling rule: make_divisible(channels * width, 8)."""
    return make_divisible(channels * width)


def _decode_v1(width: float, rnd: Round) -> dict:
    stem = rnd(V1_STEM)
    blocks = []
    cin = stem
    for i, row in enumerate(V1_ROWS):
        out = rnd(row.out)
        blocks.append(Block(i, cin, cin, out, 3, row.stride, "relu6", project_act=True))
        cin = out
    return dict(stem_ch=stem, stem_act="relu6", blocks=blocks, last_ch=None, last_act=None, head_ch=None, head_act=None)


def _decode_v2(width: float, rnd: Round) -> dict:
    stem = rnd(V2_STEM)
    blocks = []
    cin = stem
    for row in V2_ROWS:
        out = rnd(row.c)
        for j in range(row.n):
            exp = cin if row.t == 1 else make_divisible(cin * row.t)
            blocks.append(Block(len(blocks), cin, exp, out, 3, row.s if j == 0 else 1, "relu6"))
            cin = out
    last = V2_LAST if width <= 1.0 else rnd(V2_LAST)
    return dict(stem_ch=stem, stem_act="relu6", blocks=blocks, last_ch=last, last_act="relu6", head_ch=None, head_act=None)


def _decode_v3(rows: tuple[V3Row, ...], stem_ch: int, head_ch: int, width: float, rnd: Round) -> dict:
    stem = rnd(stem_ch)
    blocks = []
    cin = stem
    paper_in = stem_ch
    for i, row in enumerate(rows):
        # The tables give absolute expansion sizes; the implementations store them as a ratio of the
        # block's input (e.g. 72/24 = 3) applied to the already-scaled input channels.
        exp = cin if row.exp == paper_in else make_divisible(cin * row.exp / paper_in)
        out = rnd(row.out)
        paper_in = row.out
        se = make_divisible(exp / 4) if row.se else 0
        blocks.append(Block(i, cin, exp, out, row.k, row.s, row.act, se_ch=se))
        cin = out
    last = rnd(rows[-1].out * V3_LAST_EXPANSION)
    head = head_ch if width <= 1.0 else rnd(head_ch)
    return dict(stem_ch=stem, stem_act="hswish", blocks=blocks, last_ch=last, last_act="hswish", head_ch=head, head_act="hswish")


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    paper: str
    decode: Callable[[float, Round], dict]
    widths: tuple[float, ...]
    resolutions: tuple[int, ...]
    default_width: float = 1.0
    default_resolution: int = 224
    aliases: tuple[str, ...] = field(default_factory=tuple)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("v1", "MobileNet V1", "Howard et al. 2017, Table 1", _decode_v1,
               (0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224), aliases=("mobilenet_v1", "mobilenetv1")),
        Family("v2", "MobileNet V2", "Sandler et al. 2018, Table 2", _decode_v2,
               (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (96, 128, 160, 192, 224), aliases=("mobilenet_v2", "mobilenetv2")),
        Family("v3-large", "MobileNet V3-Large", "Howard et al. 2019, Table 1",
               partial(_decode_v3, V3_LARGE_ROWS, V3_LARGE_STEM, V3_LARGE_HEAD),
               (0.75, 1.0), (224,), aliases=("v3l", "v3_large", "mobilenet_v3_large")),
        Family("v3-small", "MobileNet V3-Small", "Howard et al. 2019, Table 2",
               partial(_decode_v3, V3_SMALL_ROWS, V3_SMALL_STEM, V3_SMALL_HEAD),
               (0.75, 1.0), (224,), aliases=("v3s", "v3_small", "mobilenet_v3_small")),
    )
}


def resolve_arch(name: str) -> str:
    key = name.strip().lower()
    for fam in FAMILIES.values():
        if key == fam.name or key in fam.aliases:
            return fam.name
    raise BadInput(f"unknown architecture '{name}'", f"choose one of: {', '.join(FAMILIES)}")


def validate_width(width: float) -> float:
    try:
        w = float(width)
    except (TypeError, ValueError):
        raise BadInput(f"width must be a number, got {width!r}") from None
    if not math.isfinite(w) or w <= 0:
        raise BadInput(f"width must be a finite number > 0, got {width}")
    if w > MAX_WIDTH:
        raise BadInput(f"width {w:g} is larger than the supported maximum {MAX_WIDTH:g}")
    return w


def validate_resolution(resolution: int) -> int:
    if isinstance(resolution, float) and not resolution.is_integer():
        raise BadInput(f"resolution must be an integer, got {resolution}")
    r = int(resolution)
    if r < MIN_RESOLUTION:
        raise BadInput(f"resolution must be an integer >= {MIN_RESOLUTION}, got {resolution}")
    if r > 4096:
        raise BadInput(f"resolution {r} is larger than the supported maximum 4096")
    return r


def validate_classes(classes: int) -> int:
    c = int(classes)
    if c < 1 or c > 100_000:
        raise BadInput(f"classes must be between 1 and 100000, got {classes}")
    return c


def decode(arch: str, width: float = 1.0, resolution: int = 224, classes: int = 1000) -> ArchConfig:
    """Resolve an architecture name, width, resolution and class count into a concrete config."""
    name = resolve_arch(arch)
    width = validate_width(width)
    resolution = validate_resolution(resolution)
    classes = validate_classes(classes)
    parts = FAMILIES[name].decode(width, partial(scale_channels, width=width))
    parts["blocks"] = tuple(parts["blocks"])
    return ArchConfig(arch=name, width=width, resolution=resolution, classes=classes, **parts)


def format_width(width: float) -> str:
    """0.75 -> '0.75', 1 -> '1.0' (the spelling used in file names and metadata)."""
    text = f"{float(width):g}"
    return text if ("." in text or "e" in text) else text + ".0"


def default_filename(arch: str, width: float, resolution: int) -> str:
    return f"{arch}-{format_width(width)}-{resolution}.onnx"
