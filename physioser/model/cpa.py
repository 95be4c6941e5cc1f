"""Contrastive Projection and Alignment (CPA) between the VAP branch and the backbone branch.

Projection heads g_v(z_v), g_s(z_s) map both utterance vectors into one space, where they are
L2-normalised and aligned with a symmetric InfoNCE loss (CLIP-style): the logit scale
``exp(log_scale)`` is learnable, starts at 1/0.07 and is clamped at 100. With
``supervised=True`` every pair of utterances with the same label counts as a positive
(SupCon-style multi-positive targets), not only the two views of one utterance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CPA", "info_nce"]


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between two batches of L2-normalised embeddings.

    a, b: [B, D] unit vectors (row i of ``a`` and row i of ``b`` are two views of one utterance).
    logit_scale: scalar (already exponentiated and clamped).
    labels: [B] int64 or None. Without labels the targets are the diagonal; with labels every
    column j with labels[j] == labels[i] is a positive of row i, weighted equally.
    Returns the mean of the a→b and b→a cross-entropies (a scalar).
    """
    logits = logit_scale * a @ b.t()  # [B, B]
    if labels is None:
        targets = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
    positives = (labels[:, None] == labels[None, :]).to(logits.dtype)
    targets = positives / positives.sum(dim=1, keepdim=True)  # symmetric matrix, rows sum to 1
    loss_ab = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_ba = -(targets * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_ab + loss_ba)


def _head(dim_in: int, dim_out: int, hidden: int | None) -> nn.Module:
    if not hidden:
        return nn.Linear(dim_in, dim_out)
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


class CPA(nn.Module):
    """Projection heads + learnable temperature + symmetric InfoNCE.

    Args:
        dim_v: size of z_v (VAP branch). dim_s: size of z_s (backbone branch).
        dim: size of the shared space. hidden: hidden width of the two-layer heads (0 = linear).
        temperature: initial temperature (logit scale starts at 1/temperature).
        max_logit_scale: clamp of the logit scale (CLIP uses 100).
        supervised: same-label pairs are positives too (needs labels in ``forward``).
    """

    def __init__(
        self,
        dim_v: int,
        dim_s: int,
        dim: int = 128,
        hidden: int | None = 0,
        temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        supervised: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"CPA temperature must be positive, got {temperature}")
        self.g_v = _head(dim_v, dim, hidden)
        self.g_s = _head(dim_s, dim, hidden)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.max_logit_scale = float(max_logit_scale)
        self.supervised = bool(supervised)

    def logit_scale(self) -> torch.Tensor:
        """exp(log_scale) clamped at ``max_logit_scale``."""
        return self.log_scale.exp().clamp(max=self.max_logit_scale)

    def embed(self, z_v: torch.Tensor, z_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project and L2-normalise: ([B, dim_v], [B, dim_s]) -> ([B, dim], [B, dim])."""
        return F.normalize(self.g_v(z_v), dim=-1), F.normalize(self.g_s(z_s), dim=-1)

    def forward(
        self, z_v: torch.Tensor, z_s: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """z_v [B, dim_v], z_s [B, dim_s], labels [B] -> (loss scalar, stats).

        stats: ``cpa_pos_cos`` (mean cosine of matched pairs), ``cpa_neg_cos`` (mean cosine of
        the other pairs), ``cpa_scale`` (the clamped logit scale) — detached, for logging.
        """
        a, b = self.embed(z_v, z_s)
        scale = self.logit_scale()
        loss = info_nce(a, b, scale, labels if self.supervised else None)
        with torch.no_grad():
            cos = a @ b.t()
            n = cos.shape[0]
            diag = cos.diagonal().mean()
            off = (cos.sum() - cos.diagonal().sum()) / max(n * n - n, 1)
        return loss, {"cpa_pos_cos": diag, "cpa_neg_cos": off, "cpa_scale": scale.detach()}
