"""Experiment configuration: defaults, YAML files in ``configs/`` and dotted command-line overrides.

A config is a plain nested dict. ``load_config(path, ["train.lr=3e-4", "model.fusion.attention=moh"])``
deep-merges the YAML file onto :data:`DEFAULTS`, then applies each override (values parsed as YAML,
so ``3e-4`` is a float, ``[vap]`` a list and ``null`` None). Unknown keys are an error, so a typo
never silently trains the default.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "ConfigError", "apply_overrides", "load_config", "merge", "dump_config"]


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


DEFAULTS: dict[str, Any] = {
    "name": "physioser",
    # classes: null = the corpus's own class set; or an explicit list of canonical names,
    # e.g. [neutral, happy, angry, sad] (the four-class cross-corpus set)
    "classes": None,
    "backbone": {"name": "whisper-tiny.en", "options": {}},
    "model": {
        # branches the model uses: any non-empty subset of [vap, backbone]
        "branches": ["vap", "backbone"],
        "dim": 128,  # width of branch tokens, fusion block and classifier input
        "featurizer": True,  # learned softmax layer weights (False: last layer only)
        "projector": "per_layer",  # shared (SUPERB: weighted layer sum -> projector) | per_layer (projections mixed by the layer weights)
        # statistics pooling: each backbone layer's mean and standard deviation over the frames
        # (False: segment means only); needs segments: 0
        "statistics": False,
        "input_dropout": 0.0,  # dropout on the standardised backbone statistics (statistics pooling)
        "segments": 0,  # pooled frame tokens per branch fed to the fusion block (0 = utterance vectors only; 4 overfits here)
        # physioser.vap config fields; these keep an epoch of RAVDESS to seconds on a 2-core CPU
        "vap": {"n_bands": 32, "channels_2d": [16, 16], "channels_1d": [64], "kernels_1d": [3], "dilations_1d": [1], "dim": 64},
        "head": "fusion",  # fusion | linear | mlp
        "fusion": {"attention": "mha", "heads": 4, "mlp_ratio": 1.0, "options": {}},
        "dropout": 0.3,
        # training only: each utterance's backbone tokens are zeroed with this probability, so the
        # head has to classify those from the VAP branch alone (needs both branches)
        "branch_dropout": 0.0,
        # none | gated: logits = (1 - g) * head logits + g * logits of a linear classifier on z_v,
        # with a per-utterance gate g = sigmoid(w . [z_v, z_s] + b) (needs both branches)
        "late_fusion": "none",
    },
    "cpa": {"weight": 0.1, "dim": 128, "hidden": 0, "temperature": 0.07, "max_logit_scale": 100.0, "supervised": False},
    "train": {
        "epochs": 30,
        "batch_size": 32,
        "lr": 1.0e-3,
        "weight_decay": 0.5,
        "warmup": 0.05,  # fraction of all steps
        "grad_clip": 1.0,
        "label_smoothing": 0.1,
        "class_weighting": False,
        "patience": 5,  # epochs without a better validation UA before stopping
        # false: no early stopping; the validation speakers join the training rows and the model of the
        # last epoch of the full schedule is kept (validation UA on speakers that share the training
        # sentences, as in sentence-tied corpora, picks epochs badly)
        "early_stopping": True,
        "seed": 0,
        "device": "auto",  # auto (CUDA when available, else CPU) | cpu | cuda | cuda:N; torchrun ranks use their own GPU
        "aux_weight": 1.0,  # weight of the attention variant's auxiliary losses
        # weight of an auxiliary cross-entropy on a linear classifier over the VAP utterance vector
        # alone (training only; with late_fusion=gated that classifier is the gated one)
        "vap_aux_weight": 0.0,
        "max_seconds": 12.0,  # utterances are cropped (centre) to this length when caching quartets
        "vap_crop_seconds": 2.0,  # training crops each VAP quartet to a random window this long (0 = off)
        "mixup": 0.0,  # mixup Beta(alpha, alpha) of the cached inputs and the loss (0 = off)
    },
    # unsupervised speaker adaptation (statistics pooling): a speaker's offset is the shrunk mean of
    # their emotion-compensated statistics (physioser.runtime.adaptation); training feeds each utterance
    # with probability train_prob the offset of k other random utterances of its speaker, k drawn from
    # train_k (0 = all of them), so one model serves the strict (zero offset) and adapted protocols
    "adapt": {"tau": 1.0, "train_prob": 0.0, "train_k": [5, 10, 20, 0]},
}


FREE_SECTIONS = ("model.vap", "backbone.options", "model.fusion.options")
"""Sections whose keys belong to another module's options (checked there, not here)."""


_ABSENT = object()


def _default(where: str) -> Any:
    node: Any = DEFAULTS
    for key in where.split("."):
        if not isinstance(node, dict) or key not in node:
            return _ABSENT
        node = node[key]
    return node


