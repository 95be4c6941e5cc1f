"""Mask builders: boolean "may attend" masks (True = allowed) from ``arange`` comparisons.

Every builder takes the query/key lengths as ints or traced sizes and returns a bool tensor that
broadcasts to [B, H, N, M]; nothing here depends on data values, so the masks export to ONNX
with a dynamic sequence length (Range, Div, Mod, Less/Greater, And/Or).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _grid(n_q: int, n_k: int, like: Tensor) -> tuple[Tensor, Tensor]:
    i = torch.arange(n_q, device=like.device).view(1, 1, -1, 1)
    j = torch.arange(n_k, device=like.device).view(1, 1, 1, -1)
    return i, j


def neighborhood_mask(n_q: int, n_k: int, lengths: Tensor, kernel_size: int, dilation: int,
                      like: Tensor) -> Tensor:
    """NATTEN 1-D neighbourhood (non-causal) with its border semantics.

    Query i and key j are in the same dilation group iff i ≡ j (mod δ). Inside a group of
    L_g = ⌊L/δ⌋ + [i mod δ < L mod δ] positions, query index i' = ⌊i/δ⌋ attends to the k group
    positions starting at ``max(i'−⌊k/2⌋, 0) + [i'+⌊k/2⌋ ≥ L_g]·(L_g − i' − ⌊k/2⌋ − 1)``
    (NATTEN ``get_window_start``): the window shifts at the borders instead of being cut, so
    every query sees exactly k keys (when L_g ≥ k; shorter groups are seen whole).
    ``lengths`` [B|1, 1, 1, 1] is the valid length L per sample, so borders sit at each
    sample's own end, not at the padded end.
    """
    i, j = _grid(n_q, n_k, like)
    half = kernel_size // 2
    residue = i % dilation
    i_g = i // dilation
    group_len = lengths // dilation + (residue < lengths % dilation).long()
    start = torch.clamp(i_g - half, min=0) + (i_g + half >= group_len).long() * (group_len - i_g - half - 1)
    start = torch.clamp(start, min=0)
    j_g = j // dilation
    return (j % dilation == residue) & (j_g >= start) & (j_g < start + kernel_size)


def streaming_mask(n_q: int, n_k: int, sink: int, recent: int, like: Tensor) -> Tensor:
    """Bidirectional StreamingLLM/DuoAttention pattern: j < S (sink) or |i − j| < W (recent)."""
    i, j = _grid(n_q, n_k, like)
    return (j < sink) | ((i - j).abs() < recent)


def strided_mask(n_q: int, n_k: int, heads: int, block_size: int, local_blocks: int, vert_stride: int,
                 head_offset: int, dense_heads: int, like: Tensor) -> Tensor:
    """S2-Attention layout (dkernel ``get_sparse_attn_mask``), bidirectional form, [1, H, N, M].

    With I = ⌊i/b⌋, J = ⌊j/b⌋ and head sliding step s = max(1, ⌊v/H⌋), head h may attend iff
    |I − J| < n_local or (J + h·s + o) mod v = 0; the last ``dense_heads`` heads are dense.
    With v ≤ H the strided shards of the heads together cover every key block.
    """
    i, j = _grid(n_q, n_k, like)
    h = torch.arange(heads, device=like.device).view(1, -1, 1, 1)
    step = max(1, vert_stride // heads)
    block_i, block_j = i // block_size, j // block_size
    local = (block_i - block_j).abs() < local_blocks
    vertical = (block_j + h * step + head_offset) % vert_stride == 0
    dense = h >= heads - dense_heads
    return local | vertical | dense
