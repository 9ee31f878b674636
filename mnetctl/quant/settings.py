"""How a float model becomes int8: one typed settings object and the per-architecture defaults (data only).

Every default can be overridden per call; docs/quantization.md explains each choice and the figures behind it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

from ..errors import BadInput

Method = Literal["minmax", "entropy", "percentile"]
GridMode = Literal["channel", "exact", "off"]
Format = Literal["qdq", "qoperator"]
ActType = Literal["uint8", "int8"]

METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
FORMATS: dict[str, QuantFormat] = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
TYPES: dict[str, QuantType] = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}

CALIB_BATCH = 10  # images per calibration inference (the batches a moving average runs over)


@dataclass(frozen=True)
class QuantSettings:
    """Everything that decides how a float model becomes int8 (recorded in the output's metadata).

    per_channel: one scale per output channel for weights that lie on no checkpoint grid.
    weights: the weight type ("int8"; "uint8" for targets that want it).
    weight_grid: weights imported from an 8-bit checkpoint lie on its per-tensor grid (w = k * step):
      "channel": symmetric per-channel scales (zero point 0) that are multiples of the step: every
        channel whose levels fit in +-127 steps keeps its exact values (ORT's fast kernels);
      "exact": the step itself per tensor, with whatever zero point fits all levels: bit-exact,
        but a non-zero weight zero point sends ORT's CPU convolutions to slower kernels;
      "off": ignore the grid (ORT picks scales from the weights' range).
    keep_float: glob patterns over node names (e.g. "blocks.*.se.*") whose nodes stay in float.
    op_types: the operator types to quantize (None: all that ONNX Runtime can quantize).
    activation_symmetric: symmetric activation ranges (zero point 128 for uint8, 0 for int8).
    weight_symmetric: symmetric weight ranges (ORT's default for int8 weights).
    moving_average: MinMax ranges are the mean over calibration batches (CALIB_BATCH images each) of
      each batch's min/max, not the extremes over all images (ORT's `CalibMovingAverage`).
    percentile: the percentile kept by the "percentile" method.
    histogram_bins / entropy_bins: histogram resolution of "entropy"/"percentile", and the number of
      quantized bins the KL search of "entropy" compares against. ORT's own entropy defaults (128/128)
      leave the search a single candidate, the full range, so "entropy" would silently equal minmax;
      the search costs time in proportion to histogram_bins (ORT runs it in Python).
    reduce_range: 7-bit weights (for CPUs without VNNI that saturate int16 accumulation).
    float_max_channels: Conv layers with at most this many output channels stay float, with the nodes
      named after them (their activation): ONNX Runtime's int8 kernels lose to its float ones there
      (0: none).
    int8_storage: the weights of Conv/Gemm nodes kept in float are stored as int8 with per-channel
      scales (on a checkpoint grid: its own values) and turned back into float by constants ONNX
      Runtime folds at load (`mnetctl.quant.storage`): float kernels, int8 file size. Off: float weights.
    drop_zero_points: QDQ weight/bias DequantizeLinear nodes whose zero point is all zeros lose that input
      (ONNX's default is 0; ORT fuses them alike). Off: every DequantizeLinear keeps its zero point.
    """

    method: Method = "minmax"
    per_channel: bool = True
    fmt: Format = "qdq"
    activations: ActType = "uint8"
    weights: ActType = "int8"
    weight_grid: GridMode = "channel"
    keep_float: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    moving_average: bool = False
    percentile: float = 99.999
    histogram_bins: int | None = None  # None: 512 for entropy, 2048 for percentile
    entropy_bins: int = 128
    reduce_range: bool = False
    float_max_channels: int = 0
    int8_storage: bool = True
    drop_zero_points: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInput(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.fmt not in FORMATS:
            raise BadInput(f"fmt must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.activations not in TYPES:
            raise BadInput(f"activations must be uint8 or int8, got {self.activations!r}")
        if self.weights not in TYPES:
            raise BadInput(f"weights must be uint8 or int8, got {self.weights!r}")
        if self.weight_grid not in ("channel", "exact", "off"):
            raise BadInput(f"weight_grid must be channel, exact or off, got {self.weight_grid!r}")
        if isinstance(self.float_max_channels, bool) or not isinstance(self.float_max_channels, int) \
                or self.float_max_channels < 0:
            raise BadInput(f"float_max_channels must be a whole number >= 0, got {self.float_max_channels!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise BadInput(f"percentile must be in (50, 100], got {self.percentile}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["keep_float"] = list(self.keep_float)
        data["op_types"] = None if self.op_types is None else list(self.op_types)
        return data

    def extra_options(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The typed settings spelled as onnxruntime's `extra_options` (its keys live only here)."""
        opts: dict[str, Any] = {
            "ActivationSymmetric": self.activation_symmetric,
            "WeightSymmetric": self.weight_symmetric,
        }
        if overrides:
            opts["TensorQuantOverrides"] = overrides
        return opts

    def calibrator_options(self) -> dict[str, Any]:
        """Options of ORT's `create_calibrator` for this method."""
        if self.method == "minmax":
            return {"symmetric": self.activation_symmetric, "moving_average": self.moving_average}
        bins = self.histogram_bins or (512 if self.method == "entropy" else 2048)
        opts: dict[str, Any] = {"symmetric": self.activation_symmetric, "num_bins": int(bins)}
        if self.method == "entropy":
            opts["num_quantized_bins"] = int(self.entropy_bins)
        else:
            opts["percentile"] = float(self.percentile)
        return opts


GENERIC = QuantSettings()

# Per-architecture defaults, chosen from measurements on the shipped 200-image val sample and
# `scripts/bench_int8.py` / `scripts/int8_profile.py` (docs/quantization.md has the tables):
#  * every shipped checkpoint comes from an 8-bit TFLite model, so its weights lie on a per-tensor
#    grid. ORT's own per-tensor scales ignore it and drop V2 from 85.5% to 10% top-1 and V1 0.75 from
#    75.5% to 15.5%, so the grid is always kept, as zero-point-0 per-channel multiples of the grid step
#    (`weight_grid="channel"`): ORT's CPU convolutions have fast kernels for symmetric weights only
#    (the checkpoint's exact grid, with non-zero weight zero points, keeps V1 0.25 at 1.3x fp32 time);
#  * the stem (3 input channels) and Conv layers with <= 16 output channels stay float: ORT's int8
#    kernels for them are 1.3-2x slower than its fp32 NCHWc ones (V1 0.25 stem 134 vs 75 us);
#  * V1 0.25: the classifier (256 inputs) too: its int8 GEMV is no faster, and per-channel int8
#    parameters cost 13 bytes per class, which would leave the file under 3.5x smaller;
#  * V3: everything before the head stays float. ORT's CPU EP has no int8 hard-swish: each one runs as
#    DequantizeLinear + HardSigmoid + QuantizeLinear + QLinearMul, and its int8 depthwise kernels are
#    1.4-2.8x slower than fp32 ones at V3-Small's channel counts, so fully int8 V3-Small runs at 1.25x
#    fp32 time. The head (1x1 conv, hidden layer, classifier: 64% of the weights) is where int8 pays;
#    float layers keep int8-sized weights (`int8_storage`). MinMax averaged over batches;
#  * weights on no grid (trained float models, random init) get per-channel scales: per-tensor
#    scales cannot serve depthwise layers whose channel ranges differ by 100x.
_NARROW_FLOAT = 16
ARCH_DEFAULTS: dict[str, QuantSettings] = {
    "v1": QuantSettings(method="minmax", weight_grid="channel", keep_float=("stem.*",), float_max_channels=_NARROW_FLOAT),
    "v2": QuantSettings(method="minmax", weight_grid="channel", keep_float=("stem.*",), float_max_channels=_NARROW_FLOAT),
    "v3-small": QuantSettings(method="minmax", weight_grid="channel", moving_average=True, keep_float=("stem.*", "blocks.*")),
    "v3-large": QuantSettings(method="minmax", weight_grid="channel", moving_average=True, keep_float=("stem.*", "blocks.*")),
    # SSD MobileNetV1: as V1 (its backbone)
    "ssd-v1": QuantSettings(method="minmax", weight_grid="channel", keep_float=("stem.*",), float_max_channels=_NARROW_FLOAT),
    # DeepLabV3 on V2 (heads.deeplab): the V2 rule for its backbone; the head's 1x1 convs are 256 wide
    "deeplabv3-v2": QuantSettings(method="minmax", weight_grid="channel", keep_float=("stem.*",),
                                  float_max_channels=_NARROW_FLOAT),
}
# Changes for narrow models: (arch, widths up to, changed fields), applied in order.
WIDTH_DEFAULTS: tuple[tuple[str, float, dict[str, Any]], ...] = (
    ("v1", 0.25, {"keep_float": ("stem.*", "head.fc")}),
)

# Nodes that are never quantized: the in-graph input normalisation of uint8-input models, a detector's box
# decoding and NMS.
ALWAYS_FLOAT: tuple[str, ...] = ("preprocess.*", "postprocess.*")


# Changes for the runtime the int8 model is meant for (mnetctl.engines names): runtime -> arch -> changed fields,
# applied after the arch/width defaults, which are ONNX Runtime's (its int8 kernels lose to its float ones on
# narrow layers). Only measured architectures are listed; the others keep ONNX Runtime's defaults on every runtime.
# OpenVINO: scripts/runtimes_side_by_side.py and docs/runtimes.md (which of quantize's choices it fuses).
RUNTIME_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "onnxruntime": {},
    # V2 on OpenVINO's CPU plugin: everything int8. ORT's float stem (and the <= 16-channel projection, float unless
    # int8_storage) stays f32 in OpenVINO's compiled graph, with reorders around it; all-int8 ran 0.89-0.99x the
    # time of the ORT-oriented defaults there (3 runs, blocks of 40) at the same top-1 (85.5% vs 86.0%, 1 image).
    "openvino": {"v2": {"keep_float": (), "float_max_channels": 0}},
}


def default_settings(arch: str, width: float | None = None, runtime: str | None = None) -> QuantSettings:
    """The default settings for an architecture and width (generic ones for unknown/foreign models), and the
    target runtime's changes (`RUNTIME_DEFAULTS`; None: ONNX Runtime's)."""
    qs = ARCH_DEFAULTS.get(arch, GENERIC)
    for name, up_to, changes in WIDTH_DEFAULTS:
        if name == arch and width is not None and float(width) <= up_to:
            qs = replace(qs, **changes)
    if runtime is not None:
        if runtime not in RUNTIME_DEFAULTS:
            raise BadInput(f"runtime must be one of {', '.join(RUNTIME_DEFAULTS)} for quantize, got {runtime!r}",
                           "a LiteRT model comes from the int8 ONNX model through mnetctl export")
        qs = replace(qs, **RUNTIME_DEFAULTS[runtime].get(arch, {}))
    return qs


def resolve_settings(arch: str, width: float | None = None, runtime: str | None = None, **changes: Any) -> QuantSettings:
    """The defaults for `arch`/`width` (and the target `runtime`) with the given fields changed (a None value keeps
    the default)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = set(changes) - set(QuantSettings.__dataclass_fields__)
    if unknown:
        raise BadInput(f"unknown quantization setting(s): {', '.join(sorted(unknown))}")
    for key in ("keep_float", "op_types"):
        if isinstance(changes.get(key), (list, tuple)):
            changes[key] = tuple(changes[key])
    return replace(default_settings(arch, width, runtime), **changes)
