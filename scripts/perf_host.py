#!/usr/bin/env python
"""Performance study of MobileNet V2-1.0-224 int8 on this host, side by side with LiteRT.

Every configuration is timed *paired with LiteRT* running the shipped TF2 post-training-quantized
checkpoint (`models/pretrained/coral/tf2_mobilenet_v2_1.0_224_ptq.tflite`) in the same process, with
the same threads and batch: the two runs alternate (A B, then B A, ...), so drift of the host hits
both alike and each configuration gets its own ratio = ONNX Runtime p50 / LiteRT p50. Measurements
are taken in rounds; a round during which other processes used more than --max-load of the CPUs is
dropped and re-taken (up to a time limit per configuration; the share actually seen is reported).

Levers measured (see docs/performance.md for the findings):
  * formats: fp32; int8 QDQ vs QOperator; activation/weight types U8S8, S8S8, U8U8; per-tensor vs
    per-channel weights; float NCHW input vs mnetctl's uint8 NHWC input (preprocessing in the graph);
    `mnetctl quantize` with its defaults (when mnetctl.quant is importable)
  * session: graph optimisation level (basic / extended / all = NHWC layout transform), the
    optimised model saved (`optimized_model_filepath`) and reloaded with optimisations off,
    thread spinning off, `session.dynamic_block_base`, intra-op thread affinity
  * threads: 1 vs 2 (both runtimes alike); batch: 1 / 4 / 8 (ms per image, both runtimes alike)
  * the OpenVINO execution provider (onnxruntime-openvino, in its own venv, see --openvino-venv)
  * the measuring method itself: ONNX Runtime's default idle spinning vs `session.force_spinning_stop`
    while interleaved with LiteRT

Accuracy: top-1 on the shipped 200-image val sample for every configuration at batch 1 (same
centre crops for both runtimes: LiteRT gets the uint8 crop, ONNX models the crop normalised per
their metadata), plus top-1 agreement with LiteRT.

Usage (from the repository root):
    .venv/bin/python scripts/perf_host.py                       # everything, ~10 min on 2 cores
    .venv/bin/python scripts/perf_host.py --only formats,openvino --rounds 10
    .venv/bin/python scripts/perf_host.py --setup-openvino      # create the OpenVINO venv first

Writes <work>/results.json and prints one Markdown table per group. The worker half of this script
(`--worker SPEC`) needs only numpy, psutil, onnxruntime (any flavour), ai-edge-litert and this
repository's `mnetctl.hostinfo`/`mnetctl.interleave` (found through the repository path), so it also
runs under the OpenVINO venv's Python.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TFLITE = REPO / "models" / "pretrained" / "coral" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
DEFAULT_WORK = REPO / ".cache" / "perf"
DEFAULT_OV_VENV = REPO / ".cache" / "venvs" / "perf-openvino"
OV_PACKAGES = ("onnxruntime-openvino", "ai-edge-litert", "numpy", "psutil")
GROUPS = ("formats", "session", "threads", "batch", "openvino", "method", "profile")


# ================================================================================================
# Worker: timing + accuracy of configurations paired with LiteRT (numpy/onnxruntime/litert only)


def _library():
    """mnetctl's host and interleaving modules (numpy/psutil only), also from the OpenVINO venv's Python."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from mnetctl import hostinfo, interleave

    return hostinfo, interleave


def _litert(threads: int, batch: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(TFLITE), num_threads=threads)
    inp = interp.get_input_details()[0]
    batched = False
    if batch != 1:
        try:
            interp.resize_tensor_input(inp["index"], [batch, 224, 224, 3])
            interp.allocate_tensors()
            batched = True
        except (RuntimeError, ValueError):
            # the checkpoint's graph has batch 1 baked in (XNNPACK cannot reshape it): the batch
            # then costs LiteRT `batch` invocations at batch 1
            interp = Interpreter(model_path=str(TFLITE), num_threads=threads)
    if not batched:
        interp.allocate_tensors()
    out = interp.get_output_details()[0]

    def run(x):
        if batched or x.shape[0] == 1:
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return interp.get_tensor(out["index"])
        outs = []
        for i in range(x.shape[0]):
            interp.set_tensor(inp["index"], x[i:i + 1])
            interp.invoke()
            outs.append(interp.get_tensor(out["index"]).copy())
        return np.concatenate(outs)

    run.batched = batched
    return run


