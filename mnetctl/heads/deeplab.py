"""DeepLabV3 on a MobileNetV2 backbone, as data (Chen et al. 2017, "Rethinking Atrous Convolution";
the MobileNetV2 paper, Sandler et al. 2018, section 6.3 "Semantic Segmentation").

The backbone is Table 2 of the MobileNetV2 paper (`specs.V2_ROWS`) without its 1280-channel last conv, its
channels rounded as DeepLab's feature extractor rounds them: to multiples of 8 at width 1, not at all
below (divisor 1, at least 8 channels: width 0.5 has 12- and 72-channel layers where a classifier has 16
and 96), run at an output stride of 16 (or 8): once the strides so far reach the output stride, a row's stride
becomes 1 and every later depthwise conv is dilated by the stride it gave up (the TF-slim / DeepLab
rule: a layer uses the rate accumulated before it, then multiplies it by its own stride).

The head is the ASPP variant of the released MobileNetV2 checkpoints: two branches on the backbone
output, image pooling (global average pool -> 1x1 conv 256 + ReLU -> bilinear upsample back) and a
1x1 conv 256 + ReLU (`aspp0`); no atrous 3x3 branches ("MobileNetV2 + ASPP without atrous branches"
in the paper's Table 7). Concatenated [pool, 1x1], projected by a 1x1 conv 256 + ReLU, then a 1x1 conv
to the class logits (with bias), and bilinear upsampling (align corners) to the input size; `argmax`
(in the graph) gives the class map, or the logits are the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import BadInput
from ..specs import (V2_ROWS, V2_STEM, ArchConfig, Block, ParamLayer, make_divisible, validate_resolution,
                     validate_width)

ARCH = "deeplabv3-v2"
ALIASES = ("deeplabv3", "deeplab", "deeplabv3_mnv2", "deeplabv3-mobilenetv2")
TITLE = "DeepLabV3 + MobileNetV2"
PAPER = "Chen et al. 2017 (DeepLabV3); Sandler et al. 2018, section 6.3"

ASPP_CHANNELS = 256
PASCAL_CLASSES = 21  # Pascal VOC 2012: background + 20 classes
DEFAULT_RESOLUTION = 513
DEFAULT_OUTPUT_STRIDE = 16
OUTPUT_STRIDES = (8, 16, 32)
WIDTHS = (0.5, 1.0)  # released checkpoints (Coral: 1.0 and 0.5 at 513; TFLite Support: 0.5 at 257)
RESOLUTIONS = (257, 321, 513)
POSTPROCESS = ("graph", "host")  # graph: resize + ArgMax inside the graph; host: resized logits out

# Head layers, in the order of `param_layers()`; `role` says how an importer finds each one in a checkpoint.
HEAD_LAYERS: tuple[tuple[str, str], ...] = (
    ("aspp.pool.conv", "reads the global average pool"),
    ("aspp.conv", "reads the backbone output"),
    ("aspp.project", "reads the concatenated branches"),
    ("head.logits", "reads the projection"),
)


@dataclass(frozen=True)
class DeepLabConfig:
    """A fully resolved DeepLabV3: backbone blocks with their strides and dilations, head channel counts."""

    backbone: ArchConfig  # the V2 backbone (its strides already at the output stride, see `dilations`)
    dilations: tuple[int, ...]  # per backbone block: dilation of its depthwise conv
    output_stride: int
    classes: int = PASCAL_CLASSES
    aspp_ch: int = ASPP_CHANNELS
    postprocess: str = "graph"
    arch: str = ARCH

    # -- the facts other modules read, named as on ArchConfig -----------------------------------
    @property
    def width(self) -> float:
        return self.backbone.width

    @property
    def resolution(self) -> int:
        return self.backbone.resolution

    @property
    def blocks(self) -> tuple[Block, ...]:
        return self.backbone.blocks

    @property
    def stem_ch(self) -> int:
        return self.backbone.stem_ch

    @property
    def stem_act(self):
        return self.backbone.stem_act

    @property
    def features_ch(self) -> int:
        return self.backbone.blocks[-1].out_ch

    def feature_size(self) -> int:
        """Side of the backbone output (SAME padding: ceil at each stride)."""
        return self.backbone.spatial_sizes()[-1]

    def param_layers(self) -> list[ParamLayer]:
        """Weight layers in graph order: the backbone's (stem, blocks), then the head's."""
        layers = [p for p in self.backbone.param_layers() if not p.name.startswith("head.")]
        dil = {f"blocks.{b.index}.dw": d for b, d in zip(self.blocks, self.dilations)}
        layers = [replace(p, dilation=dil.get(p.name, 1)) for p in layers]
        c, a = self.features_ch, self.aspp_ch
        layers += [
            ParamLayer("aspp.pool.conv", "conv", c, a),
            ParamLayer("aspp.conv", "conv", c, a),
            ParamLayer("aspp.project", "conv", 2 * a, a),
            ParamLayer("head.logits", "conv", a, self.classes),
        ]
        return layers

    def layer_activations(self) -> dict[str, str]:
        """Kind of nonlinearity after each weight layer (the importer's structure check)."""
        acts = {"stem.conv": "relu"}
        for b in self.blocks:
            p = f"blocks.{b.index}"
            acts.update({f"{p}.expand": "relu", f"{p}.dw": "relu", f"{p}.project": "none"})
        acts.update({"aspp.pool.conv": "relu", "aspp.conv": "relu", "aspp.project": "relu", "head.logits": "none"})
        return acts

    def count_macs_params(self) -> tuple[int, int]:
        """MACs/params of the weight layers from the config alone (cross-checks the graph analysis)."""
        macs = params = 0
        size = self.resolution
        feat = self.feature_size()
        for layer in self.param_layers():
            if layer.name == "aspp.pool.conv":
                out = 1
            elif layer.name.startswith(("aspp.", "head.")):
                out = feat
            else:
                size = math.ceil(size / layer.stride)
                out = size
            macs += out * out * layer.cout * layer.fan_in
            params += math.prod(layer.weight_shape) + layer.cout
        return macs, params


def resolve(name: str) -> bool:
    """Whether `name` names DeepLabV3 (its own name or an alias)."""
    key = name.strip().lower()
    return key == ARCH or key in ALIASES


def decode_deeplab(
    width: float = 1.0,
    resolution: int = DEFAULT_RESOLUTION,
    output_stride: int = DEFAULT_OUTPUT_STRIDE,
    classes: int = PASCAL_CLASSES,
    postprocess: str = "graph",
) -> DeepLabConfig:
    """DeepLabV3-MobileNetV2 at `width`, `resolution` and `output_stride` with `classes` logits."""
    width = validate_width(width)
    resolution = validate_resolution(resolution)
    if int(output_stride) not in OUTPUT_STRIDES:
        raise BadInput(f"output_stride must be one of {', '.join(map(str, OUTPUT_STRIDES))}, got {output_stride}")
    if not 1 <= int(classes) <= 1000:
        raise BadInput(f"classes must be between 1 and 1000 for segmentation, got {classes}")
    if postprocess not in POSTPROCESS:
        raise BadInput(f"postprocess must be {' or '.join(POSTPROCESS)}, got {postprocess!r}")
    divisor = 8 if width == 1.0 else 1  # DeepLab's rule for its MobileNetV2 feature extractor
    stem = make_divisible(V2_STEM * width, divisor, min_value=8)
    blocks, dilations = [], []
    cin = stem
    current, rate = 2, 1  # the stem has stride 2
    for row in V2_ROWS:
        out = make_divisible(row.c * width, divisor, min_value=8)
        for j in range(row.n):
            exp = cin if row.t == 1 else make_divisible(cin * row.t, divisor)
            stride, dilation = (row.s if j == 0 else 1), 1
            if current >= int(output_stride):  # past the output stride: dilate instead of striding
                stride, dilation, rate = 1, rate, rate * stride
            else:
                current *= stride
            blocks.append(Block(len(blocks), cin, exp, out, 3, stride, "relu6"))
            dilations.append(dilation)
            cin = out
    backbone = ArchConfig(arch="v2", width=width, resolution=resolution, classes=int(classes), stem_ch=stem,
                          stem_act="relu6", blocks=tuple(blocks), last_ch=None, last_act=None, head_ch=None,
                          head_act=None)
    return DeepLabConfig(backbone, tuple(dilations), int(output_stride), int(classes), postprocess=postprocess)