def _check_kind(where: str, value: Any) -> None:
    """A value set over an entry of DEFAULTS keeps its kind: section, flag, integer, finite number, text, list."""
    default = _default(where)
    if default is _ABSENT or default is None:
        return
    if isinstance(default, dict):
        ok, what = isinstance(value, dict), "a config section (a mapping)"
    elif isinstance(default, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        what = "a finite number"
    elif isinstance(default, str):
        ok, what = isinstance(value, str), "a string"
    elif isinstance(default, list):
        ok, what = isinstance(value, list), "a list"
    else:
        return
    if not ok:
        raise ConfigError(f"{where!r} is {what}, got {value!r}" if isinstance(default, dict) else f"{where} must be {what}, got {value!r}")


def merge(base: dict, update: dict, *, path: str = "", strict: bool = True) -> dict:
    """Deep-merge ``update`` onto a copy of ``base``; unknown keys raise outside :data:`FREE_SECTIONS`;
    a value over an entry of :data:`DEFAULTS` must keep its kind (see :func:`_check_kind`)."""
    out = copy.deepcopy(base)
    strict = strict and path not in FREE_SECTIONS
    for key, value in update.items():
        where = f"{path}.{key}" if path else str(key)
        if strict and key not in out:
            raise ConfigError(f"unknown config key {where!r} (known here: {sorted(out)})")
        _check_kind(where, value)
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, path=where, strict=strict)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(cfg: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to a copy of ``cfg``."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = out
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"override {item!r}: {'.'.join(keys[: i + 1])!r} is not a config section")
            node = node[key]
        last = keys[-1]
        if last not in node and ".".join(keys[:-1]) not in FREE_SECTIONS:
            raise ConfigError(f"override {item!r}: unknown key {dotted!r} (known here: {sorted(node)})")
        value = _parse_value(raw, item)
        try:
            _check_kind(".".join(keys), value)
        except ConfigError as exc:
            raise ConfigError(f"override {item!r}: {exc}") from None
        node[last] = value
    return out


def _parse_value(raw: str, item: str = "") -> Any:
    """YAML value, with YAML 1.1's dotless exponent floats (``3e-4``) read as floats too."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item or raw!r}: the value is not valid YAML: {exc}") from exc
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """DEFAULTS ← YAML file (optional) ← dotted overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
        try:
            cfg = merge(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    cfg = apply_overrides(cfg, overrides)
    try:
        _validate(cfg)
    except ConfigError as exc:
        if path is None:
            raise
        raise ConfigError(f"config file {path}{f' with overrides {list(overrides)}' if overrides else ''}: {exc}") from None
    return cfg


def _validate(cfg: dict) -> None:
    branches = cfg["model"]["branches"]
    if not branches or any(b not in ("vap", "backbone") for b in branches):
        raise ConfigError(f"model.branches must be a non-empty subset of [vap, backbone], got {branches}")
    if cfg["model"]["head"] not in ("fusion", "linear", "mlp"):
        raise ConfigError(f"model.head must be fusion, linear or mlp, got {cfg['model']['head']!r}")
    if cfg["cpa"]["weight"] and set(branches) != {"vap", "backbone"}:
        raise ConfigError("cpa.weight > 0 needs both branches (model.branches: [vap, backbone])")
    if cfg["model"]["projector"] not in ("shared", "per_layer"):
        raise ConfigError(f"model.projector must be shared or per_layer, got {cfg['model']['projector']!r}")
    device = cfg["train"]["device"]
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if cfg["model"]["statistics"] and (cfg["model"]["segments"] or "backbone" not in branches):
        raise ConfigError("model.statistics needs the backbone branch and model.segments: 0")
    if cfg["adapt"]["train_prob"] and not cfg["model"]["statistics"]:
        raise ConfigError("adapt.train_prob > 0 needs model.statistics: true (the adapted features are its statistics)")
    if float(cfg["adapt"]["tau"]) < 0 or not 0 <= float(cfg["adapt"]["train_prob"]) <= 1:
        raise ConfigError("adapt.tau must be >= 0 and adapt.train_prob in [0, 1]")
    both = set(branches) == {"vap", "backbone"}
    if cfg["model"]["late_fusion"] not in ("none", "gated"):
        raise ConfigError(f"model.late_fusion must be none or gated, got {cfg['model']['late_fusion']!r}")
    if not 0.0 <= float(cfg["model"]["branch_dropout"]) < 1.0:
        raise ConfigError(f"model.branch_dropout must be in [0, 1), got {cfg['model']['branch_dropout']}")
    if (cfg["model"]["branch_dropout"] or cfg["model"]["late_fusion"] != "none") and not both:
        raise ConfigError("model.branch_dropout and model.late_fusion need both branches (model.branches: [vap, backbone])")
    if cfg["train"]["vap_aux_weight"] and "vap" not in branches:
        raise ConfigError("train.vap_aux_weight > 0 needs the VAP branch")
    seg = cfg["model"]["segments"]
    if seg not in (0, 1, 2, 4):
        raise ConfigError(f"model.segments must be 0, 1, 2 or 4 (divisors of the cached 4 segments), got {seg}")


def dump_config(cfg: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
