"""MobileNet architectures as data.

One typed row per row of the papers' tables; `decode()` turns the rows plus a width multiplier
into concrete blocks with resolved channel counts. Channel rounding is decided in exactly one
place, `make_divisible`, and bound to the width multiplier once per decode.

Sources of the tables:
  V1        Howard et al. 2017, "MobileNets", Table 1
  V2        Sandler et al. 2018, "MobileNetV2", Table 2
  V3-Large  Howard et al. 2019, "Searching for MobileNetV3", Table 1
  V3-Small  Howard et al. 2019, Table 2
  V4        Qin et al. 2024, "MobileNetV4 - Universal Models for the Mobile Ecosystem" (arXiv 2404.10518),
            the architecture tables of Conv-S/M/L and Hybrid-M, as released in the reference implementation
            (tensorflow/models official/vision/modeling/backbones/mobilenet.py, MNV4*_BLOCK_SPECS)
  EdgeTPU   MobileNet-EdgeTPU (Gupta & Akin 2019, Google AI blog; TF-slim mobilenet_v3.py V3_EDGETPU), as laid
            out in the MLPerf Mobile checkpoint

Scaling rules (as in the reference TF-slim code and the released checkpoints):
  * every channel count c becomes make_divisible(c * width, 8), never rounding down by more than 10 %;
  * V2 keeps its 1280-channel last conv for width <= 1 (it scales up for width > 1);
  * V2 expansion channels are make_divisible(in_channels * t) of the already-scaled input;
  * V3 output and stem channels scale; a row's expansion size is read as a ratio of the paper's input
    (e.g. 72 / 24 = 3) applied to the already-scaled input; the last 1x1 conv (960 / 576) scales with width;
    the 1x1 conv after pooling (1280 / 1024) is kept for width <= 1 and scaled above 1;
    squeeze-excite channels are make_divisible(expanded / 4, 8), as in the checkpoints.
  * V4 and EdgeTPU follow the same rules as the reference implementation's `block_spec_decoder`
    (tensorflow/models, mobilenet.py): every `filters` value becomes make_divisible(filters * width, 8),
    the last 1x1 conv after pooling (1280) is kept for width <= 1 and scaled above 1 ("finegrain
    classification mode"), expansion channels are make_divisible(in_channels * ratio) of the already-scaled
    input; Mobile MQA's heads, key and value dimensions do not scale (they are not `filters`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Literal

from .errors import BadInput

Act = Literal["relu6", "relu", "hswish"]
# ib: [start dw] -> [1x1 expand] -> [kxk dw] -> [SE] -> 1x1 project: V1-V3's blocks and V4's Universal Inverted
#     Bottleneck (ExtraDW, IB, ConvNext and FFN are the four on/off combinations of the two depthwise convs);
# fused: kxk conv expand -> 1x1 project (fused IB); conv: one kxk conv + activation; mqa: Mobile MQA attention.
BlockKind = Literal["ib", "fused", "conv", "mqa"]

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


@dataclass(frozen=True)
class V4Row:
    """One row of the MobileNetV4 (and MobileNet-EdgeTPU) tables.

    kind conv:  a kxk conv to `out` channels, stride s, activated (Conv-S's first layers);
    kind fused: fused IB, a kxk conv expanding the input by ratio e (stride s), then a 1x1 projection;
    kind uib:   Universal Inverted Bottleneck: optional start depthwise conv (kernel `start`, 0 = none), 1x1
                expansion by e, optional middle depthwise conv (kernel `mid`, 0 = none), 1x1 projection.
                start>0, mid>0: ExtraDW; start=0, mid>0: IB; start>0, mid=0: ConvNext; both 0: FFN;
    kind mqa:   Mobile MQA on the current channels: `heads` query heads, one shared key/value head of `dim`
                channels, keys/values downsampled by a strided 3x3 depthwise conv when kv_stride > 1.
    """

    kind: Literal["conv", "fused", "uib", "mqa"]
    out: int = 0
    s: int = 1
    k: int = 3
    e: float = 1.0
    start: int = 0
    mid: int = 0
    residual: bool = True
    heads: int = 0
    dim: int = 0
    kv_stride: int = 1


def _conv(k: int, s: int, out: int) -> V4Row:
    return V4Row("conv", out, s, k)


def _fused(k: int, s: int, out: int, e: float, residual: bool = True) -> V4Row:
    return V4Row("fused", out, s, k, e, residual=residual)


def _uib(start: int, mid: int, s: int, out: int, e: float, residual: bool = True) -> V4Row:
    return V4Row("uib", out, s, 0, e, start, mid, residual)


def _mqa(heads: int, dim: int, kv_stride: int) -> V4Row:
    return V4Row("mqa", heads=heads, dim=dim, kv_stride=kv_stride)


# MobileNetV4 heads: 1x1 conv 960 before the pool, 1x1 conv 1280 after it (both ReLU, batch norm folded).
V4_LAST = 960
V4_HEAD = 1280

# MNv4-Conv-S (224 px): stem conv 3x3 s2 32, then
V4_CONV_S_STEM = 32
V4_CONV_S_ROWS: tuple[V4Row, ...] = (
    _conv(3, 2, 32), _conv(1, 1, 32),  # the paper's "FusedIB 3x3 s2, exp 32": a 3x3 and a 1x1 conv, both activated
    _conv(3, 2, 96), _conv(1, 1, 64),  # "FusedIB 3x3 s2, exp 96"
    _uib(5, 5, 2, 96, 3.0),  # ExtraDW
    _uib(0, 3, 1, 96, 2.0), _uib(0, 3, 1, 96, 2.0), _uib(0, 3, 1, 96, 2.0), _uib(0, 3, 1, 96, 2.0),  # IB
    _uib(3, 0, 1, 96, 4.0),  # ConvNext
    _uib(3, 3, 2, 128, 6.0), _uib(5, 5, 1, 128, 4.0),  # ExtraDW
    _uib(0, 5, 1, 128, 4.0), _uib(0, 5, 1, 128, 3.0), _uib(0, 3, 1, 128, 4.0), _uib(0, 3, 1, 128, 4.0),  # IB
)

# MNv4-Conv-M (256 px): stem conv 3x3 s2 32, then
V4_CONV_M_STEM = 32
V4_CONV_M_ROWS: tuple[V4Row, ...] = (
    _fused(3, 2, 48, 4.0),
    _uib(3, 5, 2, 80, 4.0), _uib(3, 3, 1, 80, 2.0),
    _uib(3, 5, 2, 160, 6.0), _uib(3, 3, 1, 160, 4.0), _uib(3, 3, 1, 160, 4.0), _uib(3, 5, 1, 160, 4.0),
    _uib(3, 3, 1, 160, 4.0), _uib(3, 0, 1, 160, 4.0), _uib(0, 0, 1, 160, 2.0), _uib(3, 0, 1, 160, 4.0),
    _uib(5, 5, 2, 256, 6.0), _uib(5, 5, 1, 256, 4.0), _uib(3, 5, 1, 256, 4.0), _uib(3, 5, 1, 256, 4.0),
    _uib(0, 0, 1, 256, 4.0), _uib(3, 0, 1, 256, 4.0), _uib(3, 5, 1, 256, 2.0), _uib(5, 5, 1, 256, 4.0),
    _uib(0, 0, 1, 256, 4.0), _uib(0, 0, 1, 256, 4.0), _uib(5, 0, 1, 256, 2.0),
)

# MNv4-Conv-L (384 px): stem conv 3x3 s2 24, then
V4_CONV_L_STEM = 24
V4_CONV_L_ROWS: tuple[V4Row, ...] = (
    _fused(3, 2, 48, 4.0),
    _uib(3, 5, 2, 96, 4.0), _uib(3, 3, 1, 96, 4.0),
    _uib(3, 5, 2, 192, 4.0), _uib(3, 3, 1, 192, 4.0), _uib(3, 3, 1, 192, 4.0), _uib(3, 3, 1, 192, 4.0),
    _uib(3, 5, 1, 192, 4.0), _uib(5, 3, 1, 192, 4.0), _uib(5, 3, 1, 192, 4.0), _uib(5, 3, 1, 192, 4.0),
    _uib(5, 3, 1, 192, 4.0), _uib(5, 3, 1, 192, 4.0), _uib(3, 0, 1, 192, 4.0),
    _uib(5, 5, 2, 512, 4.0), _uib(5, 5, 1, 512, 4.0), _uib(5, 5, 1, 512, 4.0), _uib(5, 5, 1, 512, 4.0),
    _uib(5, 0, 1, 512, 4.0), _uib(5, 3, 1, 512, 4.0), _uib(5, 0, 1, 512, 4.0), _uib(5, 0, 1, 512, 4.0),
    _uib(5, 3, 1, 512, 4.0), _uib(5, 5, 1, 512, 4.0), _uib(5, 0, 1, 512, 4.0), _uib(5, 0, 1, 512, 4.0),
    _uib(5, 0, 1, 512, 4.0),
)

# MNv4-Hybrid-M (256 px): Conv-M's layout with Mobile MQA in the last two stages (4 heads, key/value dim 64;
# keys/values downsampled 2x in the 16 px stage, not in the 8 px stage).
V4_HYBRID_M_STEM = 32
V4_HYBRID_M_ROWS: tuple[V4Row, ...] = (
    _fused(3, 2, 48, 4.0),
    _uib(3, 5, 2, 80, 4.0), _uib(3, 3, 1, 80, 2.0),
    _uib(3, 5, 2, 160, 6.0), _uib(0, 0, 1, 160, 2.0), _uib(3, 3, 1, 160, 4.0), _uib(3, 5, 1, 160, 4.0),
    _mqa(4, 64, 2), _uib(3, 3, 1, 160, 4.0), _mqa(4, 64, 2), _uib(3, 0, 1, 160, 4.0),
    _mqa(4, 64, 2), _uib(3, 3, 1, 160, 4.0), _mqa(4, 64, 2), _uib(3, 0, 1, 160, 4.0),
    _uib(5, 5, 2, 256, 6.0), _uib(5, 5, 1, 256, 4.0), _uib(3, 5, 1, 256, 4.0), _uib(3, 5, 1, 256, 4.0),
    _uib(0, 0, 1, 256, 2.0), _uib(3, 5, 1, 256, 2.0), _uib(0, 0, 1, 256, 2.0), _uib(0, 0, 1, 256, 4.0),
    _mqa(4, 64, 1), _uib(3, 0, 1, 256, 4.0), _mqa(4, 64, 1), _uib(5, 5, 1, 256, 4.0),
    _mqa(4, 64, 1), _uib(5, 0, 1, 256, 4.0), _mqa(4, 64, 1), _uib(5, 0, 1, 256, 4.0),
)
V4_MQA_DW_KERNEL = 3  # the key/value downsampling depthwise conv

# MobileNet-EdgeTPU (224 px): stem conv 3x3 s2 32 ReLU; fused IBs (no depthwise) while the feature maps are large,
# then IBs; 1x1 conv 1280 before the pool; the classifier reads the pooled 1280 channels directly.
EDGETPU_STEM = 32
EDGETPU_ROWS: tuple[V4Row, ...] = (
    _fused(3, 1, 16, 1.0),  # expansion 1: the 1x1 projection alone
    _fused(3, 2, 32, 8.0), _fused(3, 1, 32, 4.0), _fused(3, 1, 32, 4.0), _fused(3, 1, 32, 4.0),
    _fused(3, 2, 48, 8.0), _fused(3, 1, 48, 4.0), _fused(3, 1, 48, 4.0), _fused(3, 1, 48, 4.0),
    _uib(0, 3, 2, 96, 8.0), _uib(0, 3, 1, 96, 4.0), _uib(0, 3, 1, 96, 4.0), _uib(0, 3, 1, 96, 4.0),
    _uib(0, 3, 1, 96, 8.0, residual=False), _uib(0, 3, 1, 96, 4.0), _uib(0, 3, 1, 96, 4.0), _uib(0, 3, 1, 96, 4.0),
    _uib(0, 5, 2, 160, 8.0), _uib(0, 5, 1, 160, 4.0), _uib(0, 5, 1, 160, 4.0), _uib(0, 5, 1, 160, 4.0),
    _uib(0, 3, 1, 192, 8.0),
)
EDGETPU_LAST = 1280


# --------------------------------------------------------------------------------------------
# Decoded (concrete) architecture
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A concrete block (see BlockKind). The usual one, kind "ib":
    [start kxk depthwise] -> [1x1 expand] -> [kxk depthwise] -> [SE] -> 1x1 project [-> + input].

    V1's depthwise-separable layer is the special case with no expansion and an activated projection; V4's UIB
    sets `start_kernel` (ExtraDW, ConvNext) and may drop the middle depthwise (`kernel` 0: ConvNext, FFN).
    The stride sits on the middle depthwise conv, or on the start one when there is no middle one.
    """

    index: int
    in_ch: int
    exp_ch: int
    out_ch: int
    kernel: int  # ib: middle depthwise kernel (0 = none); fused/conv: the conv's kernel; mqa: K/V downsampling dw
    stride: int
    act: Act
    se_ch: int = 0  # squeeze channels; 0 = no squeeze-excite
    project_act: bool = False  # V1: pointwise conv is followed by the activation
    dw_act: bool = True
    kind: BlockKind = "ib"
    start_kernel: int = 0  # ib: depthwise conv before the expansion, not activated (0 = none)
    skip: bool = True  # a residual connection where shapes allow (EdgeTPU has one block without)
    heads: int = 0  # mqa: query heads; one key/value head of key_dim / value_dim channels
    key_dim: int = 0
    value_dim: int = 0
    kv_stride: int = 1  # mqa: keys and values come from a depthwise conv with this stride

    @property
    def has_expand(self) -> bool:
        return self.kind in ("ib", "fused") and self.exp_ch != self.in_ch

    @property
    def residual(self) -> bool:
        if self.kind == "conv":
            return False
        return self.skip and self.stride == 1 and self.in_ch == self.out_ch and not self.project_act

    @property
    def start_stride(self) -> int:
        return 1 if self.kernel else self.stride

    def layers(self, size: int) -> tuple[list[tuple["ParamLayer", int]], int, int]:
        """This block's weight layers in graph order, each with its output side length; the block's output
        side; and the MACs of its weightless matrix products (attention)."""
        p = f"blocks.{self.index}"
        out: list[tuple[ParamLayer, int]] = []

        def add(name: str, kind: str, cin: int, cout: int, kernel: int = 1, stride: int = 1, side: int | None = None):
            nonlocal size
            if side is None:
                size = math.ceil(size / stride)
                side = size
            out.append((ParamLayer(f"{p}.{name}", kind, cin, cout, kernel, stride), side))

        if self.kind == "conv":
            add("conv", "conv", self.in_ch, self.out_ch, self.kernel, self.stride)
            return out, size, 0
        if self.kind == "mqa":
            c, h, dk, dv = self.in_ch, self.heads, self.key_dim, self.value_dim
            add("norm", "dw", c, c)  # the input batch norm: a per-channel scale and shift
            add("query", "conv", c, h * dk)
            kv = math.ceil(size / self.kv_stride)
            for name, dim in (("key", dk), ("value", dv)):
                if self.kv_stride > 1:
                    add(f"{name}.dw", "dw", c, c, self.kernel, self.kv_stride, side=kv)
                add(name, "conv", c, dim, side=kv)
            add("output", "conv", h * dv, c)
            return out, size, h * size * size * kv * kv * (dk + dv)
        if self.kind == "fused":
            if self.has_expand:
                add("expand", "conv", self.in_ch, self.exp_ch, self.kernel, self.stride)
            add("project", "conv", self.exp_ch, self.out_ch)
            return out, size, 0
        if self.start_kernel:
            add("start_dw", "dw", self.in_ch, self.in_ch, self.start_kernel, self.start_stride)
        if self.has_expand:
            add("expand", "conv", self.in_ch, self.exp_ch)
        if self.kernel:
            add("dw", "dw", self.exp_ch, self.exp_ch, self.kernel, self.stride)
        if self.se_ch:
            add("se.reduce", "conv", self.exp_ch, self.se_ch, side=1)
            add("se.expand", "conv", self.se_ch, self.exp_ch, side=1)
        add("project", "conv", self.exp_ch, self.out_ch)
        return out, size, 0


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

    def layer_plan(self) -> tuple[list[tuple[ParamLayer, int]], int]:
        """Weight layers in graph (and checkpoint) order with their output side length, and the MACs of the
        weightless matrix products (Mobile MQA's two attention MatMuls)."""
        size = math.ceil(self.resolution / 2)
        plan = [(ParamLayer("stem.conv", "conv", 3, self.stem_ch, 3, 2), size)]
        extra = 0
        for b in self.blocks:
            layers, size, matmul = b.layers(size)
            plan.extend(layers)
            extra += matmul
        prev = self.blocks[-1].out_ch
        if self.last_ch:
            plan.append((ParamLayer("head.conv", "conv", prev, self.last_ch), size))
            prev = self.last_ch
        if self.head_ch:
            plan.append((ParamLayer("head.hidden", "conv", prev, self.head_ch), 1))
            prev = self.head_ch
        plan.append((ParamLayer("head.fc", "fc", prev, self.classes), 1))
        return plan, extra

    def param_layers(self) -> list[ParamLayer]:
        """Weight-carrying layers in graph (and checkpoint) order."""
        return [layer for layer, _ in self.layer_plan()[0]]

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
        plan, macs = self.layer_plan()
        params = 0
        for layer, side in plan:
            macs += side * side * layer.cout * layer.fan_in
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


def _decode_v4(rows: tuple[V4Row, ...], stem_ch: int, last_ch: int, head_ch: int | None, width: float, rnd: Round) -> dict:
    """V4 / EdgeTPU rows -> blocks (ReLU throughout, as in the reference implementation)."""
    stem = rnd(stem_ch)
    blocks: list[Block] = []
    cin = stem
    for row in rows:
        i = len(blocks)
        if row.kind == "mqa":
            blocks.append(Block(i, cin, cin, cin, V4_MQA_DW_KERNEL, 1, "relu", kind="mqa", heads=row.heads,
                                key_dim=row.dim, value_dim=row.dim, kv_stride=row.kv_stride))
            continue
        out = rnd(row.out)
        exp = cin if row.e == 1 else make_divisible(cin * row.e)
        if row.kind == "conv":
            blocks.append(Block(i, cin, cin, out, row.k, row.s, "relu", kind="conv"))
        elif row.kind == "fused":
            blocks.append(Block(i, cin, exp, out, row.k, row.s, "relu", kind="fused", skip=row.residual))
        else:
            blocks.append(Block(i, cin, exp, out, row.mid, row.s, "relu", start_kernel=row.start, skip=row.residual))
        cin = out
    head = None if head_ch is None else (head_ch if width <= 1.0 else rnd(head_ch))
    return dict(stem_ch=stem, stem_act="relu", blocks=blocks, last_ch=rnd(last_ch), last_act="relu",
                head_ch=head, head_act="relu" if head else None)


def _decode_edgetpu(width: float, rnd: Round) -> dict:
    parts = _decode_v4(EDGETPU_ROWS, EDGETPU_STEM, EDGETPU_LAST, None, width, rnd)
    # the 1280-channel last conv is kept for width <= 1 and scaled above (TF-slim's finegrain mode)
    parts["last_ch"] = EDGETPU_LAST if width <= 1.0 else rnd(EDGETPU_LAST)
    return parts


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
    note: str = ""  # shown by `archs` (e.g. that no pretrained weights exist)


_V4_NOTE = "no pretrained weights ship (none are released for offline use): random weights, for latency and size"

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
        Family("v4-conv-s", "MobileNetV4 Conv-S", "Qin et al. 2024, MNv4-Conv-S",
               partial(_decode_v4, V4_CONV_S_ROWS, V4_CONV_S_STEM, V4_LAST, V4_HEAD),
               (0.5, 0.75, 1.0, 1.5), (160, 192, 224, 256), aliases=("mnv4-conv-s", "mobilenetv4_conv_small"),
               note=_V4_NOTE),
        Family("v4-conv-m", "MobileNetV4 Conv-M", "Qin et al. 2024, MNv4-Conv-M",
               partial(_decode_v4, V4_CONV_M_ROWS, V4_CONV_M_STEM, V4_LAST, V4_HEAD),
               (0.5, 0.75, 1.0, 1.5), (224, 256, 320), default_resolution=256,
               aliases=("mnv4-conv-m", "mobilenetv4_conv_medium"), note=_V4_NOTE),
        Family("v4-conv-l", "MobileNetV4 Conv-L", "Qin et al. 2024, MNv4-Conv-L",
               partial(_decode_v4, V4_CONV_L_ROWS, V4_CONV_L_STEM, V4_LAST, V4_HEAD),
               (0.5, 0.75, 1.0), (256, 320, 384), default_resolution=384,
               aliases=("mnv4-conv-l", "mobilenetv4_conv_large"), note=_V4_NOTE),
        Family("v4-hybrid-m", "MobileNetV4 Hybrid-M", "Qin et al. 2024, MNv4-Hybrid-M (Mobile MQA)",
               partial(_decode_v4, V4_HYBRID_M_ROWS, V4_HYBRID_M_STEM, V4_LAST, V4_HEAD),
               (0.5, 0.75, 1.0), (224, 256, 320), default_resolution=256,
               aliases=("mnv4-hybrid-m", "mobilenetv4_hybrid_medium"), note=_V4_NOTE),
        Family("mobilenet-edgetpu", "MobileNet-EdgeTPU", "Gupta & Akin 2019 (TF-slim V3_EDGETPU; MLPerf Mobile)",
               _decode_edgetpu, (0.75, 1.0), (224,), aliases=("edgetpu", "mobilenet_edgetpu")),
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
