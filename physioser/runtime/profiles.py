"""Hardware profiles: deployment settings as data (``physioser/hardware/*.yaml``), validated when loaded.

A profile names the onnxruntime execution providers (in priority order, with their options),
the thread counts, the graph precision, the Streamer's window/hop/batch/VAD and the latency
budget the deployment is expected to meet. ``load_profile("cpu")`` reads ``physioser/hardware/cpu.yaml``
from the installed set; ``load_profile(path, allow_path=True)`` reads another file, which only
the operator may ask for (``--allow-profile-path`` on the command line, the ROS node's
``allow_profile_paths`` launch parameter). Every mistake raises :class:`ProfileError` naming the
file and the field, never quoting the file's content (a profile named by a remote peer could be
any file on the robot).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from physioser.paths import DEFAULT_BACKBONE, PACKAGE_DIR, cache_dir
from physioser.runtime.gate import GATES

PRECISIONS = ("fp32", "fp16", "int8")
# Execution providers onnxruntime knows by name (a profile naming another is a typo).
KNOWN_PROVIDERS = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "CoreMLExecutionProvider",
    "QNNExecutionProvider",
    "XnnpackExecutionProvider",
    "ArmNNExecutionProvider",
    "ACLExecutionProvider",
    "DmlExecutionProvider",
)
MAX_PROFILE_BYTES = 64 * 1024
HARDWARE_DIR = Path(os.environ.get("PHYSIOSER_HARDWARE") or PACKAGE_DIR / "hardware")


class ProfileError(ValueError):
    """A hardware profile is missing, unreadable or invalid (the message names file and field)."""


@dataclass(frozen=True)
class ProviderSpec:
    """One onnxruntime execution provider and its provider options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HardwareProfile:
    """A validated deployment profile (see ``physioser/hardware/cpu.yaml`` for the file format)."""

    name: str
    description: str = ""
    providers: tuple[ProviderSpec, ...] = (ProviderSpec("CPUExecutionProvider"),)
    intra_op_threads: int = 2
    inter_op_threads: int = 1
    precision: str = "fp32"
    window_s: float | None = None  # None: the model's (its bundle metadata)
    hop_s: float | None = None
    batch: int = 4
    vad: str = "auto"
    latency_budget_ms: float = 50.0
    backbone: str = DEFAULT_BACKBONE  # the encoder measured best for this hardware (docs/backbones.md)
    source: Path | None = None

    @property
    def provider_names(self) -> list[str]:
        return [p.name for p in self.providers]


DEFAULT_PROFILE = HardwareProfile(name="default-cpu", description="built-in CPU profile (2 threads)")

_TOP_KEYS = {"name", "description", "precision", "threads", "providers", "stream", "latency_budget_ms", "backbone"}
_THREAD_KEYS = {"intra_op", "inter_op"}
_STREAM_KEYS = {"window_s", "hop_s", "batch", "vad"}


def _expand(value: Any) -> Any:
    """Expand ``${PHYSIOSER_CACHE}`` (default ~/.cache/physioser), other ``${VAR}`` and ``~`` in options."""
    if not isinstance(value, str):
        return value
    return os.path.expanduser(os.path.expandvars(value.replace("${PHYSIOSER_CACHE}", str(cache_dir()))))


