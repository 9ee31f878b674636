"""Which released checkpoints ship with mnetctl (data only).

Checkpoints are resolution-agnostic: a checkpoint for (arch, width) fills a graph of any resolution.
Paths are relative to the `models/pretrained/` folder of the project (see `pretrained_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..resources import resource_dir


@dataclass(frozen=True)
class Checkpoint:
    arch: str
    width: float
    files: tuple[str, ...]  # one file, or feature extractor + classifier head, applied in order
    trained_resolution: int
    source: str
    license: str
    output_stride: int | None = None  # segmentation backbones: the stride of the features the head reads
    labels: str | None = None  # label file (relative to models/pretrained/) for models other than ImageNet's

    @property
    def name(self) -> str:
        return Path(self.files[0]).stem


PRETRAINED: tuple[Checkpoint, ...] = (
    Checkpoint("v1", 0.25, ("coral/mobilenet_v1_0.25_128_quant.tflite",), 128, "Coral test_data", "Apache-2.0"),
    Checkpoint("v1", 0.5, ("coral/mobilenet_v1_0.5_160_quant.tflite",), 160, "Coral test_data", "Apache-2.0"),
    Checkpoint("v1", 0.75, ("coral/mobilenet_v1_0.75_192_quant.tflite",), 192, "Coral test_data", "Apache-2.0"),
    Checkpoint(
        "v1", 1.0,
        ("coral/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite", "coral/mobilenet_quant_v1_224_head_layers.tflite"),
        224, "Coral test_data", "Apache-2.0",
    ),
    Checkpoint("v2", 1.0, ("coral/mobilenet_v2_1.0_224_quant.tflite",), 224, "Coral test_data", "Apache-2.0"),
    Checkpoint("v3-small", 1.0, ("atu/v3-small_224_1.0_uint8.tflite",), 224, "atu", "MIT"),
    Checkpoint(
        "mobilenet-edgetpu", 1.0, ("mlcommons-mobile/v0_7_tflite_mobilenet_edgetpu_224_1.0_uint8.tflite",),
        224, "MLCommons mobile_models (MLPerf Mobile v0.7)", "Apache-2.0",
    ),
)

# Detectors (mnetctl.heads.ssd): the checkpoint and its label file (one name per class, background left out).
@dataclass(frozen=True)
class DetectorCheckpoint:
    arch: str
    width: float
    file: str
    labels: str
    trained_resolution: int
    source: str
    license: str


DETECTORS: tuple[DetectorCheckpoint, ...] = (
    # SSD MobileNetV1 COCO (named 1.0 by its source; its layers have depth multiplier 0.75)
    DetectorCheckpoint("ssd-v1", 0.75, "tflite-support/coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite",
                       "tflite-support/coco_labelmap.txt", 300, "TFLite Support test data", "Apache-2.0"),
)


def find_detector(arch: str, width: float) -> DetectorCheckpoint | None:
    for ckpt in DETECTORS:
        if ckpt.arch == arch and abs(ckpt.width - float(width)) < 1e-9:
            return ckpt
    return None


# Segmentation checkpoints (heads.deeplab), apart from the ImageNet classifiers above.
SEGMENTATION: tuple[Checkpoint, ...] = (
    # DeepLabV3 + MobileNetV2 on Pascal VOC (21 classes). Coral's own label file carries a note after the 21
    # names, so the TFLite Support label map (the same classes in the same order) names them.
    Checkpoint("deeplabv3-v2", 1.0, ("coral/deeplabv3_mnv2_pascal_quant.tflite",), 513, "Coral test_data", "Apache-2.0",
               output_stride=16, labels="tflite-support/deeplab_labelmap.txt"),
    Checkpoint("deeplabv3-v2", 0.5, ("coral/deeplabv3_mnv2_dm05_pascal_quant.tflite",), 513, "Coral test_data",
               "Apache-2.0", output_stride=16, labels="tflite-support/deeplab_labelmap.txt"),
    Checkpoint("deeplabv3-v2", 0.5, ("tflite-support/deeplabv3.tflite",), 257, "TFLite Support test data", "Apache-2.0",
               output_stride=8, labels="tflite-support/deeplab_labelmap.txt"),  # float
)

# Further checkpoints of a supported architecture that ship with the project (usable as --weights PATH).
EXTRA_FILES: tuple[str, ...] = ("coral/tf2_mobilenet_v2_1.0_224_ptq.tflite",)


def pretrained_dir() -> Path:
    """The shipped `models/pretrained` (see mnetctl.resources); MNETCTL_PRETRAINED_DIR overrides it."""
    return resource_dir("pretrained")


def all_checkpoints() -> tuple[Checkpoint, ...]:
    """Every shipped checkpoint, classifiers first."""
    return PRETRAINED + SEGMENTATION


def find(arch: str, width: float, output_stride: int | None = None) -> Checkpoint | None:
    """The first shipped checkpoint for (arch, width) and, where given, that output stride."""
    for ckpt in all_checkpoints():
        if ckpt.arch == arch and abs(ckpt.width - float(width)) < 1e-9 \
                and (output_stride is None or ckpt.output_stride == output_stride):
            return ckpt
    return None


def widths_with_weights(arch: str) -> list[float]:
    return list(dict.fromkeys(c.width for c in all_checkpoints() if c.arch == arch))
