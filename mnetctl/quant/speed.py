"""Does int8 pay here? The float model and its int8 model timed side by side on a device profile's providers.

Both models run one real image (the first of the shipped val sample, through each model's own preprocessing)
in interleaved rounds (`mnetctl.interleave`: a block of runs of each model per round, the order alternating),
so drift of the host hits both alike. The ratio int8/float is the median over rounds of the two blocks'
medians in the same round; its 95% interval is a bootstrap over rounds (`stats.median_ci`). int8 *pays*
when the whole interval lies below 1. When it does not, `pay_hint` names what would make it pay.

Sessions are created on the profile's execution providers with no silent fallback (`runtime.create_session`:
a provider that is not available is EnvironmentMissing, exit 3), idle pool threads not spinning between runs.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import BadInput
from ..progress import ProgressFn
from ..targets import check_providers, profile_runnable, resolve_target

if TYPE_CHECKING:
    from ..model import Model
    from ..profiles import Profile

DEFAULT_ROUNDS = 30
RUNS_PER_BLOCK = 10  # timed runs of one model before the other's turn: 300 runs each by default
BLOCK_WARMUP = 2  # untimed runs at the start of each block (the model's caches after the other ran)
DEFAULT_WARMUP = 10
CONFIDENCE = 0.95
TINY_MS = 0.5  # a float p50 below this: per-operator overhead, not arithmetic, sets the time
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 int8 dot-product instructions
INT8_EPS = "openvino, qnn, tensorrt"  # providers with native int8 kernels for these models


@dataclass(frozen=True)
class SpeedOptions:
    """Where and how long `quantize_model` times the float model against the int8 model it wrote."""

    device: "str | Profile | None" = None  # a shipped profile's name or a loaded Profile [default: host]
    profile: Path | str | None = None  # a profile TOML file (instead of device)
    threads: int | None = None  # intra-op threads [default: the profile's, else onnxruntime's]
    rounds: int = DEFAULT_ROUNDS
    warmup: int = DEFAULT_WARMUP

    def checked(self) -> "SpeedOptions":
        """Profile loaded, counts and threads checked, the profile's providers present: before any long work."""
        from ..bench import check_runs

        prof, threads = resolve_target(self.device, self.profile, self.threads)
        rounds, warmup = check_runs(self.rounds, "rounds", 1), check_runs(self.warmup, "warmup", 0)
        check_providers(prof)
        return dataclasses.replace(self, device=prof, profile=None, threads=threads, rounds=rounds, warmup=warmup)

    def measure(self, float_model: "Model | Path | str", int8_model: "Model | Path | str",
                on_progress: ProgressFn | None = None) -> "SpeedReport":
        return measure_speedup(float_model, int8_model, device=self.device, profile=self.profile, threads=self.threads,
                               rounds=self.rounds, warmup=self.warmup, on_progress=on_progress)


@dataclass
class SpeedReport:
    """Float vs int8 latency on one device profile, from interleaved rounds."""

    device: str  # the profile's name
    host: str  # this machine's CPU, in words
    providers_fp32: list[str]  # providers that ran nodes
    providers_int8: list[str]
    threads: int | None
    rounds: int
    runs_per_block: int
    warmup: int
    fp32_p50_ms: float
    fp32_p90_ms: float
    int8_p50_ms: float
    int8_p90_ms: float
    ratio: float  # int8 time / float time: median over rounds of the per-round ratio
    ratio_ci95: tuple[float, float]
    other_load: float | None  # other processes' CPU load while timing, in cores
    hint: str | None = None  # what would make int8 pay (None when it pays)
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return 1.0 / self.ratio

    @property
    def pays(self) -> bool:
        """int8 is faster beyond the noise: the whole 95% interval of the ratio is below 1."""
        return self.ratio_ci95[1] < 1.0

    @property
    def verdict(self) -> str:
        """faster | slower | same (the interval holds 1)."""
        if self.pays:
            return "faster"
        return "slower" if self.ratio_ci95[0] > 1.0 else "same"

    def summary(self) -> str:
        """One line: "1.42x faster", "0.91x (slower)" or "1.02x (within noise)"."""
        tail = {"faster": " faster", "slower": " (slower)", "same": " (within noise)"}[self.verdict]
        return f"{self.speedup:.2f}x{tail}"

    def warning(self) -> str | None:
        """One line for a report when int8 does not pay, naming what would; None when it pays."""
        if self.pays:
            return None
        what = "slower than" if self.verdict == "slower" else "not measurably faster than"
        return f"int8 is {what} float on {self.device} ({self.speedup:.2f}x): {self.hint}"

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("fp32_p50_ms", "fp32_p90_ms", "int8_p50_ms", "int8_p90_ms", "ratio"):
            data[key] = round(data[key], 4)
        lo, hi = self.ratio_ci95
        data["ratio_ci95"] = [round(lo, 4), round(hi, 4)]
        data["speedup"] = round(self.speedup, 4)
        data["speedup_ci95"] = [round(1.0 / hi, 4), round(1.0 / lo, 4)]
        data["pays"] = self.pays
        data["verdict"] = self.verdict
        data["summary"] = self.summary()
        data["warning"] = self.warning()
        return data


