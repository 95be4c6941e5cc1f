"""Attention-variant backend shared by the fusion head and the research models.

``build_attention(name, *, dim, heads, **options)`` returns a module with
``forward(x, *, key_padding_mask=None, context=None) -> (y, aux)``; ``TransformerBlock`` is a
pre-norm block over any variant. See ``core.py`` (SDPA core and hooks), ``masks.py`` (mask
builders) and ``variants.py`` (formulations, options, degenerate settings).
"""

from physioser.nn.attention.block import TransformerBlock
from physioser.nn.attention.core import Attention, Aux, aux_loss, merge_aux
from physioser.nn.attention.masks import neighborhood_mask, streaming_mask, strided_mask
from physioser.nn.attention.registry import VARIANTS, build_attention

__all__ = ["VARIANTS", "Attention", "Aux", "TransformerBlock", "aux_loss", "build_attention", "merge_aux",
           "neighborhood_mask", "streaming_mask", "strided_mask"]
