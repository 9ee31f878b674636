"""`mnetctl quantize`: static int8 with real calibration images, and a before/after report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ._app import JsonFlag, ModelArg, app, console, err_console, flag_names, print_json
from ._table import Col, print_table

_MB = 1024 * 1024
_FLAGS = {"rounds": "--bench-rounds"}  # quantize's own spellings of library parameters


@app.command()
def quantize(
    model: ModelArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file \\[default: <stem>.int8.onnx next to the input].", show_default=False)] = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration images: a folder, a CSV or an image \\[default: the shipped 100 calibration images].", show_default=False)] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="Calibration: minmax | entropy | percentile \\[default: per architecture].", show_default=False)] = None,
    per_channel: Annotated[Optional[bool], typer.Option("--per-channel/--per-tensor", help="Weight scales per output channel or per tensor \\[default: per architecture].", show_default=False)] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="qdq (QuantizeLinear/DequantizeLinear pairs) | qoperator (QLinearConv, ...) \\[default: qdq].", show_default=False)] = None,
    activations: Annotated[Optional[str], typer.Option("--activations", help="Activation type: uint8 | int8 \\[default: uint8].", show_default=False)] = None,
    samples: Annotated[int, typer.Option("--samples", "-s", help="Calibrate on the first N images.")] = 100,
    keep_float: Annotated[Optional[list[str]], typer.Option("--keep-float", help="Keep nodes whose name matches this glob in float (repeatable), e.g. 'blocks.*.se.*'.", show_default=False)] = None,
    weight_grid: Annotated[Optional[str], typer.Option("--weight-grid", help="Weights imported from an 8-bit checkpoint: channel (per-channel multiples of its grid step, zero point 0) | exact (its own per-tensor grid) | off \\[default: channel].", show_default=False)] = None,
    moving_average: Annotated[Optional[bool], typer.Option("--moving-average/--no-moving-average", help="minmax: mean of per-batch (10 images) ranges instead of the extremes \\[default: per architecture].", show_default=False)] = None,
    float_max_channels: Annotated[Optional[int], typer.Option("--float-max-channels", help="Keep Conv layers with at most N output channels in float (0: none) \\[default: per architecture].", show_default=False)] = None,
    int8_storage: Annotated[Optional[bool], typer.Option("--int8-storage/--float-storage", help="Store the on-grid weights of float layers as int8 (folded back to float at load) \\[default: int8].", show_default=False)] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="Target runtime whose quantize defaults apply: onnxruntime | openvino \\[default: onnxruntime's].", show_default=False)] = None,
    reduce_range: Annotated[Optional[bool], typer.Option("--reduce-range/--full-range", help="7-bit weights, for x86 CPUs without VNNI \\[default: full range].", show_default=False)] = None,
    eval_data: Annotated[Optional[Path], typer.Option("--eval", help="Labelled images for the before/after report \\[default: the shipped val sample].", show_default=False)] = None,
    annotations: Annotated[Optional[Path], typer.Option("--annotations", help="Detectors: COCO instances JSON of the --eval images (mAP before/after) \\[default with the default images: data/coco-10/instances.json].", show_default=False)] = None,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Skip the before/after evaluation.")] = False,
    eval_limit: Annotated[Optional[int], typer.Option("--eval-limit", help="Evaluate on the first N images only.", show_default=False)] = None,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Fail (exit 1, nothing written) if top-1 drops by more than this many points.", show_default=False)] = None,
    no_bench: Annotated[bool, typer.Option("--no-bench", help="Skip timing float vs int8 on the device profile.")] = False,
    bench_rounds: Annotated[Optional[int], typer.Option("--bench-rounds", help="Interleaved rounds of 10 timed runs of each model \\[default: 30].", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", "-D", help="Shipped device profile to time on \\[default: host].", show_default=False)] = None,
    profile: Annotated[Optional[Path], typer.Option("--profile", help="Your own device profile TOML file to time on.", show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="Intra-op threads for the timing \\[default: the profile's, else onnxruntime's].", show_default=False)] = None,
    json_out: JsonFlag = False,
) -> None:
    """Static int8 quantization (onnxsim + ORT pre-processing + calibration on real images), with a before/after
    report and float vs int8 latency on the device profile (does int8 pay here?)."""
    from ..errors import BadInput
    from ..model import as_model
    from ..quant.pipeline import default_eval_data, quantize_model
    from ..quant.speed import DEFAULT_ROUNDS, SpeedOptions
    from ._progress import progress_bar

    if no_eval and (eval_data is not None or max_drop is not None):
        raise BadInput("--no-eval cannot be combined with --eval or --max-drop")
    timing = {"--bench-rounds": bench_rounds, "--device": device, "--profile": profile, "--threads": threads}
    if no_bench and any(v is not None for v in timing.values()):
        raise BadInput(f"--no-bench cannot be combined with {', '.join(k for k, v in timing.items() if v is not None)}")
    if device and profile:
        raise BadInput("give --device NAME or --profile PATH, not both")
    speed = None if no_bench else SpeedOptions(
        device=device, profile=profile, threads=threads, rounds=DEFAULT_ROUNDS if bench_rounds is None else bench_rounds)
    settings = {"method": method, "per_channel": per_channel, "fmt": fmt, "activations": activations,
                "keep_float": keep_float, "weight_grid": weight_grid, "moving_average": moving_average,
                "reduce_range": reduce_range, "float_max_channels": float_max_channels,
                "int8_storage": int8_storage}  # None: the model's per-architecture default
    handle = as_model(model)  # opened once, for the default evaluation data and the quantization
    if not no_eval and eval_data is None:
        eval_data = default_eval_data(handle)
        if eval_data is None:
            err_console.print("[yellow]note:[/] the model has its own classes: the shipped ImageNet sample cannot "
                              "evaluate it; pass --eval DIR (its <class name>/ folders) for the before/after report")
    with flag_names(_FLAGS), progress_bar(not json_out) as on_progress:
        rep = quantize_model(
            handle, output, settings, calib=calib, samples=samples,
            eval_data=None if no_eval else eval_data,
            eval_limit=eval_limit, max_drop=max_drop, speed=speed, on_progress=on_progress, annotations=annotations,
            runtime=runtime,
        )
    if rep.calib_failed:
        err_console.print(f"[yellow]warning:[/] {rep.calib_failed} calibration image(s) could not be read and were skipped")
    if json_out:
        print_json(rep.as_dict())
        return
    _print_quant(rep)


def _print_quant(rep) -> None:
    s = rep.settings
    console.print(f"[green]wrote[/] {rep.output}")
    console.print(
        f"[dim]{rep.arch}: {s['fmt']} {s['method']}{' moving-average' if s['moving_average'] and s['method'] == 'minmax' else ''}, "
        f"{s['weights']} weights ({rep.weights_on_checkpoint_grid} on their checkpoint grid: {s['weight_grid']}; "
        f"others {'per-channel' if s['per_channel'] else 'per-tensor'}), {s['activations']} activations; "
        f"calibrated on {rep.calib_samples} images of {rep.calib} (sha256 {rep.calib_sha256[:12]}); "
        f"{len(rep.nodes_kept_float)} node(s) kept float[/]"
    )
    rows = [["size", f"{rep.size_before / _MB:.2f} MB", f"{rep.size_after / _MB:.2f} MB", f"{rep.size_ratio:.2f}x smaller"]]
    if rep.metric_before is not None:
        rows.append([{"map": "mAP@[.5:.95]"}.get(rep.metric, rep.metric), f"{rep.metric_before:.4f}", f"{rep.metric_after:.4f}",
                     f"{-rep.metric_drop:+.2f} pts on {rep.eval_n} images"])
    if rep.top1_before is not None:
        rows.append(["top-1", f"{100 * rep.top1_before:.2f}%", f"{100 * rep.top1_after:.2f}%", f"{-rep.top1_drop:+.2f} pts"])
        rows.append(["top-5", f"{100 * rep.top5_before:.2f}%", f"{100 * rep.top5_after:.2f}%",
                     f"{100 * (rep.top5_after - rep.top5_before):+.2f} pts"])
        rows.append(["top-1 agreement", "", f"{100 * rep.agreement:.1f}%", f"on {rep.eval_n} images"])
    sp = rep.speed
    if sp is not None:
        rows.append(["p50 latency", f"{sp['fp32_p50_ms']:.3f} ms", f"{sp['int8_p50_ms']:.3f} ms", sp["summary"]])
    extra = [f"+ {rep.seconds_eval:.1f} s eval"] if rep.top1_before is not None or rep.metric_before is not None else []
    extra += [f"+ {rep.seconds_speed:.1f} s timing"] if sp is not None else []
    rows.append(["time", "", f"{rep.seconds_quantize:.1f} s", " ".join(extra)])
    print_table([Col("", "words", justify="right"), Col("float"), Col("int8"), Col("change")], rows,
                title_justify="left")
    if sp is None:
        return
    lo, hi = sp["speedup_ci95"]
    console.print(
        f"[dim]latency on {sp['device']} ({', '.join(sp['providers_int8'])}, threads {sp['threads'] or 'default'}): "
        f"{sp['rounds']} interleaved rounds of {sp['runs_per_block']} runs of each model, one val image; "
        f"speed-up 95% CI {lo:.2f}-{hi:.2f}x[/]", soft_wrap=True)
    for note in sp["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if sp["other_load"] is not None and sp["other_load"] > 0.2:
        err_console.print(f"[yellow]note:[/] other processes kept {sp['other_load']:.1f} cores busy while timing; the "
                          "speed-up holds better than the absolute times", soft_wrap=True)
    if sp["warning"]:
        console.print(f"[yellow]{escape(sp['warning'])}[/]", soft_wrap=True)
