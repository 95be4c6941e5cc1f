"""The frozen-backbone interface shared by every pretrained encoder.

Every backbone maps a batch of 16 kHz mono waveforms to the hidden states of all its layers:

    forward(waveforms [B, S] float32, lengths [B] int64) -> (list of L tensors [B, T', D], lengths' [B])

Backbones are frozen: always in eval mode, parameters without gradients. Padded samples
(beyond ``lengths``) never change the valid frames of a batch item, so a batch gives the same
features as each clip alone (up to float rounding).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from torch import nn

from physioser.nn.masking import valid_mask


def is_exporting() -> bool:
    """True while tracing for ONNX/TorchScript: eager-only checks must stay out of the graph."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class Backbone(nn.Module):
    """Base class of frozen encoders.

    Subclasses set ``name`` (registry name), ``frame_rate`` (Hz), ``num_layers`` (number of hidden
    states returned, input layer included where the model has one), ``dim`` (their width),
    ``min_samples`` (shortest clip accepted; shorter clips raise ``ValueError``) and ``version``
    (bumped whenever the features a given checkpoint produces change), and implement ``encode``.
    """

    name: str = "backbone"
    frame_rate: float = 0.0
    num_layers: int = 0
    dim: int = 0
    min_samples: int = 1
    version: str = "1"

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, Any] = {}
        self.checkpoint_id: str = ""

    # -- frozen behaviour ------------------------------------------------------------------
    def freeze(self) -> "Backbone":
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)
        return self

    def train(self, mode: bool = True) -> "Backbone":
        """Backbones stay in eval mode whatever the caller asks (dropout/batch-norm frozen)."""
        return super().train(False)

    def num_parameters(self) -> int:
        """Learned weights (fixed signal-processing kernels excluded)."""
        return sum(p.numel() for p in self.parameters())

    # -- interface -------------------------------------------------------------------------
    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of valid frames per item for ``lengths`` valid samples."""
        raise NotImplementedError

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """waveforms [B, S] float32 16 kHz, lengths [B] int64 -> (L × [B, T', D], lengths' [B])."""
        if waveforms.dim() != 2:
            raise ValueError(f"{self.name}: waveforms must be [B, S], got shape {tuple(waveforms.shape)}")
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long, device=waveforms.device)
        if not is_exporting():
            self.check_lengths(lengths, waveforms.shape[1])
        with torch.no_grad():
            waveforms = waveforms * valid_mask(lengths, waveforms.shape[1]).to(waveforms.dtype)
            hidden = self.encode(waveforms.float(), lengths)
        return hidden, self.output_lengths(lengths)

    def check_lengths(self, lengths: torch.Tensor, max_samples: int) -> None:
        if lengths.dim() != 1:
            raise ValueError(f"{self.name}: lengths must be [B], got shape {tuple(lengths.shape)}")
        if bool((lengths > max_samples).any()):
            raise ValueError(f"{self.name}: a length exceeds the padded waveform size {max_samples}")
        short = int(lengths.min()) if lengths.numel() else self.min_samples
        if short < self.min_samples:
            raise ValueError(
                f"{self.name}: clip of {short} samples ({short / 16000:.4f} s) is shorter than the encoder's "
                f"receptive field of {self.min_samples} samples ({self.min_samples / 16000:.4f} s)"
            )

    # -- identity for the feature cache ----------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """Everything that determines the features: name, code version, options, checkpoint."""
        return {"name": self.name, "version": self.version, "options": self.options, "checkpoint": self.checkpoint_id}

    def spec_key(self) -> str:
        """Short stable hash of ``spec()``."""
        blob = json.dumps(self.spec(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str) -> str:
    """Cheap identity of a checkpoint file: size + sha256 of its first and last MiB."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > (1 << 20):
            handle.seek(max(size - (1 << 20), 0))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]
