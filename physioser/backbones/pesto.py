"""``pesto``: PESTO self-supervised pitch estimator (pesto-pitch, LGPL), as frame-level activations.

``import pesto`` fails here (its file-reading helpers import torchaudio, which does not load beside
torch 2.13), so the package's model modules (``pesto.data``, ``pesto.model``, which need only torch)
are imported without running its ``__init__``, and its shipped checkpoint is read with
``torch.load(weights_only=True)`` (allow-listing the omegaconf containers its hyper-parameters
are pickled as). The HCQT front end zero-pads the signal ends (pesto's default is reflection) so
that a clip's frames do not depend on batch padding and any clip length works.

Hidden states (1 × 384-d, ``1000 / step_ms`` Hz, default 100 Hz): the encoder's softmax
activations over pitch bins (1/3 semitone), aligned to absolute pitch as pesto does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from physioser.backbones._weights import load_matching, load_torch_weights, package_file
from physioser.backbones.base import Backbone, file_fingerprint, valid_mask
from physioser.backbones.ct2 import CheckpointError


def _pesto_modules():
    """(Preprocessor, Resnet1d, PESTO) from pesto-pitch, importable even where torchaudio is broken."""
    try:
        import pesto  # noqa: F401
    except (ImportError, OSError):
        spec = importlib.util.find_spec("pesto")
        if spec is None:
            raise CheckpointError("package pesto-pitch is not installed; it ships the PESTO weights") from None
        # register the package without executing its __init__ (which imports torchaudio)
        sys.modules["pesto"] = importlib.util.module_from_spec(spec)
    from pesto.data import Preprocessor
    from pesto.model import PESTO, Resnet1d

    return Preprocessor, Resnet1d, PESTO


def _omegaconf_globals() -> list:
    try:
        import typing

        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.dictconfig import DictConfig
        from omegaconf.listconfig import ListConfig
        from omegaconf.nodes import AnyNode
    except ImportError:
        return []
    import collections

    return [ListConfig, DictConfig, ContainerMetadata, Metadata, AnyNode, typing.Any, list, dict, int, collections.defaultdict]


def _plain(value):
    """omegaconf containers -> plain dict/list."""
    if hasattr(value, "items"):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(item) for item in value]
    return value


class PestoBackbone(Backbone):
    """forward(waveforms [B, S], lengths [B]) -> ([activations [B, S // hop + 1, 384]], lengths')."""

    name = "pesto"
    num_layers = 1
    min_samples = 1
    version = "1"

    def __init__(self, model: torch.nn.Module, step_ms: float) -> None:
        super().__init__()
        self.model = model
        self.hop = int(step_ms * 16000 / 1000 + 0.5)
        self.frame_rate = 16000 / self.hop
        self.dim = int(model.encoder.hparams["output_dim"])
        self.options = {"step_ms": step_ms}

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.hop, rounding_mode="floor") + 1

    def num_parameters(self) -> int:
        """Learned weights: the HCQT kernels (stored as conv weights by pesto) are fixed, not counted."""
        return sum(p.numel() for name, p in self.named_parameters() if ".preprocessor." not in f".{name}")

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        _, _, _, activations = self.model(waveforms, sr=16000, return_activations=True)
        frames = self.output_lengths(lengths)
        activations = activations[:, : int(frames.max())]
        return [activations * valid_mask(frames, activations.shape[1]).unsqueeze(-1).to(activations.dtype)]


def build_pesto(checkpoint: str | Path | None = None, *, step_ms: float = 10.0) -> PestoBackbone:
    path = Path(checkpoint) if checkpoint is not None else package_file("pesto", "weights", "mir-1k_g7.ckpt")
    blob = load_torch_weights(path, safe_globals=_omegaconf_globals())
    if not isinstance(blob, dict) or not {"hparams", "state_dict", "hcqt_params"} <= set(blob):
        raise CheckpointError(f"{path}: not a PESTO checkpoint (needs hparams, state_dict, hcqt_params)")
    Preprocessor, Resnet1d, PESTO = _pesto_modules()
    hparams, hcqt = _plain(blob["hparams"]), _plain(blob["hcqt_params"])
    model = PESTO(
        Resnet1d(**hparams["encoder"]),
        preprocessor=Preprocessor(hop_size=step_ms, sampling_rate=16000, **hcqt),
        crop_kwargs=hparams["pitch_shift"],
        reduction=hparams["reduction"],
    )
    state = dict(blob["state_dict"])
    for key, value in model.state_dict().items():  # CQT kernels are rebuilt, not stored
        if key.startswith("preprocessor.") and key not in state:
            state[key] = value
    load_matching(model, state, path)
    for cqt in model.preprocessor.hcqt_kernels.cqt_kernels:
        cqt.conv.padding_mode = "zeros"  # zero-padded signal ends instead of reflection
    backbone = PestoBackbone(model, step_ms)
    backbone.checkpoint_id = file_fingerprint(str(path))
    return backbone.freeze()
