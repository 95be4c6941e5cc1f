"""The shallow attention fusion head: one block of the attention backend over branch tokens.

Tokens: a learned [CLS] token, the utterance vectors of the branches (z_v, z_s) and, optionally,
K pooled segment tokens per branch. Each token gets a learned embedding of its slot (which branch,
which kind, which segment), one :class:`physioser.nn.attention.TransformerBlock` mixes them, and the
normalised [CLS] output is the utterance embedding fed to a linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FusionHead"]


class FusionHead(nn.Module):
    """tokens [B, N, D] (N fixed by the config) -> (logits [B, C], embedding [B, D], aux).

    Args:
        dim: token width D. num_tokens: N (without [CLS]). num_classes: C.
        attention: attention-variant name of the block (``physioser.nn.attention``).
        heads: attention heads. mlp_ratio: MLP width of the block / D. dropout: dropout rate.
        options: further keyword options of the attention variant.
    """

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        num_classes: int,
        *,
        attention: str = "mha",
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        options: dict | None = None,
    ) -> None:
        super().__init__()
        from physioser.nn.attention import TransformerBlock

        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.slots = nn.Parameter(torch.randn(1, num_tokens + 1, dim) * 0.02)
        self.block = TransformerBlock(dim, heads, attention=attention, mlp_ratio=mlp_ratio, dropout=dropout, **(options or {}))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.slots
        y, aux = self.block(x)
        embedding = self.norm(y[:, 0])
        return self.classifier(self.dropout(embedding)), embedding, aux
