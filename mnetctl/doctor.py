"""What this host can run: every registered execution provider is tried on a tiny MobileNet for real."""

from __future__ import annotations

from typing import Any


def _probe_model() -> bytes:
    """A small V1 (width 0.25, 32 px, opset 13 / IR 7: loadable by old and plugin runtimes alike)."""
    from .builder import build_model

    return build_model("v1", 0.25, 32, opset=13).SerializeToString()


def probe_ep(name: str, model: bytes | None = None) -> dict[str, Any]:
    """Status of one EP plus, when it is present, a real session's node assignment."""
    from .errors import MnetctlError
    from .runtime import EP_REGISTRY, create_session, ep_status

    status = ep_status(name)
    info = EP_REGISTRY[name]
    row: dict[str, Any] = {
        **status.as_dict(), "packages": list(info.packages), "loads": False, "nodes": None, "error": None,
        "simulated": False, "note": info.note,
    }
    if not status.available:
        return row
    try:
        sinfo = create_session(model or _probe_model(), [name], batch=1, allow_fallback=True)
    except MnetctlError as exc:
        row["error"] = exc.message
        return row
    except Exception as exc:  # a provider that crashes on session creation
        row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        return row
    row["nodes"] = dict(sinfo.assignment.counts)
    row["simulated"] = sinfo.simulated
    row["loads"] = name == "cpu" or sinfo.assignment.counts.get(status.provider, 0) > 0
    if not row["loads"]:
        row["error"] = "loaded but ran no node"
    return row


def _try_profile(prof, model: bytes) -> str | None:
    from .errors import MnetctlError
    from .runtime import create_session

    try:
        create_session(model, prof.ep_requests(), threads=prof.threads, batch=1)
    except MnetctlError as exc:
        return exc.message
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def diagnose() -> dict[str, Any]:
    from .profiles import list_profiles

    return _diagnose(list_profiles())


def diagnose_profiles(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """`diagnose` for the given profiles (as plain data, e.g. sent by a cluster driver) instead of the shipped ones."""
    from .profiles import Profile

    return _diagnose([Profile.model_validate(p) for p in profiles])


def _diagnose(profs) -> dict[str, Any]:
    from .hostinfo import host_info
    from .profiles import host_matches_profile
    from .runtime import EP_REGISTRY, onnxruntime_info

    host = host_info()
    model = _probe_model()
    eps = [probe_ep(name, model) for name in EP_REGISTRY]
    loads = {row["name"]: row["loads"] for row in eps}
    from .engines import ENGINES, status

    runtimes = {}
    for name in ENGINES:
        installed, detail = status(name)
        runtimes[name] = {"installed": installed, "detail": detail}
    profiles = []
    for prof in profs:
        matches, reasons = host_matches_profile(prof, host)
        ok = [n for n in prof.ep_names if loads.get(n)]
        missing = [n for n in prof.ep_names if not loads.get(n)]
        error = None
        if not missing and any(e.options for e in prof.eps):
            error = _try_profile(prof, model)  # the EPs load with defaults; do they with the profile's options?
            if error:
                missing, ok = [n for n in prof.ep_names if n != "cpu"], [n for n in prof.ep_names if n == "cpu"]
        if prof.engine != "onnxruntime" and not runtimes[prof.engine]["installed"]:
            missing, ok, error = [prof.engine], [], runtimes[prof.engine]["detail"]
        verdict = "fallback" if missing else ("native" if matches else "emulated")
        profiles.append({
            "name": prof.name, "host_matches_profile": matches, "host_mismatch": reasons, "loads": ok, "missing": missing,
            "error": error, "verdict": verdict, "status": prof.status, "status_note": prof.status_note,
        })
    return {"host": host, "onnxruntime": onnxruntime_info(), "runtimes": runtimes, "eps": eps, "profiles": profiles}
