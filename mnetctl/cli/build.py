"""`mnetctl build`: one MobileNet variant -> an ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import BadInput
from ._app import app, console


@app.command()
def build(
    arch: Annotated[str, typer.Argument(help="v1, v2, v3-large or v3-small; detectors: ssd-v1 (COCO checkpoint), ssdlite-v2, ssdlite-v3-large, ssdlite-v3-small (from the spec); segmentation: deeplabv3-v2.", show_default=False)],
    width: Annotated[Optional[float], typer.Option("--width", "-w", help="Width multiplier (> 0) [default: 1.0; ssd-v1: 0.75, as its COCO checkpoint].", show_default=False)] = None,
    resolution: Annotated[Optional[int], typer.Option("--resolution", "-r", help="Input side in pixels (>= 32) [default: 224; ssd-v1: 300; deeplabv3-v2: 513 or the checkpoint's].", show_default=False)] = None,
    classes: Annotated[Optional[int], typer.Option("--classes", help="Classifier outputs [default: 1000; TF checkpoints: 1001].", show_default=False)] = None,
    weights: Annotated[str, typer.Option("--weights", help="random | pretrained | PATH to a .tflite checkpoint.")] = "random",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random (He) init.")] = 0,
    padding: Annotated[str, typer.Option("--padding", help="auto | same (TensorFlow SAME) | symmetric. auto: same for checkpoints.")] = "auto",
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (>= 13); the IR version is set to match.")] = 17,
    input_format: Annotated[str, typer.Option("--input-format", help="float-nchw | uint8-nhwc (preprocessing inside the graph).")] = "float-nchw",
    precision: Annotated[str, typer.Option("--precision", help="fp32 | int8: int8 keeps a quantized checkpoint's own integers and activation quantization (QDQ).")] = "fp32",
    int8_layout: Annotated[Optional[str], typer.Option("--int8-layout", help="With --precision int8: cpu (int8 weights with zero point 0, the layers int8 does not speed up kept float: fast on ONNX Runtime's CPU EP) | checkpoint (the file's integers on every layer, as TFLite runs them) [default: cpu; detectors: checkpoint, whose detections are LiteRT's].", show_default=False)] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Label file: one class name a line (or 'index name' lines), one per output or one fewer when output 0 is background; stored in the model for predict and eval.", show_default=False)] = None,
    crop_fraction: Annotated[Optional[float], typer.Option("--crop-fraction", help="Centre crop of the short side the model was trained with (1 = the whole image) [default: 0.875].", show_default=False)] = None,
    mean: Annotated[Optional[str], typer.Option("--mean", help="Input mean in pixel units, one value or R,G,B [default: from an integer checkpoint's input quantization, else 127.5 ([-1, 1] input)].", show_default=False)] = None,
    std: Annotated[Optional[str], typer.Option("--std", help="Input std in pixel units, one value or R,G,B (255 with --mean 0: [0, 1] input) [default: as --mean].", show_default=False)] = None,
    output_stride: Annotated[Optional[int], typer.Option("--output-stride", help="deeplabv3-v2: backbone output stride 8 | 16 [default: 16, or the checkpoint's].", show_default=False)] = None,
    postprocess: Annotated[str, typer.Option("--postprocess", help="Detectors: graph (box decoding + NonMaxSuppression in the model, TFLite's four outputs) | host (the model ends at box encodings and class scores; mnetctl decodes them, for EPs without NMS). deeplabv3-v2: graph (resize + ArgMax: a class map) | host (upsampled logits out).")] = "graph",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file [default: models/<arch>-<width>-<res>.onnx, .int8.onnx for int8].", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the output path.")] = False,
) -> None:
    """Build a MobileNet with the ONNX helper API (deploy form, readable node names, self-describing metadata)."""
    from ..analysis import analyze
    from ..builder import build_model, save_model
    from ..fsutil import check_writable
    from ..specs import default_filename, format_width, resolve_arch, validate_resolution, validate_width

    from ..heads import deeplab
    from ..heads.ssd import SSD_FAMILIES, resolve_ssd

    detector = resolve_ssd(arch)
    if detector is not None:
        name = detector
        int8_layout = int8_layout or "checkpoint"  # the checkpoint's integers: LiteRT's detections
        width = SSD_FAMILIES[name].default_width if width is None else width
        resolution = SSD_FAMILIES[name].default_resolution if resolution is None else resolution
        for flag, value in (("--crop-fraction", crop_fraction), ("--mean", mean), ("--std", std), ("--classes", classes),
                            ("--output-stride", output_stride)):
            if value is not None:
                raise BadInput(f"{flag} is not an option of detectors ({name} takes the whole image, resized, and "
                               "its checkpoint's normalisation)")
    else:
        name = deeplab.ARCH if deeplab.resolve(arch) else resolve_arch(arch)
        if postprocess != "graph" and name != deeplab.ARCH:
            raise BadInput(f"--postprocess is an option of detectors (ssd-v1) and deeplabv3-v2, not of {arch}")
        int8_layout = int8_layout or "cpu"
        width = 1.0 if width is None else width
    validate_width(width)
    if resolution is None and name != deeplab.ARCH:
        from ..specs import FAMILIES

        resolution = FAMILIES[name].default_resolution
    if resolution is not None:
        validate_resolution(resolution)
    if weights not in ("random", "pretrained"):
        wpath = Path(weights)
        if not wpath.is_file():
            raise BadInput(f"--weights {weights}: no such checkpoint file", "use random, pretrained or a path to a .tflite file")
    from ..weights.registry import pretrained_dir

    def target(res: int) -> Path:
        out = output or Path("models") / default_filename(name, width, res)
        if output is None and precision == "int8":  # beside the float build, named like `mnetctl quantize` output
            out = out.with_name(out.stem + ".int8.onnx")
        # the checkpoint read (pretrained ones in the shipped folder) is never overwritten
        check_writable(out, inputs=(pretrained_dir() if weights == "pretrained" else None if weights == "random" else Path(weights),
                                    *(() if labels is None else (labels,))))
        return out

    out = target(resolution) if resolution is not None or output is not None or name != deeplab.ARCH else None
    if detector is not None:
        from ..builder import build_ssd_model

        model = build_ssd_model(name, width, resolution, None, weights, seed, padding, opset, input_format, precision,
                                int8_layout, labels, postprocess=postprocess)
    else:
        model = build_model(name, width, resolution, classes, weights, seed, padding, opset, input_format, precision=precision,
                            int8_layout=int8_layout, labels=labels, crop_fraction=crop_fraction,
                            mean=_numbers("--mean", mean), std=_numbers("--std", std), output_stride=output_stride,
                            postprocess=postprocess)
    from ..meta import read_meta

    resolution = read_meta(model).resolution
    out = out or target(resolution)  # a checkpoint's own input size names the file
    save_model(model, out)
    if quiet:
        console.print(str(out))
        return
    stats = analyze(model)
    if detector is not None:
        meta = read_meta(model)
        console.print(
            f"[green]wrote[/] {out}  [dim]{name} width {format_width(width)} res {resolution} classes {meta.classes}"
            f" | {stats.macs / 1e6:.1f} M MACs, {stats.params / 1e6:.3f} M params | postprocess {postprocess}"
            f" | opset {opset} IR {model.ir_version} | weights {weights}"
            f"{f' | int8 (checkpoint quantization, {int8_layout} layout)' if precision == 'int8' else ''}[/]"
        )
        return
    shape = stats.outputs[0]['shape']
    classes_out = read_meta(model).classes if name == deeplab.ARCH else shape[-1]
    console.print(
        f"[green]wrote[/] {out}  [dim]{name} width {format_width(width)} res {resolution} classes {classes_out}"
        f" | {stats.macs / 1e6:.1f} M MACs, {stats.params / 1e6:.3f} M params | opset {opset} IR {model.ir_version}"
        f" | weights {weights}{f' | labels {labels}' if labels is not None else ''}{f' | int8 (checkpoint quantization, {int8_layout} layout)' if precision == 'int8' else ''}[/]"
    )


def _numbers(flag: str, text: Optional[str]) -> Optional[list[float]]:
    """'0' or '123.7,116.3,103.5' -> floats (the builder checks the values)."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInput(f"{flag} {text}: not a number or R,G,B numbers") from None
