"""SSD detectors on MobileNet backbones, as data: feature taps, extra feature layers, box predictors, anchors.

Liu et al. 2016 ("SSD") with the MobileNet feature extractor of the TensorFlow Object Detection API
(`ssd_mobilenet_v1_feature_extractor`): two backbone taps (V1: the outputs of Conv2d_11_pointwise and
Conv2d_13_pointwise, our `blocks.10` and `blocks.12`), then four extra feature maps, each a 1x1 conv to half
the depth followed by a 3x3 stride-2 conv (ReLU6 after both). Depths: max(int(depth * width), 16), the 1x1
one from depth / 2, as the API's `depth_fn`. Every feature map gets a box predictor: a 1x1 conv to
4 x anchors box encodings and one to classes x anchors class logits (class 0 is background), sigmoid scores.

Anchors: the API's multiple-grid anchor generator (`create_ssd_anchors`): scales linear from min_scale to
max_scale over the feature maps; aspect ratios (1, 2, 1/2, 3, 1/3) plus one box of the geometric mean of
this scale and the next at ratio 1; the lowest map has the reduced set (0.1, 1), (scale, 2), (scale, 1/2).
Centres at (i + 0.5) / grid; boxes [y_centre, x_centre, height, width], normalised, ordered
(row, column, anchor), as the predictors' NHWC outputs reshape. Box coder scales y/x 10, h/w 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import BadInput
from ..specs import ArchConfig, ParamLayer, decode, validate_resolution, validate_width


@dataclass(frozen=True)
class AnchorSpec:
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_ratio: float = 1.0  # the extra box between this scale and the next (0: none)
    reduce_lowest: bool = True  # the lowest map: (0.1, 1), (scale, 2), (scale, 1/2)

    def box_specs(self, maps: int) -> list[list[tuple[float, float]]]:
        """(scale, aspect ratio) of each anchor, per feature map."""
        scales = [self.min_scale + (self.max_scale - self.min_scale) * i / (maps - 1) for i in range(maps)] + [1.0]
        out = []
        for i in range(maps):
            scale, nxt = scales[i], scales[i + 1]
            if i == 0 and self.reduce_lowest:
                out.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
                continue
            specs = [(scale, ar) for ar in self.aspect_ratios]
            if self.interpolated_ratio > 0:
                specs.append((math.sqrt(scale * nxt), self.interpolated_ratio))
            out.append(specs)
        return out

    def generate(self, grids: list[int]) -> np.ndarray:
        """All anchors [N, 4] (y_centre, x_centre, height, width) for square feature maps of these sides."""
        rows = []
        for grid, specs in zip(grids, self.box_specs(len(grids))):
            hw = np.array([(s / math.sqrt(ar), s * math.sqrt(ar)) for s, ar in specs], np.float64)
            centres = (np.arange(grid, dtype=np.float64) + 0.5) / grid
            cy, cx = np.meshgrid(centres, centres, indexing="ij")
            n = grid * grid * len(specs)
            block = np.empty((grid, grid, len(specs), 4))
            block[..., 0] = cy[:, :, None]
            block[..., 1] = cx[:, :, None]
            block[..., 2:] = hw[None, None]
            rows.append(block.reshape(n, 4))
        return np.concatenate(rows).astype(np.float32)


@dataclass(frozen=True)
class BoxCoder:
    """Faster R-CNN box coding: t_y = (y - y_a) / h_a * y_scale, t_h = log(h / h_a) * h_scale, ..."""

    y_scale: float = 10.0
    x_scale: float = 10.0
    h_scale: float = 5.0
    w_scale: float = 5.0

    @property
    def scales(self) -> tuple[float, float, float, float]:
        return (self.y_scale, self.x_scale, self.h_scale, self.w_scale)


@dataclass(frozen=True)
class NMSSpec:
    """Class-agnostic NMS over each anchor's best class (TFLite_Detection_PostProcess, fast mode)."""

    iou: float = 0.6
    score_threshold: float = 1e-8
    max_detections: int = 10


@dataclass(frozen=True)
class SSDFamily:
    name: str
    title: str
    paper: str
    backbone: str  # a family of specs.FAMILIES
    taps: tuple[int, ...]  # backbone block indices whose outputs feed predictors
    extra_depths: tuple[int, ...]  # the extra feature maps' depths at width 1
    default_width: float
    default_resolution: int = 300
    classes: int = 91  # COCO: 90 ids + background
    min_depth: int = 16
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    coder: BoxCoder = field(default_factory=BoxCoder)
    nms: NMSSpec = field(default_factory=NMSSpec)
    aliases: tuple[str, ...] = ()


