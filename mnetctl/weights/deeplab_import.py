"""Map a DeepLabV3-MobileNetV2 TFLite checkpoint onto `heads.deeplab.DeepLabConfig`.

The backbone's weight layers come first in the file, in graph order, and map by order as a classifier's do.
The four head layers are found by what they read, since converters write the two ASPP branches in either
order (the Coral files: 1x1 branch first; TFLite Support's: image pooling first): the image-pooling conv
reads a 1x1 tensor, the 1x1 branch the backbone features, the projection the concatenated 2 x 256 channels,
and the logits conv the projection's output. The output stride is the checkpoint's (2 to the number of
stride-2 layers); every layer is then checked as `tflite_import.map_layers` checks a classifier's
(shape, stride, dilation, padding, activation), and any difference is an error naming the layer.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInput
from ..heads.deeplab import ARCH, HEAD_LAYERS, DeepLabConfig, decode_deeplab
from ..meta import ModelMeta
from . import registry
from .tflite_import import SHA_CHARS, ImportedCheckpoint, _preprocessing, map_layers, resolve_files
from .tflite_reader import TFLiteCheckpoint, TFLiteLayer, read_tflite


def checkpoint_output_stride(layers: list[TFLiteLayer]) -> int:
    """The output stride a checkpoint's backbone runs at: 2 ** (its stride-2 layers)."""
    return 2 ** sum(1 for layer in layers if layer.stride == 2)


def order_layers(cfg: DeepLabConfig, ckpt: TFLiteCheckpoint) -> list[TFLiteLayer]:
    """The checkpoint's weight layers in the order of `cfg.param_layers()` (head layers found by role)."""
    layers = list(ckpt.layers)
    n_head = len(HEAD_LAYERS)
    n_backbone = len(cfg.param_layers()) - n_head
    if len(layers) != n_backbone + n_head:
        raise BadInput(
            f"checkpoint {ckpt.path.name} has {len(layers)} weight layers but {ARCH} width {cfg.width:g} expects "
            f"{n_backbone + n_head} ({n_backbone} backbone + {n_head} head)",
            "is it a DeepLabV3 checkpoint of another backbone width? (--width)",
        )
    backbone, head = layers[:n_backbone], layers[n_backbone:]

    def spatial(layer: TFLiteLayer) -> tuple[int, ...]:
        return tuple(layer.in_shape[1:3]) if len(layer.in_shape) == 4 else ()

    def cin(layer: TFLiteLayer) -> int:
        return int(layer.in_shape[-1]) if layer.in_shape else -1

    def one(role: str, found: list[TFLiteLayer]) -> TFLiteLayer:
        if len(found) != 1:
            why = dict(HEAD_LAYERS)[role]
            raise BadInput(f"checkpoint {ckpt.path.name}: {len(found)} head layers fit {role} (the layer that {why}); "
                           f"mnetctl expects exactly one", "is it a DeepLabV3 checkpoint with the image-pooling + 1x1 ASPP?")
        return found[0]

    pool = one("aspp.pool.conv", [h for h in head if spatial(h) == (1, 1)])
    rest = [h for h in head if h is not pool]
    project = one("aspp.project", [h for h in rest if cin(h) == 2 * cfg.aspp_ch])
    branch = one("aspp.conv", [h for h in rest if h is not project and cin(h) == cfg.features_ch])
    graph = ckpt.graph
    project_out = graph.ops[project.op_index].outputs[0] if graph is not None else None
    logits = one("head.logits", [h for h in rest if h not in (project, branch)
                                 and (graph is None or graph.ops[h.op_index].inputs[0] == project_out)])
    return backbone + [pool, branch, project, logits]


def load_deeplab(
    weights: str,
    width: float,
    resolution: int | None = None,
    output_stride: int | None = None,
    classes: int | None = None,
    postprocess: str = "graph",
) -> ImportedCheckpoint:
    """A DeepLabV3 checkpoint ("pretrained" or a path) mapped onto the config it implies, with its metadata.

    resolution, output_stride, classes: None takes the checkpoint's; a value that differs from what the
    checkpoint was built with is refused for output_stride and classes (the weights would not fit)."""
    paths, source = resolve_files(ARCH, width, weights, output_stride)
    if len(paths) != 1:
        raise BadInput(f"a {ARCH} checkpoint is one .tflite file, got {len(paths)}")
    ckpt = read_tflite(paths[0])
    found_stride = checkpoint_output_stride(list(ckpt.layers))
    if output_stride is not None and int(output_stride) != found_stride:
        raise BadInput(f"checkpoint {paths[0].name} runs at output stride {found_stride}, not {output_stride}",
                       f"build it with --output-stride {found_stride}")
    found_classes = int(ckpt.layers[-1].weight.shape[0]) if ckpt.layers else 0
    if classes is not None and int(classes) != found_classes:
        raise BadInput(f"classes {classes} does not match the checkpoint's {found_classes} classes")
    trained = int(ckpt.input_shape[1]) if len(ckpt.input_shape) == 4 else None
    cfg = decode_deeplab(width, resolution or trained or 513, found_stride, found_classes, postprocess)
    ordered = order_layers(cfg, ckpt)
    params = map_layers(cfg, ordered, paths[0].name)
    mean, std = _preprocessing(ckpt)
    meta = ModelMeta(
        task="segmentation",
        classes=cfg.classes,
        label_offset=0,
        mean=mean,
        std=std,
        color_order="RGB",
        resize="full",  # the whole image, resized to the input size; the class map is resized back
        crop_fraction=1.0,
        interpolation="bilinear",
        weights=source,
        seed=None,
    ).with_extra(
        checkpoint_sha256=ckpt.sha256[:SHA_CHARS],
        checkpoint_resolution=trained or 0,
        checkpoint_dtype=",".join(sorted({layer.dtype for layer in ordered})),
    )
    labels = None
    if weights == "pretrained":
        entry = registry.find(ARCH, width, output_stride)
        if entry is not None and entry.labels:
            labels = Path(registry.pretrained_dir()) / entry.labels
    return ImportedCheckpoint(cfg=cfg, files=(ckpt,), params=params, meta=meta, source=paths[0].name,
                              order=tuple((0, layer) for layer in ordered), labels=labels)
