"""A model on a device profile, for timing: the profile resolved, its providers checked, and a runnable
session with one real image (the first of the shipped val sample, through the model's own preprocessing).

Shared by `quant.speed` (does int8 pay?) and `ab` (the A/B regression gate). Sessions are created on the
profile's execution providers with no silent fallback, idle pool threads not spinning between runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import BadInput, EnvironmentMissing

if TYPE_CHECKING:
    from .model import Model
    from .profiles import Profile

HOST = "host"  # the shipped profile of this machine (CPU execution provider)


def resolve_target(device, profile, threads) -> tuple["Profile", int | None]:
    """The profile (default: host) and the threads to run with (given, else the profile's, else None)."""
    from .profiles import Profile, load_profile
    from .runtime import check_threads

    if device is not None and profile is not None:
        raise BadInput("give device NAME or profile PATH, not both")
    if isinstance(device, Profile):
        prof = device
    elif profile is not None:
        prof = load_profile(Path(profile))
    else:
        prof = load_profile(device if device is not None else HOST)
    if threads is None:
        threads = prof.threads
    return prof, (check_threads(threads) if threads is not None else None)


def check_providers(prof: "Profile") -> None:
    """Every provider the profile names is present here (no silent fallback: EnvironmentMissing, exit 3)."""
    from .runtime import ep_status

    for name in prof.ep_names:
        status = ep_status(name)
        if not status.available:
            raise EnvironmentMissing(
                f"{status.title} execution provider ({status.name}) of profile {prof.name} is not available: "
                f"{status.detail}", f"{status.hint}; or measure on another device profile, or skip the measurement")


def one_image(model: "Model") -> np.ndarray:
    """The first image of the shipped val sample, preprocessed as the model's metadata says, one model input."""
    from .data import default_val_dir, find_samples, load_image
    from .model import fit_batches

    sample = find_samples(default_val_dir(), 1)[0]
    x = model.preprocessor(load_image(sample.path))[None]
    chunk, _ = next(fit_batches(x, model.input))
    return chunk


def profile_runnable(name: str, model: "Model", prof: "Profile", threads: int | None):
    """(interleave.Runnable, SessionInfo) for a model on the profile's providers, idle threads not spinning."""
    from .interleave import Runnable
    from .modelio import guarded_run
    from .runtime import create_session

    source = model.path if model.path is not None else model.proto.SerializeToString()
    info = create_session(source, prof.ep_requests(), threads=threads, batch=1, stop_idle_spinning=True)
    session = info.session
    feed = {model.input_name: one_image(model)}
    where = model.path if model.path is not None else Path(model.name)

    run = guarded_run(session, where)

    return Runnable(name, run, [feed]), info
