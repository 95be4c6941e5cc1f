"""Research model: a frame-level Transformer SER classifier whose attention variant is a config value.

It reads frames — backbone hidden states (e.g. Whisper tiny.en, 384-d at 50 Hz) or fbank
(80-d at 100 Hz) — and classifies the utterance, so the evaluation can compare attention variants
on real SER accuracy with everything else fixed:

    frames [B, T, D] → zero padded frames → LayerNorm(D) → Linear (or strided Conv1d when
    ``subsample`` > 1) → + sinusoidal positions → ``layers`` × pre-norm TransformerBlock(attention)
    → LayerNorm → masked mean / attentive pooling → Dropout → Linear → logits [B, C]

``forward(features [B, T, D] float32, lengths [B] int64) -> (logits [B, C], aux)``: ``aux``
holds the attention variant's weighted auxiliary losses (``loss_*``, training only), averaged
over layers as MoH prescribes (β·mean_layers L_b); add ``physioser.nn.attention.aux_loss(aux)``
to the task loss. Everything traces to ONNX (opset 17) with dynamic batch and length.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physioser.nn.attention import VARIANTS, Aux, TransformerBlock, merge_aux
from physioser.nn.masking import valid_mask

__all__ = ["ResearchConfig", "ResearchSER", "sinusoidal_positions"]


@dataclass
class ResearchConfig:
    """Hyper-parameters of :class:`ResearchSER` (``attention_options`` go to the attention variant)."""

    input_dim: int
    num_classes: int
    dim: int = 128
    heads: int = 4
    layers: int = 2
    attention: str = "mha"
    attention_options: dict[str, Any] = field(default_factory=dict)
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    attention_dropout: float = 0.0
    subsample: int = 1  # frames merged by a strided convolution first (fbank at 100 Hz: 2 gives 50 Hz)
    positional: str = "sinusoidal"  # sinusoidal | none
    pooling: str = "mean"  # mean | attention

    def __post_init__(self) -> None:
        if self.attention not in VARIANTS:
            raise ValueError(f"ResearchConfig: unknown attention {self.attention!r}; choose one of {sorted(VARIANTS)}")
        if self.input_dim < 1 or self.num_classes < 2 or self.layers < 1 or self.subsample < 1:
            raise ValueError(f"ResearchConfig: need input_dim ≥ 1, num_classes ≥ 2, layers ≥ 1, subsample ≥ 1; "
                             f"got {self.input_dim}, {self.num_classes}, {self.layers}, {self.subsample}")
        if self.positional not in ("sinusoidal", "none") or self.pooling not in ("mean", "attention"):
            raise ValueError(f"ResearchConfig: positional must be sinusoidal|none and pooling mean|attention, "
                             f"got {self.positional!r}, {self.pooling!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ResearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"ResearchConfig: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sinusoidal_positions(n: int, dim: int, like: Tensor) -> Tensor:
    """[1, n, dim] sine/cosine positions (Vaswani et al.), computed from ``arange`` (exports)."""
    pos = torch.arange(n, device=like.device, dtype=like.dtype)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, device=like.device, dtype=like.dtype) * (-math.log(10000.0) / dim))
    angles = pos * inv[None, :]
    return torch.stack([angles.sin(), angles.cos()], -1).reshape(1, n, -1)[..., :dim]


class ResearchSER(nn.Module):
    """Frame-level Transformer SER classifier; see the module docstring for the data flow."""

    def __init__(self, config: ResearchConfig) -> None:
        super().__init__()
        self.config = c = config
        self.in_norm = nn.LayerNorm(c.input_dim)
        self.proj = (nn.Linear(c.input_dim, c.dim) if c.subsample == 1
                     else nn.Conv1d(c.input_dim, c.dim, kernel_size=c.subsample, stride=c.subsample))
        blocks = []
        for depth in range(c.layers):
            options = dict(c.attention_options)
            if c.attention == "differential":  # the paper's λ_init schedule follows the layer index
                options.setdefault("depth", depth)
            blocks.append(TransformerBlock(c.dim, c.heads, c.attention, mlp_ratio=c.mlp_ratio, dropout=c.dropout,
                                           attention_dropout=c.attention_dropout, **options))
        self.blocks = nn.ModuleList(blocks)
        self.out_norm = nn.LayerNorm(c.dim)
        self.pool_score = nn.Linear(c.dim, 1) if c.pooling == "attention" else None
        self.drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.dim, c.num_classes)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Lengths after subsampling: ⌈L / s⌉."""
        s = self.config.subsample
        return lengths if s == 1 else torch.div(lengths + (s - 1), s, rounding_mode="floor")

    def encode(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Aux]:
        """features [B, T, D], lengths [B] -> (frames [B, T', dim], padding [B, T'] bool True = pad, aux)."""
        c = self.config
        if features.dim() != 3 or features.shape[-1] != c.input_dim:
            raise ValueError(f"ResearchSER: expected features [B, T, {c.input_dim}], got {tuple(features.shape)}")
        if lengths.dim() != 1 or lengths.shape[0] != features.shape[0]:
            raise ValueError(f"ResearchSER: expected lengths [{features.shape[0]}], got {tuple(lengths.shape)}")
        lengths = lengths.to(features.device)
        valid = valid_mask(lengths, features.shape[1])[..., None]
        x = self.in_norm(features) * valid.to(features.dtype)  # padded frames are zeros from here on
        if c.subsample == 1:
            x = self.proj(x)
        else:
            pad = (-features.shape[1]) % c.subsample
            x = self.proj(F.pad(x, (0, 0, 0, pad)).transpose(1, 2)).transpose(1, 2)
        lengths = self.frame_lengths(lengths)
        padding = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
        if c.positional == "sinusoidal":
            x = x + sinusoidal_positions(x.shape[1], c.dim, x)
        aux: Aux = {}
        for block in self.blocks:
            x, block_aux = block(x, key_padding_mask=padding)
            merge_aux(aux, block_aux)
        aux = {k: v / len(self.blocks) if k.startswith("loss_") else v for k, v in aux.items()}
        return self.out_norm(x), padding, aux

    def pool(self, x: Tensor, padding: Tensor) -> Tensor:
        """Masked mean (or attentive) pooling over valid frames -> [B, dim]."""
        if self.pool_score is None:
            w = (~padding).to(x.dtype)[..., None]
            return (x * w).sum(1) / w.sum(1).clamp_min(1.0)
        scores = self.pool_score(x).masked_fill(padding[..., None], float("-inf"))
        return (torch.softmax(scores, 1) * x).sum(1)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Aux]:
        x, padding, aux = self.encode(features, lengths)
        return self.classifier(self.drop(self.pool(x, padding))), aux
