"""Pre-norm Transformer block over any attention variant."""

from __future__ import annotations

from torch import Tensor, nn

from physioser.nn.attention.core import Aux
from physioser.nn.attention.registry import build_attention


class TransformerBlock(nn.Module):
    """x ← x + Drop(Attn(LN(x))); x ← x + Drop(MLP(LN(x))), with the attention from the registry.

    Args:
        dim, heads: model width and attention heads.
        attention: variant name (see :data:`physioser.nn.attention.VARIANTS`).
        mlp_ratio: hidden width of the GELU MLP relative to ``dim``.
        dropout: residual and MLP dropout; ``attention_dropout``: dropout on attention weights.
        **options: passed to the attention variant (e.g. ``kernel_size=7`` for ``neighborhood``).

    ``forward(x [B, N, D], *, key_padding_mask=None [B, M] bool True = pad, context=None [B, M, D])
    -> (y [B, N, D], aux)``; ``context`` is handed to the attention as given (callers normalise it).
    """

    def __init__(self, dim: int, heads: int, attention: str = "mha", *, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attention_dropout: float = 0.0, **options) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = build_attention(attention, dim=dim, heads=heads, dropout=attention_dropout, **options)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, key_padding_mask: Tensor | None = None,
                context: Tensor | None = None) -> tuple[Tensor, Aux]:
        h, aux = self.attn(self.norm1(x), key_padding_mask=key_padding_mask, context=context)
        x = x + self.drop(h)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, aux
