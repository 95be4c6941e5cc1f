"""Masked segment pooling (ONNX-friendly: masks from ``arange`` comparisons).

An utterance of ``n`` valid frames is cut into ``K`` contiguous segments, segment ``k`` holding
frames ``[floor(k n / K), floor((k+1) n / K))``. Segment means of a linear map of the frames equal
the linear map of the segment means, which is what lets training read pooled backbone statistics
from the cache while the exported model pools frames: both give the same numbers.
Boundaries nest (K=4 boundaries contain the K=2 and K=1 ones), so 4 cached segments serve 2 and 1.
"""

from __future__ import annotations

import torch

from physioser.nn.masking import valid_mask

__all__ = ["segment_mean", "merge_segments", "masked_mean", "frame_statistics"]


def segment_mean(x: torch.Tensor, lengths: torch.Tensor, segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., B, T, D], lengths [B] -> (means [..., B, K, D], counts [B, K] float; empty segments mean 0)."""
    t = torch.arange(x.shape[-2], device=x.device)[None, None, :]  # [1, 1, T]
    k = torch.arange(segments, device=x.device)[None, :, None]  # [1, K, 1]
    n = lengths.to(x.device)[:, None, None]  # [B, 1, 1]
    start = torch.div(k * n, segments, rounding_mode="floor")
    stop = torch.div((k + 1) * n, segments, rounding_mode="floor")
    weights = ((t >= start) & (t < stop)).to(x.dtype)  # [B, K, T]
    counts = weights.sum(dim=-1)
    means = weights @ x / counts.clamp(min=1.0)[..., None]
    return means, counts


def merge_segments(means: torch.Tensor, counts: torch.Tensor, segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge [..., K, D] segment means (with counts [..., K]) into ``segments`` groups of adjacent ones."""
    k = means.shape[-2]
    if k % segments:
        raise ValueError(f"cannot merge {k} segments into {segments}")
    group = k // segments
    c = counts.reshape(*counts.shape[:-1], segments, group)
    s = (means * counts[..., None]).reshape(*means.shape[:-2], segments, group, means.shape[-1]).sum(-2)
    total = c.sum(-1)
    return s / total.clamp(min=1.0)[..., None], total


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x [B, T, D], lengths [B] -> mean over the valid frames [B, D]."""
    mask = valid_mask(lengths.to(x.device), x.shape[1]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)


def frame_statistics(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., B, T, D], lengths [B] -> (mean, standard deviation) over the valid frames, each
    [..., B, D] (population deviation, as the feature cache stores it)."""
    mask = valid_mask(lengths.to(x.device), x.shape[-2]).to(x.dtype)[..., None]
    count = mask.sum(-2).clamp(min=1.0)  # [B, 1]
    mean = (x * mask).sum(-2) / count
    var = (((x - mean.unsqueeze(-2)) * mask) ** 2).sum(-2) / count
    return mean, var.sqrt()
