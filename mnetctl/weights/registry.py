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

# Further checkpoints of a supported architecture that ship with the project (usable as --weights PATH).
EXTRA_FILES: tuple[str, ...] = ("coral/tf2_mobilenet_v2_1.0_224_ptq.tflite",)


def pretrained_dir() -> Path:
    """The shipped `models/pretrained` (see mnetctl.resources); MNETCTL_PRETRAINED_DIR overrides it."""
    return resource_dir("pretrained")


def find(arch: str, width: float) -> Checkpoint | None:
    for ckpt in PRETRAINED:
        if ckpt.arch == arch and abs(ckpt.width - float(width)) < 1e-9:
            return ckpt
    return None


def widths_with_weights(arch: str) -> list[float]:
    return [c.width for c in PRETRAINED if c.arch == arch]
