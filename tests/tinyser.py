"""A small real waveform SER model for the export/runtime tests (not the PhysioSER model).

log-mel via an STFT written as a fixed-basis conv1d -> two conv layers -> masked mean pool ->
linear. It follows the model contract: ``forward(waveform [B, S], lengths [B]) ->
dict(logits, probs, embedding)``, honours ``lengths`` (padding does not change a row's output)
and traces to ONNX.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

CLASSES = ["neutral", "happy", "angry", "sad"]


def _mel_matrix(n_fft: int, n_mels: int, sr: int) -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    fb = np.zeros((n_mels, len(bins)), dtype=np.float32)
    for m in range(n_mels):
        lo, c, hi = hz[m], hz[m + 1], hz[m + 2]
        fb[m] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0.0, None)
    return fb


class TinySER(nn.Module):
    def __init__(self, n_classes: int = 4, n_fft: int = 400, hop: int = 160, n_mels: int = 32, dim: int = 48, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.n_fft, self.hop = n_fft, hop
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)
        basis = torch.cat([torch.cos(2 * math.pi * k * n / n_fft), -torch.sin(2 * math.pi * k * n / n_fft)]) * window
        self.register_buffer("basis", basis.float()[:, None, :])
        self.register_buffer("mel", torch.from_numpy(_mel_matrix(n_fft, n_mels, 16000)))
        self.conv1 = nn.Conv1d(n_mels, dim, 5, padding=2)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.head = nn.Linear(dim, n_classes)
        self.class_names = list(CLASSES[:n_classes])

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        spec = nn.functional.conv1d(waveform[:, None, :], self.basis, stride=self.hop)  # [B, 2K, T]
        half = spec.shape[1] // 2
        power = spec[:, :half] ** 2 + spec[:, half:] ** 2
        logmel = torch.log(torch.matmul(self.mel, power) + 1e-6)  # [B, M, T]
        frames = torch.div(lengths - self.n_fft, self.hop, rounding_mode="floor") + 1
        mask = (torch.arange(logmel.shape[-1], device=waveform.device)[None, :] < frames[:, None]).to(logmel.dtype)
        h = torch.relu(self.conv1(logmel * mask[:, None, :])) * mask[:, None, :]
        h = torch.relu(self.conv2(h)) * mask[:, None, :]
        emb = h.sum(-1) / frames[:, None].clamp(min=1).to(h.dtype)
        logits = self.head(emb)
        return {"logits": logits, "probs": torch.softmax(logits, -1), "embedding": emb}


METADATA = {"class_names": CLASSES, "backbone": "tiny-logmel-cnn", "training_corpora": []}


def export_tiny(directory, name: str = "tiny.onnx", metadata: dict | None = None, **model_kwargs):
    """Export a TinySER to ``directory/name`` (``metadata`` added to :data:`METADATA`); returns (model, path)."""
    from pathlib import Path

    from physioser.export import export_onnx

    model = TinySER(**model_kwargs)
    path = export_onnx(model, Path(directory) / name, metadata={**METADATA, **(metadata or {})})
    return model, path


def bundle_tiny(directory, **metadata):
    """Export a TinySER as a model bundle ``directory/tiny`` (``metadata``: e.g. window_s, hop_s); returns its path."""
    from pathlib import Path

    from physioser.export import write_bundle

    _, graph = export_tiny(directory, metadata=metadata)
    return write_bundle(graph, Path(directory) / "tiny")


ADAPTIVE = ["backbone.name=fbank", "model.branches=[backbone]", "cpa.weight=0", "model.statistics=true", "model.head=mlp",
            "model.dim=32"]


def export_adaptive(path, offsets: bool = False):
    """Export a small speaker-adaptive PhysioSER (fbank statistics, MLP head) to ``path``; ``offsets``
    draws non-zero class offsets and a speaker balance of 0.6. Returns (model, path)."""
    from dataclasses import replace

    from physioser.export import export_onnx
    from physioser.model import build_backbone_for, build_model, load_config
    from physioser.model.directory import export_metadata

    torch.manual_seed(0)
    cfg = replace(load_config(None, ADAPTIVE), class_names=["neutral", "happy", "angry", "sad"])
    backbone = build_backbone_for(cfg)
    cfg = cfg.with_backbone_shape(backbone.num_layers, backbone.dim)
    model = build_model(cfg, backbone).eval()
    if offsets:
        with torch.no_grad():
            model.class_offsets.normal_()
            model.speaker_balance.fill_(0.6)
    return model, export_onnx(model, path, metadata=export_metadata(cfg))