def _ort_session(cfg: dict, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    level = cfg.get("level", "all")
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    config = {"session.force_spinning_stop": "1"}
    config.update(cfg.get("config", {}))
    for key, value in config.items():
        if value is not None:
            so.add_session_config_entry(key, str(value))
    if cfg.get("save_optimized"):
        so.optimized_model_filepath = cfg["save_optimized"]
    provider = cfg.get("provider", "CPUExecutionProvider")
    popts = dict(cfg.get("provider_options", {}))
    if provider == "OpenVINOExecutionProvider":
        popts.setdefault("num_of_threads", str(threads))
    t0 = time.perf_counter()
    sess = ort.InferenceSession(cfg["model"], so, providers=[provider], provider_options=[popts])
    create_ms = (time.perf_counter() - t0) * 1e3
    if provider not in sess.get_providers():
        raise RuntimeError(f"{provider} not active (got {sess.get_providers()})")
    return sess, create_ms


def _inputs(crops: np.ndarray, kind: str, mean: float, std: float) -> np.ndarray:
    if kind == "uint8-nhwc":
        return np.ascontiguousarray(crops)
    x = (crops.astype(np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _top1(scores: np.ndarray) -> np.ndarray:
    scores = scores.reshape(scores.shape[0], -1).astype(np.float32)
    if scores.shape[1] == 1001:
        scores = scores[:, 1:]
    return scores.argmax(axis=1)


def measure(cfg: dict, spec: dict, crops: np.ndarray, labels: np.ndarray) -> dict:
    threads = int(cfg.get("threads", spec["threads"]))
    batch = int(cfg.get("batch", 1))
    sess, create_ms = _ort_session(cfg, threads)
    inp = sess.get_inputs()[0]
    kind = "uint8-nhwc" if inp.type == "tensor(uint8)" else "float-nchw"
    lite = _litert(threads, batch)
    out = {"name": cfg["name"], "threads": threads, "batch": batch, "create_ms": round(create_ms, 1),
           "providers": sess.get_providers()[:1], "litert_batched": bool(lite.batched)}

    def ort_run(x):
        return sess.run(None, {inp.name: x})[0]

    if spec.get("accuracy", True) and batch == 1:
        n = len(crops)
        p_ort = np.empty(n, np.int64)
        p_lite = np.empty(n, np.int64)
        for i in range(n):
            p_ort[i] = _top1(ort_run(_inputs(crops[i:i + 1], kind, spec["mean"], spec["std"])))[0]
            p_lite[i] = _top1(lite(np.ascontiguousarray(crops[i:i + 1])).astype(np.float32))[0]
        out.update(top1=float(np.mean(p_ort == labels)), litert_top1=float(np.mean(p_lite == labels)),
                   agreement=float(np.mean(p_ort == p_lite)), images=int(n))

    pool = min(len(crops), 16)
    xs_ort = [_inputs(crops[(i * batch + np.arange(batch)) % len(crops)], kind, spec["mean"], spec["std"]) for i in range(pool)]
    xs_lite = [np.ascontiguousarray(crops[(i * batch + np.arange(batch)) % len(crops)]) for i in range(pool)]
    for i in range(spec["warmup"]):
        ort_run(xs_ort[i % pool])
        lite(xs_lite[i % pool])
    hostinfo, il = _library()
    cpus = hostinfo.usable_cpus()
    pair = (il.Runnable("ort", ort_run, xs_ort), il.Runnable("litert", lite, xs_lite))
    t_ort: list[float] = []
    t_lite: list[float] = []
    loads: list[float] = []
    kept = dropped = 0
    deadline = time.monotonic() + spec["max_seconds"]
    pending: list[tuple[list[float], list[float], float | None]] = []
    while kept < spec["rounds"]:
        # one round: `runs` pairs, the order alternating (A B, B A, ...)
        timed = il.interleave(pair, rounds=spec["runs"])
        r_ort, r_lite = timed.samples("ort"), timed.samples("litert")
        load = None if timed.other_load is None else timed.other_load / cpus  # share of the CPUs
        if load is not None and load > spec["max_load"] and time.monotonic() < deadline:
            dropped += 1
            pending.append((r_ort, r_lite, load))
            time.sleep(0.05)
            continue
        kept += 1
        t_ort += r_ort
        t_lite += r_lite
        loads.append(load if load is not None else 0.0)
        if time.monotonic() >= deadline and kept < spec["rounds"]:
            # out of time: fill up with the least loaded of the dropped rounds, and say so
            pending.sort(key=lambda p: p[2] if p[2] is not None else 0.0)
            for r_o, r_l, ld in pending[: spec["rounds"] - kept]:
                t_ort += r_o
                t_lite += r_l
                loads.append(ld or 0.0)
                kept += 1
            break
    a = np.asarray(t_ort) * 1e3 / batch
    b = np.asarray(t_lite) * 1e3 / batch
    out.update(
        ort_p50=float(np.median(a)), ort_p90=float(np.percentile(a, 90)), ort_mean=float(a.mean()), ort_min=float(a.min()),
        litert_p50=float(np.median(b)), litert_p90=float(np.percentile(b, 90)), litert_mean=float(b.mean()),
        litert_min=float(b.min()), ratio_p50=float(np.median(a) / np.median(b)), ratio_min=float(a.min() / b.min()),
        runs=int(a.size), rounds_kept=kept, rounds_dropped=dropped, other_load=round(float(np.mean(loads)) if loads else 0.0, 3),
    )
    del sess
    return out


def combine(reps: list[dict]) -> dict:
    """One configuration's repeats: medians of the timings and ratios, the ratio's range, accuracy of the first."""
    ok = [r for r in reps if "error" not in r]
    if not ok:
        return reps[0]
    out = dict(ok[0])
    if len(ok) > 1:
        for key in ("ort_p50", "ort_p90", "ort_mean", "ort_min", "litert_p50", "litert_p90", "litert_mean", "litert_min",
                    "ratio_p50", "ratio_min", "other_load"):
            out[key] = float(np.median([r[key] for r in ok]))
        for key in ("runs", "rounds_kept", "rounds_dropped"):
            out[key] = int(sum(r[key] for r in ok))
    out["repeats"] = len(ok)
    out["ratio_range"] = [min(r["ratio_p50"] for r in ok), max(r["ratio_p50"] for r in ok)]
    return out


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    data = np.load(spec["crops"])
    crops, labels = data["crops"], data["labels"]
    if spec.get("images"):
        crops, labels = crops[: spec["images"]], labels[: spec["images"]]
    import onnxruntime as ort

    repeats = max(1, int(spec.get("repeat", 1)))
    runs: dict[str, list[dict]] = {c["name"]: [] for c in spec["configs"]}
    for rep in range(repeats):  # repeats go round all configurations, so each spans the whole run's drift
        for cfg in spec["configs"]:
            try:
                res = measure(cfg, dict(spec, accuracy=spec.get("accuracy", True) and rep == 0), crops, labels)
            except Exception as exc:  # report and go on: one failing lever must not hide the others
                res = {"name": cfg["name"], "error": " ".join(str(exc).split())[:300]}
            runs[cfg["name"]].append(res)
            print(json.dumps({"progress": f"{cfg['name']} ({rep + 1}/{repeats})"}), file=sys.stderr, flush=True)
    results = []
    for cfg in spec["configs"]:
        res = combine(runs[cfg["name"]])
        res.update(group=cfg.get("group"), label=cfg.get("label", cfg["name"]))
        results.append(res)
    hostinfo, _ = _library()
    doc = {"onnxruntime": ort.__version__, "cpu": hostinfo.cpu_model(), "cpus": hostinfo.usable_cpus(), "results": results}
    Path(spec["output"]).write_text(json.dumps(doc, indent=1))
    return 0


# ================================================================================================
# Driver: build and quantize the models, run the workers, print tables (needs mnetctl's venv)


def _calibration_reader(arrays):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(arrays)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    return Reader()


def prepare_models(work: Path, log) -> dict[str, str]:
    """Float and int8 variants of the pretrained V2-1.0-224 (cached in `work` by name)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mnetctl.builder import build_model, save_model
    from mnetctl.data import Preprocessor, default_calib_dir, find_samples, load_image
    from mnetctl.meta import read_meta

    work.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    calib = find_samples(default_calib_dir())
    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    plan = {
        "float-nchw": ["qdq-u8s8-pt", "qdq-u8s8-pc", "qdq-s8s8-pc", "qdq-u8u8-pt", "qop-u8s8-pt", "qop-u8s8-pc"],
        "uint8-nhwc": ["qdq-u8s8-pt", "qdq-u8s8-pc"],
    }
    for fmt_in, variants in plan.items():
        tag = "u8in" if fmt_in == "uint8-nhwc" else "f"
        fp32 = work / f"v2-{tag}-fp32.onnx"
        if not fp32.exists():
            save_model(build_model("v2", 1.0, 224, weights="pretrained", input_format=fmt_in), fp32)
        paths[f"{tag}-fp32"] = str(fp32)
        meta = read_meta(onnx.load(str(fp32), load_external_data=False))
        pre = Preprocessor.from_meta(meta)
        arrays = None
        prepped = work / f"v2-{tag}-fp32.pre.onnx"
        for var in variants:
            out = work / f"v2-{tag}-{var}.onnx"
            paths[f"{tag}-{var}"] = str(out)
            if out.exists():
                continue
            if arrays is None:
                arrays = [pre(load_image(s.path))[None] for s in calib]
                quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
            fmt, kinds, gran = var.split("-")
            log(f"quantize {out.name}")
            exclude = [n.name for n in onnx.load(str(prepped)).graph.node if n.name.startswith("preprocess.")]
            quantize_static(
                str(prepped), str(out), _calibration_reader(arrays),
                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                activation_type=types[kinds[:2]], weight_type=types[kinds[2:]], per_channel=gran == "pc",
                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
            )
    out = work / "v2-u8direct-qdq-u8s8-pc.onnx"
    paths["u8direct-qdq-u8s8-pc"] = str(out)
    if not out.exists():
        log(f"quantize {out.name}")
        direct_uint8_input(Path(paths["f-fp32"]), out, work, calib)
    # mnetctl's own quantizer with its defaults, where it exists in this checkout
    try:
        from mnetctl.quant.pipeline import quantize_model
    except ImportError:
        quantize_model = None
    if quantize_model is not None:
        out = work / "v2-f-mnetctl-int8.onnx"
        try:
            if not out.exists():
                log(f"mnetctl quantize -> {out.name}")
                quantize_model(paths["f-fp32"], out)
            paths["f-mnetctl-int8"] = str(out)
        except Exception as exc:  # the quantizer is optional here: report and measure the rest
            log(f"mnetctl quantize failed: {exc}")
    return paths


def direct_uint8_input(fp32: Path, out: Path, work: Path, calib) -> None:
    """int8 model whose uint8 NHWC pixels ARE its quantized input (no normalisation work at run time).

    The float-input model is quantized with its input's (scale, zero point) forced to
    (1/std, round(mean)), so that q = pixel; the half-level difference between round(mean) and mean
    is folded into the stem's bias (exact away from the zero-padded border). The input
    QuantizeLinear is then replaced by a uint8 NHWC graph input and a Transpose, which ONNX Runtime's
    NHWC layout transform cancels: the pixels go straight into the first QLinearConv.
    """
    from dataclasses import replace

    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mnetctl.data import Preprocessor, load_image
    from mnetctl.meta import read_meta, write_meta

    model = onnx.load(str(fp32))
    meta = read_meta(model)
    mean, std = float(meta.mean[0]), float(meta.std[0])
    assert len(set(meta.mean)) == 1 and len(set(meta.std)) == 1, "one mean/std for all channels"
    zero = int(round(mean))
    delta = (zero - mean) / std
    inits = {i.name: i for i in model.graph.initializer}
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    w = numpy_helper.to_array(inits[stem.input[1]])
    b = numpy_helper.to_array(inits[stem.input[2]])
    inits[stem.input[2]].CopyFrom(numpy_helper.from_array((b + delta * w.sum(axis=(1, 2, 3))).astype(np.float32), stem.input[2]))
    shifted = work / "v2-u8direct-fp32.onnx"
    onnx.save(model, str(shifted))
    geom = replace(Preprocessor.from_meta(meta), input_format="uint8-nhwc")
    arrays = [((geom(load_image(s.path)).astype(np.float32) - zero) / std).transpose(2, 0, 1)[None].copy() for s in calib]
    prepped = work / "v2-u8direct-fp32.pre.onnx"
    quant_pre_process(str(shifted), str(prepped), skip_symbolic_shape=True)
    quantize_static(
        str(prepped), str(out), _calibration_reader(arrays), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"TensorQuantOverrides": {"input": [{"scale": np.array(1.0 / std, np.float32),
                                                           "zero_point": np.array(zero, np.uint8)}]}},
    )
    q = onnx.load(str(out))
    g = q.graph
    quant_in = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    transpose = helper.make_node("Transpose", ["input"], [quant_in.output[0]], name="input.nchw", perm=[0, 3, 1, 2])
    nodes = [transpose if n is quant_in else n for n in g.node]
    del g.node[:]
    g.node.extend(nodes)
    res = meta.resolution
    g.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.UINT8, ["batch", res, res, 3]))
    write_meta(q, replace(meta, input_format="uint8-nhwc", layout="NHWC", precision="int8"))
    onnx.checker.check_model(q)
    onnx.save(q, str(out))


def save_crops(work: Path, limit: int | None) -> tuple[Path, float, float]:
    """Centre crops (uint8 NHWC 224) + labels of the val sample, preprocessed like the model's metadata says."""
    from dataclasses import replace

    from mnetctl.data import Preprocessor, default_val_dir, find_samples, load_image
    from mnetctl.meta import read_meta_file

    meta = read_meta_file(work / "v2-f-fp32.onnx")
    geom = replace(Preprocessor.from_meta(meta), input_format="uint8-nhwc")
    samples = find_samples(default_val_dir(), limit)
    path = work / f"val-crops-{len(samples)}.npz"
    if not path.exists():
        crops = np.stack([geom(load_image(s.path)) for s in samples])
        labels = np.array([s.label for s in samples], np.int64)
        np.savez(path, crops=crops, labels=labels)
    assert len(set(meta.mean)) == 1 and len(set(meta.std)) == 1, "worker assumes one mean/std for all channels"
    return path, float(meta.mean[0]), float(meta.std[0])


def configs(paths: dict[str, str], work: Path, groups: set[str]) -> tuple[list[dict], list[dict]]:
    """(configs for mnetctl's venv, configs for the OpenVINO venv)."""
    main: list[dict] = []
    ov: list[dict] = []
    best = paths["f-qdq-u8s8-pc"]
    if "formats" in groups:
        for key, label in [
            ("f-fp32", "fp32"),
            ("f-qdq-u8s8-pt", "int8 QDQ U8S8 per-tensor (quantize_static defaults)"),
            ("f-qdq-u8s8-pc", "int8 QDQ U8S8 per-channel"),
            ("f-qdq-s8s8-pc", "int8 QDQ S8S8 per-channel"),
            ("f-qdq-u8u8-pt", "int8 QDQ U8U8 per-tensor"),
            ("f-qop-u8s8-pt", "int8 QOperator U8S8 per-tensor"),
            ("f-qop-u8s8-pc", "int8 QOperator U8S8 per-channel"),
            ("u8in-qdq-u8s8-pt", "int8 QDQ U8S8 per-tensor, uint8 NHWC input (normalisation in the graph)"),
            ("u8in-qdq-u8s8-pc", "int8 QDQ U8S8 per-channel, uint8 NHWC input (normalisation in the graph)"),
            ("u8direct-qdq-u8s8-pc", "int8 QDQ U8S8 per-channel, uint8 NHWC pixels as the quantized input"),
            ("f-mnetctl-int8", "int8 `mnetctl quantize` defaults"),
        ]:
            if key in paths:
                main.append({"group": "formats", "name": key, "label": label, "model": paths[key]})
    if "session" in groups:
        optimized = str(work / "v2-f-qdq-u8s8-pc.ort-optimized.onnx")
        main += [
            {"group": "session", "name": "level-basic", "label": "graph optimisation basic", "model": best, "level": "basic"},
            {"group": "session", "name": "level-extended", "label": "extended (no layout transform)", "model": best, "level": "extended"},
            {"group": "session", "name": "level-all", "label": "all (NHWC layout transform; default)", "model": best, "level": "all"},
            {"group": "session", "name": "save-optimized", "label": "all, saving the optimised model", "model": best,
             "save_optimized": optimized},
            {"group": "session", "name": "load-optimized", "label": "saved optimised model, optimisations off", "model": optimized,
             "level": "disabled"},
            {"group": "session", "name": "no-spinning", "label": "intra-op spinning off", "model": best,
             "config": {"session.intra_op.allow_spinning": "0"}},
            {"group": "session", "name": "dynamic-block-4", "label": "session.dynamic_block_base=4", "model": best,
             "config": {"session.dynamic_block_base": "4"}},
            {"group": "session", "name": "affinity", "label": "worker thread pinned (intra_op_thread_affinities=2)", "model": best,
             "config": {"session.intra_op_thread_affinities": "2"}},
        ]
    if "threads" in groups:
        main += [
            {"group": "threads", "name": "threads-1", "label": "1 thread (both runtimes)", "model": best, "threads": 1},
            {"group": "threads", "name": "threads-2", "label": "2 threads (both runtimes)", "model": best, "threads": 2},
        ]
    if "batch" in groups:
        for b in (1, 4, 8):
            main.append({"group": "batch", "name": f"batch-{b}", "label": f"batch {b} (ms per image, both runtimes)",
                         "model": best, "batch": b})
    if "method" in groups:
        main += [
            {"group": "method", "name": "force-spinning-stop", "label": "interleaved, ORT threads stop spinning after a run",
             "model": best},
            {"group": "method", "name": "default-spinning", "label": "interleaved, ORT's default idle spinning", "model": best,
             "config": {"session.force_spinning_stop": None}},
        ]
    if "openvino" in groups:
        ov += [
            {"group": "openvino", "name": "ov-cpu-ep", "label": "CPU EP of the onnxruntime-openvino build, int8 QDQ per-channel",
             "model": best},
            {"group": "openvino", "name": "ov-fp32", "label": "OpenVINO EP, fp32", "model": paths["f-fp32"],
             "provider": "OpenVINOExecutionProvider", "provider_options": {"device_type": "CPU"}},
            {"group": "openvino", "name": "ov-qdq-pt", "label": "OpenVINO EP, int8 QDQ per-tensor", "model": paths["f-qdq-u8s8-pt"],
             "provider": "OpenVINOExecutionProvider", "provider_options": {"device_type": "CPU"}},
            {"group": "openvino", "name": "ov-qdq-pc", "label": "OpenVINO EP, int8 QDQ per-channel", "model": best,
             "provider": "OpenVINOExecutionProvider", "provider_options": {"device_type": "CPU"}},
            {"group": "openvino", "name": "ov-qdq-pc-latency", "label": "OpenVINO EP, int8 QDQ per-channel, LATENCY hint",
             "model": best, "provider": "OpenVINOExecutionProvider",
             "provider_options": {"device_type": "CPU", "load_config": json.dumps({"CPU": {"PERFORMANCE_HINT": "LATENCY"}})}},
            {"group": "openvino", "name": "ov-u8in-qdq-pc", "label": "OpenVINO EP, int8 QDQ per-channel, uint8 NHWC input",
             "model": paths["u8in-qdq-u8s8-pc"], "provider": "OpenVINOExecutionProvider", "provider_options": {"device_type": "CPU"}},
        ]
        ov.append({"group": "openvino", "name": "ov-u8direct-qdq-pc", "label": "OpenVINO EP, int8 QDQ per-channel, uint8 pixels as the quantized input",
                   "model": paths["u8direct-qdq-u8s8-pc"], "provider": "OpenVINOExecutionProvider", "provider_options": {"device_type": "CPU"}})
        if "f-mnetctl-int8" in paths:
            ov.append({"group": "openvino", "name": "ov-mnetctl-int8", "label": "OpenVINO EP, `mnetctl quantize` defaults",
                       "model": paths["f-mnetctl-int8"], "provider": "OpenVINOExecutionProvider",
                       "provider_options": {"device_type": "CPU"}})
    return main, ov


def profile_layers(model: str, threads: int, runs: int = 500) -> list[dict]:
    """Where the int8 model's time goes: ORT's per-node profile (medians) and the MACs, by layer kind."""
    import collections

    import onnx
    import onnxruntime as ort

    from mnetctl.analysis import analyze

    def kind(name: str) -> str:
        if name.startswith("stem"):
            return "3x3 stem convolution"
        if ".dw" in name:
            return "depthwise, blocks 0-2 (112/56 px)" if int(name.split(".")[1]) <= 2 else "depthwise, blocks 3-16"
        if ".expand" in name or ".project" in name or name.startswith("head.conv"):
            return "1x1 convolutions"
        if name.startswith("head.fc"):
            return "classifier"
        return "other (adds, pooling, transposes, (de)quantize)"

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(model).with_suffix("")) + ".profile"
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = (np.random.default_rng(0).random((1, 3, 224, 224), np.float32) if inp.type == "tensor(float)"
         else np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8))
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"][: -len("_kernel_time")]].append(e["dur"])
    us: dict[str, float] = collections.Counter()
    for name, durs in per_node.items():
        us[kind(name)] += float(np.median(durs))
    macs: dict[str, float] = collections.Counter()
    stats = analyze(onnx.load(model, load_external_data=False))
    for layer in stats.layers:
        k = kind(layer.name)
        macs["depthwise (all blocks)" if k.startswith("depthwise") else k] += layer.macs
    total_us, total_macs = sum(us.values()), sum(macs.values())
    rows = []
    for k, v in sorted(us.items(), key=lambda kv: -kv[1]):
        mk = "depthwise (all blocks)" if k.startswith("depthwise") else k
        rows.append({"layers": k, "time_share": v / total_us, "us": v,
                     "mac_share_of_kind": macs.get(mk, 0.0) / total_macs if total_macs else 0.0})
    return rows


def run_worker(python: str, spec: dict, work: Path, tag: str, log) -> dict:
    spec = dict(spec, output=str(work / f"worker-{tag}.json"))
    spec_path = work / f"worker-{tag}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    log(f"{tag}: {len(spec['configs'])} configurations under {python}")
    proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", str(spec_path)],
                            stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    assert proc.stderr is not None
    for line in proc.stderr:
        line = line.strip()
        if line.startswith("{"):
            try:
                log(f"  done {json.loads(line)['progress']}")
                continue
            except (ValueError, KeyError):
                pass
        if line and "XNNPACK delegate" not in line:
            log(f"  [{tag}] {line}")
    if proc.wait() != 0:
        raise SystemExit(f"worker {tag} failed (exit {proc.returncode})")
    return json.loads(Path(spec["output"]).read_text())


def setup_openvino(venv: Path, log) -> None:
    if not (venv / "bin" / "python").exists():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *OV_PACKAGES], check=True)


