"""Checkpoints: safetensors weights + the resolved config YAML; resumable training state.

A model directory holds ``model.safetensors`` (trainable weights and buffers; the frozen backbone
is rebuilt from ``config.yaml``'s ``backbone`` section and never stored) and ``config.yaml`` (the
resolved experiment config plus ``class_names`` and the backbone's shape). A training run also
keeps ``last.safetensors`` + ``last.json``: model, optimiser and RNG state at the end of the last
finished epoch, from which ``physioser train --resume`` continues.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from physioser.backbones.ct2 import CheckpointError
from physioser.model.config import Config, ConfigError

__all__ = ["CheckpointError", "save_model", "load_state", "read_config", "save_train_state", "load_train_state"]

_FROZEN_PREFIX = "backbone."


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items() if not k.startswith(_FROZEN_PREFIX)}


def save_model(model: torch.nn.Module, config: Config, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.yaml`` into ``directory``; returns the weights path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file(_trainable_state(model), str(tmp), metadata={"format": "pt", "physioser": "model"})
    tmp.replace(path)
    (directory / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def read_config(directory: str | Path) -> Config:
    path = Path(directory) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: not a physioser model directory")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(cfg, dict) or "class_names" not in cfg:
        raise CheckpointError(f"{path} is not a physioser model config (no class_names)")
    for (section, key), value in LEGACY_VALUES.items():
        part = cfg.setdefault(section, {})
        if isinstance(part, dict):
            part.setdefault(key, value)
    try:
        return Config.from_dict(cfg)  # other keys it predates take today's defaults
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


LEGACY_VALUES = {("model", "projector"): "shared"}
"""Values of keys added after models were first saved, as those models were built (not today's default)."""


OPTIONAL_STATE = ("speaker_balance",)
"""Buffers a checkpoint saved before they existed may lack (they keep the model's initial value)."""


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from exc


def load_state(model: torch.nn.Module, path: str | Path) -> None:
    """Load trainable weights from a safetensors file into ``model`` (strict, frozen backbone excepted)."""
    path = Path(path)
    state = _load_tensors(path)
    expected = set(_trainable_state(model))
    missing, unexpected = expected - set(state) - set(OPTIONAL_STATE), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    own = model.state_dict()
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(f"checkpoint {path}: {key} has shape {tuple(value.shape)}, model expects {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)


def save_train_state(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    info: dict,
) -> None:
    """Write ``last.safetensors`` (model, optimiser tensors, RNG states) and ``last.json`` (``info``)."""
    directory = Path(directory)
    tensors = {f"model.{k}": v for k, v in _trainable_state(model).items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for name, value in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    device = next(model.parameters()).device
    if device.type == "cuda":  # dropout on the GPU draws from its own generator
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    tensors["rng.generator"] = generator.get_state()
    tmp = directory / "last.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt", "physioser": "train-state"})
    tmp.replace(directory / "last.safetensors")
    info = dict(info, param_groups=[dict(g) for g in opt["param_groups"]])
    (directory / "last.json").write_text(json.dumps(info, indent=1))


def load_train_state(
    directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> dict:
    """Restore what :func:`save_train_state` wrote; returns its ``info`` dict."""
    directory = Path(directory)
    info_path = directory / "last.json"
    if not info_path.is_file():
        raise CheckpointError(f"cannot resume: {info_path} does not exist")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"cannot resume: {info_path} is corrupt: {exc}") from exc
    tensors = _load_tensors(directory / "last.safetensors")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    own = _trainable_state(model)
    if set(model_state) != set(own):
        raise CheckpointError(f"cannot resume from {directory}: its model does not match this config")
    model.load_state_dict(model_state, strict=False)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": info.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    device = next(model.parameters()).device
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    generator.set_state(tensors["rng.generator"])
    return info


def load_model(directory: str | Path, *, with_backbone: bool = True):
    """Rebuild a trained :class:`physioser.model.PhysioSER` from ``directory`` (config.yaml + model.safetensors).

    ``with_backbone`` attaches the frozen backbone named in the config (needed by ``forward``)."""
    from physioser.model.factory import build_backbone_for, build_model

    cfg = read_config(directory)
    model = build_model(cfg, build_backbone_for(cfg) if with_backbone else None)
    load_state(model, Path(directory) / "model.safetensors")
    return model.eval()
