"""SSD detectors on MobileNet backbones, as data: feature taps, extra feature layers, box predictors, anchors.

Liu et al. 2016 ("SSD") with the MobileNet feature extractor of the TensorFlow Object Detection API
(`ssd_mobilenet_v1_feature_extractor`): two backbone taps (V1: the outputs of Conv2d_11_pointwise and
Conv2d_13_pointwise, our `blocks.10` and `blocks.12`), then four extra feature maps, each a 1x1 conv to half
the depth followed by a 3x3 stride-2 conv (ReLU6 after both). Depths: max(int(depth * width), 16), the 1x1
one from depth / 2, as the API's `depth_fn`. Every feature map gets a box predictor: a 1x1 conv to
4 x anchors box encodings and one to classes x anchors class logits (class 0 is background), sigmoid scores.

SSDLite (Sandler et al. 2018, "MobileNetV2", section 6.2; Howard et al. 2019, "MobileNetV3", section 6.2) replaces
every regular conv of the extra layers and predictors by a depthwise-separable one (3x3 depthwise + ReLU6, 1x1
conv); its first tap is the expansion layer of the first block at output stride 16 (V2: `blocks.13`, "layer 15";
V3-Large: `blocks.12`, the 13th bottleneck; V3-Small: `blocks.8`, the 9th), its second the last 1x1 conv before
pooling (`head.conv`). These are built from the spec with random weights (no checkpoint ships); the papers'
reduced-tail V3 variants are not modelled.

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
    # backbone tensors that feed predictors: "blocks.N" (a block's output), "blocks.N.expand" (its expansion
    # layer's output), "head.conv" (the last 1x1 conv before pooling); the last one is where the extra layers start
    taps: tuple[str, ...]
    extra_depths: tuple[int, ...]  # the extra feature maps' depths at width 1
    default_width: float
    default_resolution: int = 300
    classes: int = 91  # COCO: 90 ids + background
    min_depth: int = 16
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    coder: BoxCoder = field(default_factory=BoxCoder)
    nms: NMSSpec = field(default_factory=NMSSpec)
    lite: bool = False  # SSDLite: depthwise-separable extra layers and predictors
    aliases: tuple[str, ...] = ()


# ssd_mobilenet_v1_coco: feature_map_layout from_layer [Conv2d_11_pointwise, Conv2d_13_pointwise, '', '', '', ''],
# layer_depth [-1, -1, 512, 256, 256, 128]. The shipped COCO checkpoint has depth multiplier 0.75 (stem 24
# channels, last 768), hence the default width.
SSD_FAMILIES: dict[str, SSDFamily] = {
    f.name: f
    for f in (
        SSDFamily("ssd-v1", "SSD MobileNet V1", "Liu et al. 2016; Huang et al. 2017 (TF Object Detection API)",
                  "v1", ("blocks.10", "blocks.12"), (512, 256, 256, 128), default_width=0.75,
                  aliases=("ssd_mobilenet_v1", "ssd-mobilenet-v1")),
        # SSDLite as in the papers' COCO tables (320 x 320 input); feature_map_layout as the API's
        # ssd_mobilenet_v2 / ssd_mobilenet_v3 feature extractors ('layer_15/expansion_output', 'layer_19', ...)
        SSDFamily("ssdlite-v2", "SSDLite MobileNet V2", "Sandler et al. 2018, section 6.2", "v2",
                  ("blocks.13.expand", "head.conv"), (512, 256, 256, 128), default_width=1.0, default_resolution=320,
                  lite=True, aliases=("ssdlite_mobilenet_v2",)),
        SSDFamily("ssdlite-v3-large", "SSDLite MobileNet V3-Large", "Howard et al. 2019, section 6.2", "v3-large",
                  ("blocks.12.expand", "head.conv"), (512, 256, 256, 128), default_width=1.0, default_resolution=320,
                  lite=True, aliases=("ssdlite_mobilenet_v3_large",)),
        SSDFamily("ssdlite-v3-small", "SSDLite MobileNet V3-Small", "Howard et al. 2019, section 6.2", "v3-small",
                  ("blocks.8.expand", "head.conv"), (512, 256, 256, 128), default_width=1.0, default_resolution=320,
                  lite=True, aliases=("ssdlite_mobilenet_v3_small",)),
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
    source: str  # a tap ("blocks.10", "blocks.13.expand", "head.conv") or the extra layer ("extras.0.conv") it comes from
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
    # per extra map: (1x1 reduce, 3x3 stride-2 conv), SSDLite: (1x1 reduce, 3x3 stride-2 depthwise, 1x1 conv)
    extras: tuple[tuple[ParamLayer, ...], ...]
    maps: tuple[FeatureMap, ...]
    anchor_spec: AnchorSpec
    coder: BoxCoder
    nms: NMSSpec
    lite: bool = False

    @property
    def num_anchors(self) -> int:
        return sum(m.size * m.size * m.anchors for m in self.maps)

    def anchors(self) -> np.ndarray:
        return self.anchor_spec.generate([m.size for m in self.maps])

    @property
    def uses_head_conv(self) -> bool:
        return any(m.source == "head.conv" for m in self.maps)

    def backbone_layers(self) -> list[ParamLayer]:
        """The backbone's weight layers up to the last tap (no pooling head; the last 1x1 conv when tapped)."""
        keep = ("head.conv",) if self.uses_head_conv else ()
        return [layer for layer in self.backbone.param_layers() if not layer.name.startswith("head.") or layer.name in keep]

    def predictor_layers(self) -> list[ParamLayer]:
        out = []
        for i, m in enumerate(self.maps):
            for part, depth in (("box", 4), ("cls", self.classes)):
                if self.lite:
                    out.append(ParamLayer(f"heads.{i}.{part}.dw", "dw", m.channels, m.channels, 3, 1))
                out.append(ParamLayer(f"heads.{i}.{part}", "conv", m.channels, depth * m.anchors))
        return out

    def param_layers(self) -> list[ParamLayer]:
        """Weight layers in checkpoint order: backbone, extra layers, then box/class predictor per map."""
        extras = [layer for pair in self.extras for layer in pair]
        return self.backbone_layers() + extras + self.predictor_layers()

    def activations(self) -> dict[str, str | None]:
        """The kind of nonlinearity after each weight layer (the checkpoint import checks it; None: not checked)."""
        family = {"relu": "relu", "relu6": "relu", "hswish": "hswish", None: "none"}
        b = self.backbone
        acts: dict[str, str | None] = {"stem.conv": family[b.stem_act], "head.conv": family[b.last_act]}
        for blk in b.blocks:
            p = f"blocks.{blk.index}"
            acts.update({f"{p}.expand": family[blk.act], f"{p}.dw": family[blk.act] if blk.dw_act else "none",
                         f"{p}.se.reduce": "relu", f"{p}.se.expand": None,
                         f"{p}.project": family[blk.act] if blk.project_act else "none"})
        for layers in self.extras:
            for layer in layers:
                acts[layer.name] = "relu"
        for layer in self.predictor_layers():
            acts[layer.name] = "relu" if layer.kind == "dw" else "none"
        return acts

    def output_sizes(self) -> dict[str, int]:
        """Output side length of every weight layer."""
        sizes = self.backbone.spatial_sizes()
        out = {"stem.conv": sizes[0]}
        for b, size_in, size in zip(self.backbone.blocks, sizes, sizes[1:]):
            p = f"blocks.{b.index}"
            out.update({f"{p}.expand": size_in, f"{p}.dw": size, f"{p}.se.reduce": 1, f"{p}.se.expand": 1,
                        f"{p}.project": size})
        size = sizes[-1]
        out["head.conv"] = size
        for layers in self.extras:
            for layer in layers:
                size = math.ceil(size / layer.stride)
                out[layer.name] = size
        for i, m in enumerate(self.maps):
            for name in (f"heads.{i}.box", f"heads.{i}.cls", f"heads.{i}.box.dw", f"heads.{i}.cls.dw"):
                out[name] = m.size
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
        channels, size = _tap(backbone, sizes, tap)
        maps.append(FeatureMap(tap, channels, size, len(specs[len(maps)])))
    last = "head.conv" if backbone.last_ch else f"blocks.{len(backbone.blocks) - 1}"
    if fam.taps[-1] != last:
        raise BadInput(f"{name}: the extra layers must follow the backbone's last layer ({last})")

    def depth(d: float) -> int:
        return max(int(d * width), fam.min_depth)

    extras = []
    cin, size = maps[-1].channels, maps[-1].size
    for i, d in enumerate(fam.extra_depths):
        mid, out = depth(d / 2), depth(d)
        reduce = ParamLayer(f"extras.{i}.reduce", "conv", cin, mid, 1, 1)
        if fam.lite:
            layers = (reduce, ParamLayer(f"extras.{i}.dw", "dw", mid, mid, 3, 2), ParamLayer(f"extras.{i}.conv", "conv", mid, out))
        else:
            layers = (reduce, ParamLayer(f"extras.{i}.conv", "conv", mid, out, 3, 2))
        extras.append(layers)
        size = math.ceil(size / 2)
        maps.append(FeatureMap(f"extras.{i}.conv", out, size, len(specs[len(maps)])))
        cin = out
    return SSDConfig(name, width, resolution, classes, backbone, tuple(extras), tuple(maps), fam.anchors, fam.coder,
                     fam.nms, fam.lite)


def _tap(backbone: ArchConfig, sizes: list[int], tap: str) -> tuple[int, int]:
    """(channels, side) of a backbone tap."""
    parts = tap.split(".")
    if tap == "head.conv" and backbone.last_ch:
        return backbone.last_ch, sizes[-1]
    if parts[0] == "blocks" and len(parts) in (2, 3) and parts[1].isdigit() and int(parts[1]) < len(backbone.blocks):
        i = int(parts[1])
        blk = backbone.blocks[i]
        if len(parts) == 2:
            return blk.out_ch, sizes[i + 1]
        if parts[2] == "expand" and blk.has_expand:
            return blk.exp_ch, sizes[i]  # before the block's depthwise stride
    raise BadInput(f"{backbone.arch} has no tap {tap!r} (blocks.N, blocks.N.expand or head.conv)")


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
