"""The VAP encoder (quaternion conv stack + temporal pooling) and the whole VAP branch.

quartet [B, 4, F, T] (one quaternion per cell, q = r + i i + j j + k k in ``config.axes`` order)
 -> 2-D quaternion convs over (band, time), each halving the bands (stride 2 in frequency)
 -> bands folded into channels, keeping the component-major quaternion layout
 -> 1-D quaternion convs over time (same length, 100 Hz) -> frames [B, T, D_v]
 -> attentive statistics pooling (one real weight per frame, so each quaternion is only scaled)
    or mean+std [-> with ``input_stats``, beside the quartet's own mean and std over time per
    component and band] -> quaternion linear -> z_v [B, D_v].
Every layer is followed by the quaternion-aware norm and a split GELU; frames past each item's
length are zeroed after every layer, so an item's output does not depend on the batch it is in.
With ``quaternion=False`` every quaternion layer is replaced by its real twin of equal width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from physioser.nn.quaternion import (
    QuaternionConv1d,
    QuaternionConv2d,
    QuaternionLinear,
    QuaternionNorm,
    conv_norm,
    real_twin,
)
from physioser.vap.config import VAPConfig
from physioser.nn.masking import valid_mask
from physioser.vap.frontend import VAPFrontEnd, quartet_statistics

__all__ = ["AttentiveStatsPooling", "VAPEncoder", "VAPBranch"]


def _layer(quaternion: bool, layer: nn.Module) -> nn.Module:
    return layer if quaternion else real_twin(layer)


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018) over valid frames.

    x [B, C, T], mask [B, T] bool -> [B, 2C] (weighted mean and std, component-major quaternion
    layout kept: [mean_r, std_r, mean_i, std_i, ...] blocks). ``attention_dim=0`` gives plain mean+std.
    """

    def __init__(self, channels: int, attention_dim: int) -> None:
        super().__init__()
        self.channels = channels
        # [mean | std] -> per component, the mean block then the std block (component-major layout)
        q = channels // 4
        self.register_buffer("interleave", torch.arange(2 * channels).view(2, 4, q).transpose(0, 1).flatten(), persistent=False)
        self.attention = (
            nn.Sequential(nn.Conv1d(channels, attention_dim, 1), nn.Tanh(), nn.Conv1d(attention_dim, 1, 1, bias=False))  # softmax ignores a shift
            if attention_dim > 0
            else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :]
        if self.attention is None:
            logits = torch.zeros_like(x[:, :1])
        else:
            logits = self.attention(x)
        # exp(-1e4) underflows to exactly 0, so padded frames get no weight (and an item has >= 1 frame)
        alpha = torch.softmax(torch.where(m, logits, torch.full_like(logits, -1e4)), dim=-1).transpose(1, 2)  # [B, T, 1]
        mean = (x @ alpha).squeeze(-1)
        var = ((x * x) @ alpha).squeeze(-1) - mean * mean
        std = torch.sqrt(var.clamp(min=0.0) + 1e-5)
        return torch.cat([mean, std], dim=1)[:, self.interleave]


class VAPEncoder(nn.Module):
    """quartet [B, 4, F, T], frame_lengths [B] -> (z_v [B, D_v], frames [B, T, D_v], frame_lengths)."""

    def __init__(self, config: VAPConfig | None = None) -> None:
        super().__init__()
        cfg = config or VAPConfig()
        self.config = cfg
        q = cfg.quaternion
        self.register_buffer(
            "component_mask",
            torch.tensor([1.0 if c in cfg.components else 0.0 for c in cfg.axes]).view(1, 4, 1, 1),
            persistent=False,
        )
        convs2d, norms2d = [], []
        channels, bands = 4, cfg.num_bands
        for out in cfg.channels_2d:
            convs2d.append(_layer(q, QuaternionConv2d(channels, out, 3, stride=(2, 1), padding=1)))
            norms2d.append(_layer(q, QuaternionNorm(out)))
            channels, bands = out, (bands - 1) // 2 + 1
        self.convs2d = nn.ModuleList(convs2d)
        self.norms2d = nn.ModuleList(norms2d)
        self.bands_out = bands
        channels = channels * bands
        convs1d, norms1d = [], []
        for out, k, d in zip(cfg.channels_1d + (cfg.dim,), cfg.kernels_1d + (1,), cfg.dilations_1d + (1,)):
            convs1d.append(_layer(q, QuaternionConv1d(channels, out, k, padding=d * (k // 2), dilation=d)))
            norms1d.append(_layer(q, QuaternionNorm(out)))
            channels = out
        self.convs1d = nn.ModuleList(convs1d)
        self.norms1d = nn.ModuleList(norms1d)
        self.pooling = AttentiveStatsPooling(cfg.dim, cfg.attention_dim if cfg.pooling_type == "attentive" else 0)
        self.input_stats = cfg.input_stats
        stats = 8 * cfg.num_bands if cfg.input_stats else 0  # 4 components x F bands x (mean, std)
        self.project = _layer(q, QuaternionLinear(2 * cfg.dim + stats, cfg.dim))
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = cfg.dim

    def forward(self, quartet: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = valid_mask(frame_lengths.to(quartet.device), quartet.shape[-1])
        m4 = mask[:, None, None, :].to(quartet.dtype)
        x = quartet * (self.component_mask * m4)
        for conv, norm in zip(self.convs2d, self.norms2d):
            x = self.dropout(F.gelu(conv_norm(conv, norm, x))) * m4
        x = x.flatten(1, 2)  # bands into channels: [B, 4 Cq, F', T] -> [B, 4 Cq F', T] stays component-major
        m3 = m4[:, :, 0]
        for conv, norm in zip(self.convs1d, self.norms1d):
            x = self.dropout(F.gelu(conv_norm(conv, norm, x))) * m3
        pooled = self.pooling(x, mask)
        if self.input_stats:
            # per component: its pooled block, then its F (mean, std) pairs (component-major layout kept)
            stats = quartet_statistics(quartet * self.component_mask, frame_lengths).flatten(2)  # [B, 4, 2F]
            pooled = torch.cat([pooled.view(pooled.shape[0], 4, -1), stats], dim=-1).flatten(1)
        z = self.project(pooled)
        return z, x.transpose(1, 2), frame_lengths


class VAPBranch(nn.Module):
    """Waveform -> (z_v [B, D_v], frames [B, T, D_v] at 100 Hz, frame_lengths [B]).

    ``forward = encode_quartet(*frontend(waveforms, lengths))``: the front end has no trainable
    parameters, so training may cache ``frontend`` outputs and call ``encode_quartet`` directly.
    """

    def __init__(self, config: VAPConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAPConfig()
        self.frontend = VAPFrontEnd(self.config)
        self.encoder = VAPEncoder(self.config)
        self.out_dim = self.encoder.out_dim

    def encode_quartet(self, quartet: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """quartet [B, 4, F, T] from ``frontend`` (possibly cached) -> (z_v, frames, frame_lengths)."""
        return self.encoder(quartet, frame_lengths)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encode_quartet(*self.frontend(waveforms, lengths))

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
