"""Device profiles: `profiles/*.toml`, data only, validated by a schema that rejects unknown keys.

A profile names a device's hardware, the execution providers to try (in order, with their options), the threads,
the newest opset/IR version its runtime loads, its default input resolution and the budgets a model must meet.
`status = "legacy"` (with `status_note` saying why) marks a device whose runtime support has ended; `profiles show`,
`doctor` and `bench` say so (`Profile.legacy_message`).
Errors name the file and the key: "profiles/x.toml: unknown key 'hardware.gpu'".
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import BadInput
from .metrics import ALL_METRICS, Metric
from .resources import resource_dir

PERCENTILES = ALL_METRICS  # the statistics a latency budget may name
OptionValue = Union[bool, int, float, str]
MAX_RUNS = 10**7  # the most iterations or warm-up runs a benchmark takes (8 bytes of samples each)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hardware(_Strict):
    """What the device is; `host_matches_profile` compares these with the machine bench runs on."""

    arch: Literal["any", "x86_64", "aarch64", "armv7l"] = "any"
    cores: Optional[int] = Field(default=None, ge=1, le=512, strict=True)
    cpu: str = ""
    model: Optional[str] = None  # text in the board's device-tree model, e.g. "Raspberry Pi 4"
    memory_gb: Optional[float] = Field(default=None, gt=0)
    accelerator: Literal["none", "gpu", "npu", "vpu"] = "none"
    accelerator_name: str = ""


class EPEntry(_Strict):
    """One execution provider of the preference list, with its provider options."""

    name: str
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from .runtime import EP_REGISTRY, resolve_ep

        try:
            return resolve_ep(value).name
        except BadInput:
            raise ValueError(f"unknown execution provider {value!r} (known: {', '.join(EP_REGISTRY)})") from None

    @model_validator(mode="after")
    def _options_known(self) -> "EPEntry":
        from .runtime import check_ep_options

        try:
            check_ep_options(self.name, self.options)
        except BadInput as exc:
            raise ValueError(exc.message.removeprefix(f"ep_options for {self.name}: ")
                             + (f" ({exc.hint})" if exc.hint else "")) from None
        return self


class Budgets(_Strict):
    latency_ms: Optional[float] = Field(default=None, gt=0)
    percentile: Metric = Metric.P90  # the statistic latency_ms applies to
    size_mb: Optional[float] = Field(default=None, gt=0)
    min_top1: Optional[float] = Field(default=None, ge=0, le=1)


class SessionSettings(_Strict):
    """onnxruntime session settings of the device (unset: onnxruntime's defaults); `mnetctl tune` writes them."""

    intra_op_spinning: Optional[bool] = Field(default=None, strict=True)  # False: pool threads never spin
    graph_optimization: Optional[Literal["disabled", "basic", "extended", "all"]] = None

    def config(self) -> dict[str, str]:
        """The session config entries these settings stand for."""
        from .runtime import CFG_ALLOW_SPINNING

        return {} if self.intra_op_spinning is None else {CFG_ALLOW_SPINNING: "1" if self.intra_op_spinning else "0"}


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str
    hardware: Hardware = Field(default_factory=Hardware)
    runtime: str = ""  # which runtime build the device runs, in words (an engine name alone also sets `engine`)
    # the runtime mnetctl runs the model on (mnetctl.engines); eps apply to onnxruntime only
    engine: Literal["onnxruntime", "litert", "openvino"] = "onnxruntime"
    engine_options: dict[str, OptionValue] = Field(default_factory=dict)
    # the Python environment its benches run in: a name made by `mnetctl env create`, or a path (mnetctl.envs)
    env: Optional[str] = Field(default=None, min_length=1)
    eps: list[EPEntry] = Field(min_length=1)
    # integers are strict: `threads = true` or `iterations = 1e12` is refused, not read as 1 or as a float
    threads: Optional[int] = Field(default=None, ge=1, le=256, strict=True)
    max_opset: Optional[int] = Field(default=None, ge=1, strict=True)
    max_ir: Optional[int] = Field(default=None, ge=3, strict=True)
    resolution: int = Field(default=224, ge=32, le=1024, strict=True)
    batch: int = Field(default=1, ge=1, strict=True)
    warmup: Optional[int] = Field(default=None, ge=0, le=MAX_RUNS, strict=True)
    iterations: Optional[int] = Field(default=None, ge=1, le=MAX_RUNS, strict=True)
    session: SessionSettings = Field(default_factory=SessionSettings)
    budgets: Budgets = Field(default_factory=Budgets)
    notes: str = ""
    status: Literal["current", "legacy"] = "current"  # legacy: the device's runtime support has ended
    status_note: str = ""  # why, and the last release that drives it

    @model_validator(mode="after")
    def _legacy_says_why(self) -> "Profile":
        if self.status == "legacy" and not self.status_note.strip():
            raise ValueError("status = 'legacy' needs status_note saying why (e.g. the last runtime release that drives it)")
        return self

    @property
    def legacy(self) -> bool:
        return self.status == "legacy"

    @property
    def legacy_message(self) -> str | None:
        """One line for users of a legacy profile; None for a current one."""
        return f"{self.name} is a legacy device profile: {self.status_note.strip()}" if self.legacy else None

    _source: Optional[Path] = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _engine_from_runtime(cls, data: Any) -> Any:
        """`runtime = "litert"` (an engine's name alone, as words) names the engine; a profile for another engine
        than onnxruntime needs no `eps` (the CPU provider is recorded)."""
        if isinstance(data, dict):
            data = dict(data)
            words = str(data.get("runtime", "")).strip().lower()
            if "engine" not in data and words in ("litert", "openvino"):
                data["engine"] = words
            if "eps" not in data and data.get("engine", "onnxruntime") != "onnxruntime":
                data["eps"] = [{"name": "cpu"}]
        return data

    @model_validator(mode="after")
    def _engine_options_known(self) -> "Profile":
        from .engines import check_engine_options

        try:
            check_engine_options(self.engine, self.engine_options)
        except BadInput as exc:
            raise ValueError(exc.message) from None
        return self

    @property
    def source(self) -> Optional[Path]:
        return self._source

    @property
    def ep_names(self) -> list[str]:
        return [e.name for e in self.eps]

    def ep_requests(self):
        from .runtime import EPRequest

        return [EPRequest(e.name, dict(e.options)) for e in self.eps]

    def latency_budget(self) -> tuple[float, Metric] | None:
        """(budget in ms, the statistic it applies to), or None when the profile sets no latency budget."""
        b = self.budgets
        return None if b.latency_ms is None else (float(b.latency_ms), b.percentile)

    def summary(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["source"] = str(self._source) if self._source else None
        return data


def profiles_dir() -> Path:
    """Shipped profiles (see mnetctl.resources); MNETCTL_PROFILES_DIR overrides them."""
    return resource_dir("profiles")


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def _describe(path: Path, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = _key_path(tuple(err.get("loc", ())))
        if err.get("type") == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        elif err.get("type") == "missing":
            problems.append(f"missing key '{key}'")
        else:
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            problems.append(f"key '{key}': {msg}")
    return f"{path}: " + "; ".join(problems)


def parse_profile(path: Path | str) -> Profile:
    """Read and validate one TOML profile file."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"profile {path} is a directory, not a TOML file", "pass --profile PATH/TO/device.toml")
    if not path.is_file():
        if path.exists():  # a device, FIFO or socket: never read (it could block or never end)
            raise BadInput(f"profile file {path} is not a regular file", "pass a TOML file")
        raise BadInput(f"profile file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the profile ({exc})") from None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise BadInput(_describe(path, exc), "see docs/devices.md for the profile keys") from None
    profile._source = path
    return profile


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (`jetson-nano`) or a user's TOML file by path (a `Path` is always a file)."""
    text = str(name_or_path)
    candidate = Path(text)
    if isinstance(name_or_path, Path) or candidate.suffix == ".toml" or os.sep in text or candidate.is_file():
        return parse_profile(candidate)
    path = profiles_dir() / f"{text}.toml"
    if not path.is_file():
        known = ", ".join(p.name for p in list_profiles()) or "none"
        raise BadInput(f"unknown device profile {text!r}", f"shipped profiles: {known}; or pass --profile PATH to a TOML file")
    profile = parse_profile(path)
    if profile.name != text:
        raise BadInput(f"{path}: key 'name' is {profile.name!r} but the file is named {text}.toml")
    return profile


def as_profile(profile: Profile | str | Path | None) -> Profile | None:
    """A Profile as is; a name or path loaded (`load_profile`); None stays None."""
    if profile is None or isinstance(profile, Profile):
        return profile
    return load_profile(profile)


def list_profiles() -> list[Profile]:
    """Every shipped profile, sorted by name (a broken one raises BadInput naming its file)."""
    folder = profiles_dir()
    if not folder.is_dir():
        return []
    return [parse_profile(p) for p in sorted(folder.glob("*.toml"))]


# ---------------------------------------------------------------------------------------------------------------
# Does this host look like the profile's device?

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64", "armv7": "armv7l"}


def normalize_arch(machine: str) -> str:
    m = machine.lower()
    return _ARCH_ALIASES.get(m, m)


def host_matches_profile(profile: Profile, host: dict[str, Any] | None = None) -> tuple[bool, list[str]]:
    """(matches, reasons it does not): compares arch, core count, board model and accelerator with this host."""
    if host is None:
        from .hostinfo import host_info

        host = host_info()
    hw = profile.hardware
    reasons: list[str] = []
    host_arch = normalize_arch(str(host.get("arch", "")))
    if hw.arch != "any" and hw.arch != host_arch:
        reasons.append(f"arch {host_arch} != {hw.arch}")
    if hw.cores is not None and host.get("cores_logical") not in (None, hw.cores):
        reasons.append(f"{host.get('cores_logical')} CPU cores != {hw.cores}")
    if hw.model:
        board = str(host.get("board") or "")
        if hw.model.lower() not in board.lower():
            reasons.append(f"board {board or 'unknown'!r} is not {hw.model!r}")
    if hw.accelerator != "none":
        accels = set(host.get("accelerators") or [])
        if hw.accelerator not in accels:
            name = hw.accelerator_name or hw.accelerator
            reasons.append(f"no {hw.accelerator} ({name}) found on this host")
    return (not reasons), reasons
