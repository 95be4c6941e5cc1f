"""Name → attention-variant registry and the one constructor, :func:`build_attention`."""

from __future__ import annotations

import inspect

from torch import nn

from physioser.nn.attention.core import Attention
from physioser.nn.attention.variants import (AffineScaledAttention, DifferentialAttention, DynamicMaskAttention,
                                             GatedAttention, GroupedQueryAttention, MoHAttention,
                                             NeighborhoodAttention, SingleHeadAttention, SoftPAGAttention,
                                             StreamingAttention, StridedAttention)

VARIANTS: dict[str, type[Attention]] = {
    "mha": Attention,
    "gqa": GroupedQueryAttention,
    "moh": MoHAttention,
    "gated": GatedAttention,
    "affine": AffineScaledAttention,
    "single_head": SingleHeadAttention,
    "neighborhood": NeighborhoodAttention,
    "streaming": StreamingAttention,
    "strided": StridedAttention,
    "dynamic_mask": DynamicMaskAttention,
    "differential": DifferentialAttention,
    "softpag": SoftPAGAttention,
}


def _accepted(cls: type) -> set[str]:
    """Keyword options of ``cls``: its own, plus its base's while an ``__init__`` forwards ``**kw``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is nn.Module:
            break
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def build_attention(name: str, *, dim: int, heads: int, **options) -> Attention:
    """Build attention variant ``name`` of width ``dim`` with ``heads`` heads.

    Every module has ``forward(x [B, N, D], *, key_padding_mask=None [B, M] bool True = pad,
    context=None [B, M, D]) -> (y [B, N, D], aux: dict[str, Tensor])``; ``aux`` carries the
    weighted auxiliary losses (keys ``loss_*``) in training mode only. Each class's docstring
    lists its options and the options of its degenerate (= MHA) setting.
    """
    if name not in VARIANTS:
        raise ValueError(f"unknown attention variant {name!r}; choose one of {sorted(VARIANTS)}")
    cls = VARIANTS[name]
    unknown = set(options) - _accepted(cls)
    if unknown:
        raise ValueError(f"attention variant {name!r} does not take option(s) {sorted(unknown)}; "
                         f"it takes {sorted(_accepted(cls))}")
    return cls(dim, heads, **options)