def _range(r: dict) -> str:
    lo, hi = r.get("ratio_range", (None, None))
    return f" ({lo:.2f}-{hi:.2f}, {r['repeats']} runs)" if r.get("repeats", 1) > 1 else ""


def fmt_table(rows: list[dict]) -> str:
    head = "| configuration | ORT p50 ms | LiteRT p50 ms | ratio p50 | ratio min | top-1 | LiteRT top-1 | agreement | other load |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error']} |" + " |" * 7)
            continue
        acc = (f"{100 * r['top1']:.1f}%", f"{100 * r['litert_top1']:.1f}%", f"{100 * r['agreement']:.1f}%") if "top1" in r else ("-", "-", "-")
        lines.append(
            f"| {r['label']} | {r['ort_p50']:.3f} | {r['litert_p50']:.3f} | **{r['ratio_p50']:.2f}x**{_range(r)} | {r['ratio_min']:.2f}x"
            f" | {acc[0]} | {acc[1]} | {acc[2]} | {100 * r['other_load']:.0f}% |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="models, crops and results (default .cache/perf)")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma list of groups: {', '.join(GROUPS)}")
    ap.add_argument("--configs", default="", help="only these configuration names (comma list); results.json keeps the others")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=12, help="kept rounds per configuration")
    ap.add_argument("--runs", type=int, default=40, help="interleaved runs per round (per runtime)")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1, help="measure every configuration this many times (medians reported)")
    ap.add_argument("--max-load", type=float, default=0.15, help="drop rounds where other processes used more of the CPUs")
    ap.add_argument("--max-seconds", type=float, default=40.0, help="per configuration, before accepting loaded rounds")
    ap.add_argument("--limit", type=int, default=None, help="val images for top-1 (default all 200)")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--openvino-venv", type=Path, default=DEFAULT_OV_VENV)
    ap.add_argument("--setup-openvino", action="store_true", help=f"create/update the OpenVINO venv ({', '.join(OV_PACKAGES)})")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)

    def log(msg: str) -> None:
        print(f"[perf] {msg}", file=sys.stderr, flush=True)

    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = groups - set(GROUPS)
    if unknown:
        ap.error(f"unknown group(s) {', '.join(sorted(unknown))}")
    if args.setup_openvino:
        setup_openvino(args.openvino_venv, log)
    sys.path.insert(0, str(REPO))
    paths = prepare_models(args.work, log)
    crops, mean, std = save_crops(args.work, args.limit)
    spec = {"threads": args.threads, "rounds": args.rounds, "runs": args.runs, "warmup": args.warmup,
            "max_load": args.max_load, "max_seconds": args.max_seconds, "crops": str(crops), "mean": mean, "std": std,
            "accuracy": not args.no_accuracy, "repeat": args.repeat}
    main_cfgs, ov_cfgs = configs(paths, args.work, groups)
    if args.configs:
        wanted = {c.strip() for c in args.configs.split(",") if c.strip()}
        known = {c["name"] for c in main_cfgs + ov_cfgs}
        if wanted - known:
            ap.error(f"unknown configuration(s) {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))}")
        main_cfgs = [c for c in main_cfgs if c["name"] in wanted]
        ov_cfgs = [c for c in ov_cfgs if c["name"] in wanted]
    results: list[dict] = []
    versions: dict[str, str] = {}
    from mnetctl.hostinfo import cpu_model, cpu_summary

    cpu = cpu_model()
    if main_cfgs:
        doc = run_worker(sys.executable, dict(spec, configs=main_cfgs), args.work, "cpu", log)
        results += doc["results"]
        versions["onnxruntime"] = doc["onnxruntime"]
        cpu = doc["cpu"]
    if ov_cfgs:
        ov_python = args.openvino_venv / "bin" / "python"
        if not ov_python.exists():
            log(f"no OpenVINO venv at {args.openvino_venv}: skipping the openvino group (use --setup-openvino)")
        else:
            doc = run_worker(str(ov_python), dict(spec, configs=ov_cfgs), args.work, "openvino", log)
            results += doc["results"]
            versions["onnxruntime-openvino"] = doc["onnxruntime"]
            cpu = doc["cpu"]
    from importlib.metadata import version

    versions["ai-edge-litert"] = version("ai-edge-litert")
    summary = {
        "host": cpu_summary(),
        "threads": args.threads,
        "tflite": str(TFLITE.relative_to(REPO)),
        "versions": versions,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": results,
    }
    if "profile" in groups:
        log("per-node profile of the int8 QDQ U8S8 per-channel model")
        prof = profile_layers(paths["f-qdq-u8s8-pc"], args.threads)
        summary["profile"] = prof
    out = args.work / "results.json"
    if out.exists():  # a partial run replaces only what it measured; the rest of results.json stays
        previous = json.loads(out.read_text())
        if "profile" not in summary and previous.get("profile"):
            summary["profile"] = previous["profile"]
        fresh = {r["name"] for r in results}
        results = [r for r in previous.get("results", []) if r["name"] not in fresh] + results
        order = {c["name"]: i for i, c in enumerate(configs(paths, args.work, set(GROUPS))[0] + configs(paths, args.work, set(GROUPS))[1])}
        results.sort(key=lambda r: order.get(r["name"], len(order)))
        summary["results"] = results
        summary["versions"] = {**previous.get("versions", {}), **versions}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out)
    print(f"# {summary['host']}, {args.threads} threads; LiteRT = {summary['tflite']}")
    print(f"# versions: {', '.join(f'{k} {v}' for k, v in versions.items())}\n")
    for g in GROUPS:
        rows = [r for r in results if r.get("group") == g]
        if rows:
            print(f"## {g}\n\n{fmt_table(rows)}\n")
    if summary.get("profile"):
        print("## profile (int8 QDQ U8S8 per-channel, CPU EP, ORT's per-node profile, medians of 500 runs)\n")
        print("| layers | share of the time | share of the MACs |\n|---|---|---|")
        for row in summary["profile"]:
            print(f"| {row['layers']} | {100 * row['time_share']:.1f}% | {100 * row['mac_share_of_kind']:.1f}% |")
        print("\n(depthwise MACs are for all depthwise layers together)\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
