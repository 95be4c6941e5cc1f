"""``fbank``: log mel filterbank frames, no pretrained weights (the SUPERB FBANK baseline)."""

from __future__ import annotations

import torch

from physioser.backbones.base import Backbone
from physioser.backbones.frontend import LogFbank


class FbankBackbone(Backbone):
    """forward(waveforms [B, S], lengths [B]) -> ([log-mel [B, S // 160 + 1, n_mels]], lengths').

    One hidden state: ln(mel power + 1e-6), 25 ms Hann window, 10 ms hop (100 Hz), centred
    frames. Any clip of at least one sample gives at least one frame.
    """

    name = "fbank"
    frame_rate = 100.0
    num_layers = 1
    min_samples = 1
    version = "1"

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.frontend = LogFbank(n_mels)
        self.dim = n_mels
        self.options = {"n_mels": n_mels}
        self.freeze()

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.frontend.frame_lengths(lengths)

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        feats, _ = self.frontend(waveforms, lengths)
        return [feats.transpose(1, 2)]
