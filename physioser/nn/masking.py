"""The length mask every padded batch uses (backbones, VAP front end and encoder, pooling)."""

from __future__ import annotations

import torch


def valid_mask(lengths: torch.Tensor, size: int | torch.Tensor) -> torch.Tensor:
    """[B, size] bool, True on the first ``lengths[b]`` positions (an ``arange`` comparison: ONNX-friendly)."""
    positions = torch.arange(size, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)
