"""Random model inputs of the right dtype and shape, and IO binding for timed loops (bench)."""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import BadInput


def random_feeds(session, batch: int = 1, seed: int = 0, sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Inputs of the right dtype/shape (symbolic batch -> `batch`, other symbolic dims from `sizes`)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = []
        for i, dim in enumerate(inp.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif i == 0:
                shape.append(int(batch))
            elif sizes and str(dim) in sizes:
                shape.append(int(sizes[str(dim)]))
            else:
                raise BadInput(f"model input {inp.name!r} has a free dimension {dim!r} at axis {i}", "export the model with a fixed input size")
        feeds[inp.name] = _random_tensor(rng, inp.type, tuple(shape))
    return feeds


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def bind_io(session, feeds: Mapping[str, Any]):
    """An IO binding with `feeds` bound as CPU inputs and every output bound to CPU memory, so a timed
    loop of `session.run_with_iobinding(binding)` measures the model, not input copies."""
    binding = session.io_binding()
    for name, arr in feeds.items():
        binding.bind_cpu_input(name, arr)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cpu")
    return binding


def keep_outputs(session, binding) -> None:
    """Bind the outputs a first run of `binding` allocated, so that no later run allocates them again."""
    for out, value in zip(session.get_outputs(), binding.get_outputs()):
        binding.bind_ortvalue_output(out.name, value)


def _random_tensor(rng, ort_type: str, shape: tuple[int, ...]):
    import numpy as np

    dtype = _ORT_TYPES.get(ort_type)
    if dtype is None:
        raise BadInput(f"model input type {ort_type} is not supported by bench")
    if dtype in ("uint8",):
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dtype in ("int8", "int32", "int64"):
        return rng.integers(0, 100, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