def measure_speedup(
    float_model: "Model | Path | str",
    int8_model: "Model | Path | str",
    *,
    device: "str | Profile | None" = None,
    profile: Path | str | None = None,
    threads: int | None = None,
    rounds: int = DEFAULT_ROUNDS,
    warmup: int = DEFAULT_WARMUP,
    on_progress: ProgressFn | None = None,
) -> SpeedReport:
    """Time `float_model` and `int8_model` (handles or paths) interleaved on a device profile's providers.

    device: a shipped profile's name or a Profile (default: "host", this machine's CPU); profile: a TOML file
    instead. threads: intra-op threads (default: the profile's, else onnxruntime's). rounds: rounds of
    RUNS_PER_BLOCK timed runs of each model, after `warmup` untimed runs each.
    """
    from ..hostinfo import cpu_flags, cpu_summary
    from ..interleave import interleave
    from ..model import as_model
    from ..profiles import host_matches_profile
    from ..stats import median_ci

    opts = SpeedOptions(device, profile, threads, rounds, warmup).checked()
    prof = opts.device
    fp32, int8 = as_model(float_model), as_model(int8_model)
    if not int8.quantized:
        raise BadInput(f"{int8.name} is not quantized", "pass the int8 model second")
    a, a_info = profile_runnable("fp32", fp32, prof, opts.threads)
    b, b_info = profile_runnable("int8", int8, prof, opts.threads)
    timed = interleave([a, b], rounds=opts.rounds, runs=RUNS_PER_BLOCK, block_warmup=BLOCK_WARMUP,
                       warmup=opts.warmup, on_progress=on_progress, label="time float vs int8 (interleaved)")
    per_round = [float(np.median(r["int8"]) / np.median(r["fp32"])) for r in timed.rounds]
    lo, hi = median_ci(per_round, CONFIDENCE)
    notes = list(dict.fromkeys(a_info.notes + b_info.notes))
    matches, mismatch = host_matches_profile(prof)
    if not matches:
        notes.append(f"this host is not a {prof.name}: {'; '.join(mismatch)} (the speed-up does not transfer)")
    s32, s8 = timed.stats["fp32"], timed.stats["int8"]
    rep = SpeedReport(
        device=prof.name, host=cpu_summary(), providers_fp32=list(a_info.used), providers_int8=list(b_info.used),
        threads=opts.threads, rounds=len(timed.rounds), runs_per_block=timed.runs, warmup=timed.warmup,
        fp32_p50_ms=s32.p50_ms, fp32_p90_ms=s32.p90_ms, int8_p50_ms=s8.p50_ms, int8_p90_ms=s8.p90_ms,
        ratio=timed.paired_ratio("int8", "fp32"), ratio_ci95=(lo, hi), other_load=timed.other_load, notes=notes,
    )
    if not rep.pays:
        rep.hint = pay_hint(arch=fp32.meta.arch, settings=_settings_of(int8), fp32_p50_ms=rep.fp32_p50_ms,
                            providers=rep.providers_int8, flags=cpu_flags(),
                            machine=platform.machine())
    return rep


def pay_hint(arch: str, settings: dict[str, Any], fp32_p50_ms: float, providers: Sequence[str], flags: set[str],
             machine: str) -> str:
    """What would make int8 pay, for a model that it did not pay for (the first cause that applies), as a clause
    that follows "int8 is slower than float on DEVICE (0.91x): ".

    settings: the int8 model's quantization settings (QuantSettings.as_dict); providers: those that ran its
    nodes; flags: the CPU's feature flags (hostinfo.cpu_flags); machine: platform.machine().
    """
    cpu_only = all(p == "CPUExecutionProvider" for p in providers)
    # settings of this quantization that are measured to slow ONNX Runtime's int8 kernels come first
    if settings.get("weight_grid") == "exact":
        return "quantize with --weight-grid channel (zero-point-0 weights use ONNX Runtime's fast int8 kernels)"
    if cpu_only and settings.get("activations") == "int8" and settings.get("fmt") == "qdq":
        return "quantize with --activations uint8 (ONNX Runtime's CPU provider fuses no int8-activation Add)"
    if fp32_p50_ms < TINY_MS:
        return ("the model is too small for int8 to pay on this CPU (per-operator overhead dominates): int8 pays "
                f"from larger widths or resolutions, or on an int8 EP ({INT8_EPS})")
    if arch.startswith("v3"):
        return (f"run it on an EP with native int8 hard-swish ({INT8_EPS}); ONNX Runtime's CPU provider runs "
                "hard-swish in float between Quantize/DequantizeLinear, and keeping more nodes in float (--keep-float) "
                "measured slower")
    x86 = machine.lower() in ("x86_64", "amd64", "x64") or "avx2" in flags
    if cpu_only and x86 and not flags & set(VNNI_FLAGS):
        return (f"this CPU has no VNNI int8 instructions ({', '.join(VNNI_FLAGS)}): run int8 on a CPU that has "
                f"them or on an int8 EP ({INT8_EPS})"
                + ("" if settings.get("reduce_range") else "; for CPUs without, quantize with --reduce-range "
                   "(7-bit weights avoid their int16 overflow)"))
    if cpu_only and machine.lower() in ("aarch64", "arm64") and "asimddp" not in flags:
        return (f"this CPU has no int8 dot-product instructions (asimddp): run int8 on one that has or on an int8 "
                f"EP ({INT8_EPS})")
    return (f"run it on an EP with native int8 kernels ({INT8_EPS}), or keep in float (--keep-float) the layers "
            "that `mnetctl bench --op-profile` on both models shows slower in int8")


# ---------------------------------------------------------------------------------------------------------------


def _settings_of(model: "Model") -> dict[str, Any]:
    """The quantization settings recorded in an int8 model's metadata ({} for a model quantized elsewhere)."""
    import json

    try:
        data = json.loads(model.meta.extra.get("quant.settings", "{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