# ssd_mobilenet_v1_coco: feature_map_layout from_layer [Conv2d_11_pointwise, Conv2d_13_pointwise, '', '', '', ''],
# layer_depth [-1, -1, 512, 256, 256, 128]. The shipped COCO checkpoint has depth multiplier 0.75 (stem 24
# channels, last 768), hence the default width.
SSD_FAMILIES: dict[str, SSDFamily] = {
    f.name: f
    for f in (
        SSDFamily("ssd-v1", "SSD MobileNet V1", "Liu et al. 2016; Huang et al. 2017 (TF Object Detection API)",
                  "v1", (10, 12), (512, 256, 256, 128), default_width=0.75, aliases=("ssd_mobilenet_v1", "ssd-mobilenet-v1")),
    )
}


def resolve_ssd(name: str) -> str | None:
    """The SSD family a name stands for, or None when it names none."""
    key = str(name).strip().lower()
    for fam in SSD_FAMILIES.values():
        if key == fam.name or key in fam.aliases:
            return fam.name
    return None


@dataclass(frozen=True)
class FeatureMap:
    source: str  # the node whose output it is
    channels: int
    size: int
    anchors: int  # boxes per location


@dataclass(frozen=True)
class SSDConfig:
    """A fully resolved SSD: backbone config, extra layers, predictors, anchors."""

    arch: str
    width: float
    resolution: int
    classes: int
    backbone: ArchConfig
    extras: tuple[tuple[ParamLayer, ParamLayer], ...]  # (1x1 reduce, 3x3 stride-2) per extra map
    maps: tuple[FeatureMap, ...]
    anchor_spec: AnchorSpec
    coder: BoxCoder
    nms: NMSSpec

    @property
    def num_anchors(self) -> int:
        return sum(m.size * m.size * m.anchors for m in self.maps)

    def anchors(self) -> np.ndarray:
        return self.anchor_spec.generate([m.size for m in self.maps])

    def backbone_layers(self) -> list[ParamLayer]:
        return [layer for layer in self.backbone.param_layers() if not layer.name.startswith("head.")]

    def predictor_layers(self) -> list[ParamLayer]:
        out = []
        for i, m in enumerate(self.maps):
            out.append(ParamLayer(f"heads.{i}.box", "conv", m.channels, 4 * m.anchors))
            out.append(ParamLayer(f"heads.{i}.cls", "conv", m.channels, self.classes * m.anchors))
        return out

    def param_layers(self) -> list[ParamLayer]:
        """Weight layers in checkpoint order: backbone, extra layers, then box/class predictor per map."""
        extras = [layer for pair in self.extras for layer in pair]
        return self.backbone_layers() + extras + self.predictor_layers()

    def activations(self) -> dict[str, str | None]:
        """The kind of nonlinearity after each weight layer (the checkpoint import checks it)."""
        acts: dict[str, str | None] = {layer.name: "relu" for layer in self.backbone_layers()}
        for pair in self.extras:
            for layer in pair:
                acts[layer.name] = "relu"
        for layer in self.predictor_layers():
            acts[layer.name] = "none"
        return acts

    def output_sizes(self) -> dict[str, int]:
        """Output side length of every weight layer."""
        sizes = self.backbone.spatial_sizes()
        out = {"stem.conv": sizes[0]}
        for b, size in zip(self.backbone.blocks, sizes[1:]):
            p = f"blocks.{b.index}"
            for part in ("expand", "dw", "se.reduce", "se.expand", "project"):
                out[f"{p}.{part}"] = 1 if part.startswith("se.") else size
        size = sizes[-1]
        for reduce, conv in self.extras:
            out[reduce.name] = size
            size = math.ceil(size / conv.stride)
            out[conv.name] = size
        for i, m in enumerate(self.maps):
            out[f"heads.{i}.box"] = out[f"heads.{i}.cls"] = m.size
        return out

    def count_macs_params(self) -> tuple[int, int]:
        """MACs and parameters from the config alone (cross-checks graph analysis and the checkpoint)."""
        sizes = self.output_sizes()
        macs = params = 0
        for layer in self.param_layers():
            s = sizes[layer.name]
            macs += s * s * layer.cout * layer.fan_in
            params += math.prod(layer.weight_shape) + layer.cout
        return macs, params