def _kind(value: Any) -> str:
    """What a value is, without quoting it (errors never echo a file's content)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a non-finite number"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "empty"}.get(type(value), type(value).__name__)


def _number(where: str, value: Any, *, kind: type, low: float, high: float | None = None, low_open: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)) \
            or (isinstance(value, float) and not math.isfinite(value)):
        raise ProfileError(f"{where} must be {'an integer' if kind is int else 'a finite number'}, got {_kind(value)}")
    if (value <= low if low_open else value < low) or (high is not None and value > high):
        bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ProfileError(f"{where} must be {bound}")
    return kind(value)


def _check_keys(where: str, data: dict, allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ProfileError(f"{where}: {len(unknown)} unknown key(s); allowed: {sorted(allowed)}")


def _one_of(where: str, value: Any, choices) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ProfileError(f"{where} must be one of {list(choices)}, got {_kind(value)} that is not")


def parse_profile(data: Any, source: str | Path = "<profile>") -> HardwareProfile:
    """Validate a profile given as a mapping (as read from YAML) and build it."""
    src = str(source)
    if not isinstance(data, dict):
        raise ProfileError(f"{src}: a profile must be a YAML mapping, got {_kind(data)}")
    _check_keys(src, data, _TOP_KEYS)
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ProfileError(f"{src}: 'name' is required and must be a non-empty string")
    precision = data.get("precision", "fp32")
    _one_of(f"{src}: precision", precision, PRECISIONS)

    threads = data.get("threads", {}) or {}
    if not isinstance(threads, dict):
        raise ProfileError(f"{src}: 'threads' must be a mapping with intra_op / inter_op")
    _check_keys(f"{src}: threads", threads, _THREAD_KEYS)
    intra = _number(f"{src}: threads.intra_op", threads.get("intra_op", 2), kind=int, low=1, high=256)
    inter = _number(f"{src}: threads.inter_op", threads.get("inter_op", 1), kind=int, low=1, high=256)

    raw_providers = data.get("providers")
    if not isinstance(raw_providers, list) or not raw_providers:
        raise ProfileError(f"{src}: 'providers' must be a non-empty list of {{name, options}}")
    providers = []
    for i, item in enumerate(raw_providers):
        where = f"{src}: providers[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise ProfileError(f"{where} must be a mapping with 'name' and optional 'options'")
        _check_keys(where, item, {"name", "options"})
        name = item.get("name")
        if not isinstance(name, str) or name not in KNOWN_PROVIDERS:
            raise ProfileError(f"{where}: not a known execution provider; known: {list(KNOWN_PROVIDERS)}")
        options = item.get("options") or {}
        if not isinstance(options, dict):
            raise ProfileError(f"{where}.options must be a mapping, got {_kind(options)}")
        for key, val in options.items():
            if not isinstance(key, str) or not isinstance(val, (str, int, float, bool)):
                raise ProfileError(f"{where}.options: each option must be a name with a string, number or boolean value")
        providers.append(ProviderSpec(name, {k: _expand(v) for k, v in options.items()}))
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise ProfileError(f"{src}: providers listed twice: {names}")

    stream = data.get("stream", {}) or {}
    if not isinstance(stream, dict):
        raise ProfileError(f"{src}: 'stream' must be a mapping with window_s / hop_s / batch / vad")
    _check_keys(f"{src}: stream", stream, _STREAM_KEYS)
    window_s = hop_s = None
    if "window_s" in stream:
        window_s = _number(f"{src}: stream.window_s", stream["window_s"], kind=float, low=0.1, high=60.0)
    if "hop_s" in stream:
        hop_s = _number(f"{src}: stream.hop_s", stream["hop_s"], kind=float, low=0.0, low_open=True)
    if window_s is not None and hop_s is not None and hop_s > window_s:
        raise ProfileError(f"{src}: stream.hop_s must not exceed stream.window_s")
    batch = _number(f"{src}: stream.batch", stream.get("batch", 4), kind=int, low=1, high=1024)
    vad = stream.get("vad", "auto")
    _one_of(f"{src}: stream.vad", vad, GATES)
    budget = _number(f"{src}: latency_budget_ms", data.get("latency_budget_ms", 50.0), kind=float, low=0.0, low_open=True)
    backbone = data.get("backbone", DEFAULT_BACKBONE)
    if not isinstance(backbone, str) or not backbone.strip():
        raise ProfileError(f"{src}: 'backbone' must be a non-empty string (a backbone name), got {_kind(backbone)}")
    return HardwareProfile(
        name=data["name"].strip(),
        description=str(data.get("description", "")),
        providers=tuple(providers),
        intra_op_threads=intra,
        inter_op_threads=inter,
        precision=precision,
        window_s=window_s,
        hop_s=hop_s,
        batch=batch,
        vad=vad,
        latency_budget_ms=budget,
        backbone=backbone.strip(),
        source=Path(source) if not src.startswith("<") else None,
    )


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``physioser/hardware/``."""
    return sorted(p.stem for p in HARDWARE_DIR.glob("*.yaml")) if HARDWARE_DIR.is_dir() else []


def load_profile(name_or_path: str | Path | HardwareProfile | None, *, allow_path: bool = False) -> HardwareProfile:
    """Load and validate a profile: the name of one in ``physioser/hardware/`` (see :func:`available_profiles`),
    or, with ``allow_path`` (the operator's choice at launch), a path to a YAML file.

    ``None`` gives the built-in CPU profile; a :class:`HardwareProfile` is returned as is.
    """
    if name_or_path is None:
        return DEFAULT_PROFILE
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    text = str(name_or_path)
    if text in available_profiles():
        return _read_profile(HARDWARE_DIR / f"{text}.yaml")
    if not allow_path:
        raise ProfileError(
            f"hardware profile {text!r} is not one of the installed profiles {available_profiles()}; a path to a "
            "profile file is read only where the operator allows it at launch (--allow-profile-path on the "
            "command line, allow_profile_paths:=true for the ROS node)"
        )
    path = Path(text)
    if path.is_dir():
        raise ProfileError(f"hardware profile {path} is a directory, not a YAML file")
    if not path.is_file():
        raise ProfileError(f"hardware profile file {path} does not exist (or is not a regular file)")
    return _read_profile(path)


def _read_profile(path: Path) -> HardwareProfile:
    if path.stat().st_size > MAX_PROFILE_BYTES:
        raise ProfileError(f"{path}: {path.stat().st_size} bytes is too large for a profile (at most {MAX_PROFILE_BYTES})")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (first bad byte at offset {exc.start})"
    except yaml.YAMLError as exc:  # its message quotes the line: say only where
        mark = getattr(exc, "problem_mark", None)
        problem = "not valid YAML" + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "")
    else:
        return parse_profile(data, path)
    raise ProfileError(f"{path}: {problem}")  # raised outside the handler: no chained exception quotes the file
