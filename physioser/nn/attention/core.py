"""The shared SDPA core of the attention-variant backend.

One base module, :class:`Attention`, holds the Q/K/V/O projections and runs
``F.scaled_dot_product_attention``. Variants change it at three documented points:

* :meth:`Attention.project` — how Q, K, V are formed (GQA expands KV groups here);
* :meth:`Attention.build_mask` — a boolean "may attend" mask (True = allowed) built only from
  ``arange`` comparisons, so it traces to ONNX with a dynamic sequence length;
* :meth:`Attention.attend` — the SDPA call(s) and any output hook applied per head before
  ``out_proj`` (gates, mixing, interpolation).

Shapes: x [B, N, D]; context [B, M, D]; key_padding_mask [B, M] bool, True = padded key
(the keys are ``context`` when it is given, else ``x``); per-head tensors [B, H, N, d_h].
Auxiliary losses are returned in ``aux`` under keys that start with ``loss_`` and are already
multiplied by their weight (β, λ), so a trainer adds :func:`aux_loss` to its task loss.
They appear only in training mode; nothing is stored globally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Aux = dict[str, Tensor]


def aux_loss(aux: Aux) -> Tensor | float:
    """Sum of the weighted auxiliary losses in ``aux`` (keys starting with ``loss_``); 0.0 if none."""
    losses = [v for k, v in aux.items() if k.startswith("loss_")]
    return torch.stack(losses).sum() if losses else 0.0


def merge_aux(total: Aux, new: Aux) -> Aux:
    """Merge ``new`` into ``total`` (in place, returned); values under the same key are added."""
    for key, value in new.items():
        total[key] = total[key] + value if key in total else value
    return total


def valid_lengths(key_padding_mask: Tensor | None, batch: int, n: int, like: Tensor) -> Tensor:
    """Per-sample valid key count [B, 1, 1, 1] (trailing padding assumed), or N when no mask."""
    if key_padding_mask is None:
        return torch.full((1, 1, 1, 1), n, dtype=torch.long, device=like.device)
    return (~key_padding_mask).long().sum(-1).view(batch, 1, 1, 1)


def guard_empty_rows(mask: Tensor) -> Tensor:
    """Let rows that may attend to nothing attend to everything (only padded queries have
    such rows); avoids NaN from an all -inf softmax row leaking into later layers."""
    return mask | ~mask.any(-1, keepdim=True)


class Attention(nn.Module):
    """Plain multi-head attention (``mha``) and the base of every variant.

    Args:
        dim: model width D.
        heads: number of query heads H (D must be divisible by H).
        kv_heads: number of key/value heads G (GQA); defaults to H. H must be divisible by G.
        bias: whether the Q/K/V/O projections have biases.
        dropout: attention-weight dropout in training.
    """

    def __init__(self, dim: int, heads: int, *, kv_heads: int | None = None, bias: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if dim <= 0 or heads <= 0 or dim % heads:
            raise ValueError(f"attention: dim={dim} must be a positive multiple of heads={heads}")
        kv_heads = heads if kv_heads is None else kv_heads
        if kv_heads <= 0 or heads % kv_heads:
            raise ValueError(f"attention: heads={heads} must be a multiple of kv_heads={kv_heads}")
        self.dim, self.heads, self.kv_heads = dim, heads, kv_heads
        self.head_dim = dim // heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.k_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    # --- helpers -------------------------------------------------------------------------
    def split(self, t: Tensor, heads: int) -> Tensor:
        """[B, N, heads·d] -> [B, heads, N, d]."""
        b, n, _ = t.shape
        return t.reshape(b, n, heads, -1).transpose(1, 2)

    @staticmethod
    def merge(o: Tensor) -> Tensor:
        """[B, H, N, d] -> [B, N, H·d]."""
        b, h, n, d = o.shape
        return o.transpose(1, 2).reshape(b, n, h * d)

    def expand_kv(self, t: Tensor) -> Tensor:
        """[B, G, N, d] -> [B, H, N, d]: query head h reads KV group ⌊h·G/H⌋ (explicit, exports)."""
        if self.kv_heads == self.heads:
            return t
        b, g, n, d = t.shape
        rep = self.heads // g
        return t[:, :, None].expand(b, g, rep, n, d).reshape(b, g * rep, n, d)

    # --- the three variant hooks ---------------------------------------------------------
    def project(self, x: Tensor, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q = self.split(self.q_proj(x), self.heads)
        k = self.expand_kv(self.split(self.k_proj(src), self.kv_heads))
        v = self.expand_kv(self.split(self.v_proj(src), self.kv_heads))
        return q, k, v

    def build_mask(self, x: Tensor, src: Tensor, key_padding_mask: Tensor | None) -> Tensor | None:
        """Bool [B|1, H|1, N, M], True = allowed; None = attend everywhere."""
        if key_padding_mask is None:
            return None
        return (~key_padding_mask)[:, None, None, :]

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, *, x: Tensor,
               key_padding: Tensor | None, query_padding: Tensor | None, aux: Aux) -> Tensor:
        """Per-head output [B, H, N, d_h]. ``x`` is the query tokens' hidden state (gate/router
        input); ``query_padding`` is the key padding in self-attention, None with a context."""
        return self.core(q, k, v, mask)

    def core(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float | None = None) -> Tensor:
        """The one SDPA call every variant goes through (dropout on the weights in training)."""
        if mask is not None and mask.dtype == torch.bool:
            mask = guard_empty_rows(mask)
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=scale)

    def check_inputs(self, x: Tensor, key_padding_mask: Tensor | None, context: Tensor | None) -> Tensor:
        """Validate shapes and return the key/value source (``context`` or ``x``)."""
        src = x if context is None else context
        if torch.jit.is_tracing():  # shapes are symbolic while exporting; checked in eager runs
            return src
        name = type(self).__name__
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected x [B, N, {self.dim}], got {tuple(x.shape)}")
        if src.dim() != 3 or src.shape[0] != x.shape[0] or src.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected context [{x.shape[0]}, M, {self.dim}], got {tuple(src.shape)}")
        if key_padding_mask is not None and (key_padding_mask.dtype != torch.bool
                                             or tuple(key_padding_mask.shape) != tuple(src.shape[:2])):
            raise ValueError(f"{name}: key_padding_mask must be bool {tuple(src.shape[:2])}, "
                             f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
        return src

    # --- forward -------------------------------------------------------------------------
    def forward(self, x: Tensor, *, key_padding_mask: Tensor | None = None,
                context: Tensor | None = None) -> tuple[Tensor, Aux]:
        """x [B, N, D] -> (y [B, N, D], aux). ``key_padding_mask`` [B, M] (True = padded key)."""
        src = self.check_inputs(x, key_padding_mask, context)
        aux: Aux = {}
        q, k, v = self.project(x, src)
        mask = self.build_mask(x, src, key_padding_mask)
        query_padding = key_padding_mask if context is None else None
        o = self.attend(q, k, v, mask, x=x, key_padding=key_padding_mask, query_padding=query_padding, aux=aux)
        return self.out_proj(self.merge(o)), aux