def decode_ssd(arch: str, width: float | None = None, resolution: int | None = None, classes: int | None = None) -> SSDConfig:
    """Resolve an SSD name, width and resolution into a concrete config."""
    name = resolve_ssd(arch)
    if name is None:
        raise BadInput(f"unknown detector '{arch}'", f"choose one of: {', '.join(SSD_FAMILIES)}")
    fam = SSD_FAMILIES[name]
    width = validate_width(fam.default_width if width is None else width)
    resolution = validate_resolution(fam.default_resolution if resolution is None else resolution)
    classes = fam.classes if classes is None else int(classes)
    if classes < 2:
        raise BadInput(f"classes must be at least 2 (background and one class) for a detector, got {classes}")
    backbone = decode(fam.backbone, width, resolution, 1000)
    sizes = backbone.spatial_sizes()
    specs = fam.anchors.box_specs(len(fam.taps) + len(fam.extra_depths))
    maps: list[FeatureMap] = []
    for tap in fam.taps:
        blk = backbone.blocks[tap]
        maps.append(FeatureMap(f"blocks.{tap}", blk.out_ch, sizes[tap + 1], len(specs[len(maps)])))
    if fam.taps[-1] != len(backbone.blocks) - 1:
        raise BadInput(f"{name}: the extra layers must follow the last backbone block")

    def depth(d: float) -> int:
        return max(int(d * width), fam.min_depth)

    extras = []
    cin, size = maps[-1].channels, maps[-1].size
    for i, d in enumerate(fam.extra_depths):
        mid, out = depth(d / 2), depth(d)
        reduce = ParamLayer(f"extras.{i}.reduce", "conv", cin, mid, 1, 1)
        conv = ParamLayer(f"extras.{i}.conv", "conv", mid, out, 3, 2)
        extras.append((reduce, conv))
        size = math.ceil(size / 2)
        maps.append(FeatureMap(f"extras.{i}.conv", out, size, len(specs[len(maps)])))
        cin = out
    return SSDConfig(name, width, resolution, classes, backbone, tuple(extras), tuple(maps), fam.anchors, fam.coder, fam.nms)


# --------------------------------------------------------------------------------------------
# The post-processing a built model carries in its metadata (`mnetctl.detection`)
# --------------------------------------------------------------------------------------------

DETECTION_KEY = "detection"
BOX_ENCODINGS = "box_encodings"  # [1, anchors, 4]: t_y, t_x, t_h, t_w per anchor
CLASS_SCORES = "class_scores"  # [1, anchors, classes]: sigmoid scores, class 0 = background
DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")  # as TFLite's


@dataclass(frozen=True)
class Postprocess:
    """What decoding an SSD's outputs needs: where NMS runs, the box coder, NMS settings and the anchors."""

    where: str  # "graph" (NMS inside the model) or "host" (the model ends at box encodings / class scores)
    coder: BoxCoder
    nms: NMSSpec
    anchors: np.ndarray  # [N, 4] y, x, h, w (float32)


def detection_extra(cfg: SSDConfig, anchors: np.ndarray, where: str) -> dict[str, str]:
    """The metadata item for `ModelMeta.with_extra(**detection_extra(...))` (anchors as base64 float32)."""
    import base64
    import json

    a = np.ascontiguousarray(anchors, np.float32)
    return {DETECTION_KEY: json.dumps({
        "postprocess": where, "coder": list(cfg.coder.scales), "iou": cfg.nms.iou,
        "score_threshold": cfg.nms.score_threshold, "max_detections": cfg.nms.max_detections,
        "anchors": base64.b64encode(a.tobytes()).decode("ascii"), "num_anchors": int(a.shape[0]),
    }, sort_keys=True)}


def read_postprocess(extra: dict[str, str], where: str) -> Postprocess:
    """The `mnetctl.detection` metadata of a model; BadInput naming `where` when absent or malformed."""
    import base64
    import binascii
    import json

    text = extra.get(DETECTION_KEY)
    if text is None:
        raise BadInput(f"{where} is a detection model without mnetctl.detection metadata (anchors, box coder, NMS)",
                       "build it with `mnetctl build ssd-v1`")
    try:
        d = json.loads(text)
        anchors = np.frombuffer(base64.b64decode(d["anchors"], validate=True), np.float32).reshape(int(d["num_anchors"]), 4)
        coder = BoxCoder(*(float(v) for v in d["coder"]))
        nms = NMSSpec(float(d["iou"]), float(d["score_threshold"]), int(d["max_detections"]))
        post = str(d["postprocess"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise BadInput(f"{where}: malformed mnetctl.detection metadata ({type(exc).__name__})") from None
    if post not in ("graph", "host") or nms.max_detections < 1 or not np.isfinite(anchors).all():
        raise BadInput(f"{where}: malformed mnetctl.detection metadata (postprocess {post!r})")
    return Postprocess(post, coder, nms, anchors)
