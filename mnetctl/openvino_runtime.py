"""OpenVINO's own runtime (the `openvino` package, the optional extra `openvino`): the one module that imports it.

OpenVINO reads mnetctl's ONNX files directly (float and QDQ int8: it folds the Q/DQ pairs into int8 kernels) and
compiles them for a device ("CPU" here; "GPU" and "NPU" where Intel's drivers are installed) with a performance
hint ("LATENCY": one stream, all its threads on one request) and, on the CPU, a thread count. A device that
OpenVINO does not list on this host is EnvironmentMissing (exit 3), never silently replaced by the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInput, EnvironmentMissing, short

OPENVINO_HINT = "pip install 'mnetctl[openvino]'"
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
PRECISIONS = ("f32", "bf16", "f16")


def load_openvino():
    """The openvino module; EnvironmentMissing (exit 3) when the package is not installed."""
    try:
        import openvino
    except ImportError as exc:
        raise EnvironmentMissing(f"OpenVINO (the openvino package) is not installed here ({exc})", OPENVINO_HINT) from None
    return openvino


def openvino_version() -> str:
    try:
        return f"openvino {load_openvino().get_version().split('-')[0]}"
    except EnvironmentMissing:
        return "openvino (not installed)"


def available_devices() -> list[str]:
    """The devices OpenVINO finds on this host (e.g. ["CPU"], ["CPU", "GPU", "NPU"])."""
    return list(load_openvino().Core().available_devices)


def _check_device(device: str, found: list[str]) -> None:
    """Every device named in `device` ("CPU", "GPU.0", "AUTO:GPU,CPU", "HETERO:NPU,CPU") is present here."""
    names = device.split(":", 1)[1].split(",") if ":" in device else [device]
    if device.split(":", 1)[0] in ("AUTO", "HETERO", "MULTI") and ":" not in device:
        return  # AUTO alone picks among whatever is there
    for name in names:
        base = name.strip().split(".")[0]
        if not any(f == name.strip() or f.split(".")[0] == base for f in found):
            raise EnvironmentMissing(
                f"OpenVINO device {name.strip()} is not available on this host (OpenVINO finds: {', '.join(found) or 'none'})",
                "install Intel's GPU/NPU driver for OpenVINO, or use device = \"CPU\"")


class OpenVINOModel:
    """A model compiled by OpenVINO for one device, with one infer request.

    batch: fix the first input dimension to this (None: keep the model's own, possibly dynamic, batch axis).
    threads: INFERENCE_NUM_THREADS on the CPU (None: OpenVINO's default). hint: PERFORMANCE_HINT.
    """

    def __init__(self, path: Path | str, device: str = "CPU", threads: int | None = None, hint: str = "LATENCY",
                 num_streams: int | None = None, precision: str | None = None, batch: int | None = 1):
        ov = load_openvino()
        self.path = Path(path)
        if hint not in HINTS:
            raise BadInput(f"performance_hint must be one of {', '.join(HINTS)}, got {hint!r}")
        if precision is not None and precision not in PRECISIONS:
            raise BadInput(f"inference_precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        core = ov.Core()
        _check_device(device, list(core.available_devices))
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO's frontends raise their own types
            raise BadInput(f"OpenVINO cannot read {self.path}: {short(exc)}") from None
        if len(model.inputs) != 1:
            raise BadInput(f"{self.path} has {len(model.inputs)} inputs; mnetctl runs models with one image input")
        if batch is not None:
            shape = model.inputs[0].get_partial_shape()
            if shape.rank.is_static and shape.rank.get_length() >= 1:
                shape[0] = int(batch)
                model.reshape({model.inputs[0].get_any_name(): shape})
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if threads is not None and device.startswith("CPU"):
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if num_streams is not None:
            config["NUM_STREAMS"] = int(num_streams)
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise BadInput(f"OpenVINO cannot compile {self.path} for {device}: {short(exc)}") from None
        self.request = self.compiled.create_infer_request()
        port = self.compiled.inputs[0]
        self.input_name = port.get_any_name()
        pshape = port.get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in pshape)
        self.input_dtype = np.dtype(port.get_element_type().to_dtype())
        self.device = device
        self.hint = hint
        self.threads = threads
        self._ov = ov
        self._bound: Any = None

    def execution_devices(self) -> list[str]:
        try:
            return list(self.compiled.get_property("EXECUTION_DEVICES"))
        except Exception:  # older plugins do not report it
            return [self.device]

    def threads_used(self) -> int | None:
        try:
            return int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception:
            return self.threads

    def bind(self, x: np.ndarray) -> None:
        """Set the input once (`run_bound` then infers on it, no copy per run)."""
        self._bound = np.ascontiguousarray(x, dtype=self.input_dtype)
        self.request.set_input_tensor(self._ov.Tensor(self._bound, shared_memory=True))

    def run_bound(self, _arg: Any = None) -> None:
        self.request.infer()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One inference, numpy in, the first output copied out."""
        try:
            self.request.infer({0: np.ascontiguousarray(x, dtype=self.input_dtype)})
        except Exception as exc:
            raise BadInput(f"OpenVINO cannot run {self.path}: {short(exc)}") from None
        return np.array(self.request.get_output_tensor(0).data, copy=True)
