"""Refuse a batch that cannot fit in free memory, before allocating it (instead of an out-of-memory kill).

One estimate for every command that takes a batch: an image costs its input tensor (in the input's own dtype)
plus ACTIVATION_FACTOR times its input elements in float32 activations.
"""

from __future__ import annotations

from typing import Sequence

from .errors import BadInput
from .hostinfo import available_memory

# Peak inference memory per image as a multiple of its input elements in float32: MobileNet activations reach
# ~8x the input and ONNX Runtime keeps a few of them alive at once.
ACTIVATION_FACTOR = 24
# Use at most this share of the memory that is available now.
HEADROOM = 0.8


def image_bytes(elements: int, input_bytes: int | None = None) -> int:
    """Estimated peak bytes for one image of `elements` input values (`input_bytes`: its own size, default float32)."""
    return elements * 4 * ACTIVATION_FACTOR + (elements * 4 if input_bytes is None else input_bytes)


def shape_elements(shape: Sequence[object], default_dim: int = 224) -> int:
    """Elements of one image of an input shape (batch axis dropped; symbolic dims count as `default_dim`)."""
    elems = 1
    for dim in list(shape)[1:]:
        elems *= dim if isinstance(dim, int) and dim > 0 else default_dim
    return elems


def check_batch_memory(batch: int, per_image: int, name: str = "batch", detail: str = "", available: int | None = None) -> None:
    """BadInput if `batch` images of `per_image` bytes exceed the headroom of `available` bytes (default: free now).

    `name` starts the message (the parameter, or a caller's flag); `detail` follows the size.
    """
    need = batch * per_image
    avail = available_memory() if available is None else available
    if per_image > 0 and need > HEADROOM * avail:
        fits = max(1, int(HEADROOM * avail // per_image))
        raise BadInput(
            f"{name} {batch} needs about {need / 2**30:.1f} GiB{detail}, but only {avail / 2**30:.1f} GiB is free",
            f"lower {name} (at most ~{fits} fits)",
        )
