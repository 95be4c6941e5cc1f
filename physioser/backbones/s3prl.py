"""Adapter for s3prl upstreams (``S3PRLUpstream(name, path_or_url=checkpoint)``).

s3prl needs a working torchaudio, which no PyPI release provides beside the CPU torch 2.13 of
this project, so this adapter is exercised only where s3prl imports (its test skips otherwise).
"""

from __future__ import annotations

from pathlib import Path

import torch

from physioser.backbones.base import Backbone, file_fingerprint, is_exporting


class S3PRLBackbone(Backbone):
    """forward(waveforms [B, S], lengths [B]) -> (L × [B, T', D], lengths') of an s3prl upstream."""

    version = "1"

    def __init__(self, upstream: torch.nn.Module, upstream_name: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.name = f"s3prl-{upstream_name}"
        self.num_layers = int(upstream.num_layers)
        self.dim = int(upstream.hidden_sizes[-1])
        self.frame_rate = 16000 / int(upstream.downsample_rates[-1])
        self.min_samples = 400
        self.options = {"upstream": upstream_name}

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long)
        if not is_exporting():
            self.check_lengths(lengths, waveforms.shape[1])
        with torch.no_grad():
            hidden, hidden_lengths = self.upstream(waveforms.float(), lengths)
        return list(hidden), hidden_lengths[-1].long()


def build_s3prl(checkpoint: str | Path | None, *, upstream: str) -> S3PRLBackbone:
    """``upstream``: an s3prl upstream name, e.g. ``wavlm_local``, ``hubert_local``, ``wav2vec2_local``."""
    try:
        from s3prl.nn import S3PRLUpstream
    except Exception as error:  # s3prl raises OSError/ImportError when torchaudio's library fails to load
        raise ImportError(f"the s3prl adapter needs s3prl with a working torchaudio: {error!r}") from error
    if checkpoint is not None and not Path(checkpoint).exists():
        raise FileNotFoundError(f"{checkpoint}: s3prl upstream checkpoint not found")
    model = S3PRLUpstream(upstream, path_or_url=str(checkpoint)) if checkpoint is not None else S3PRLUpstream(upstream)
    backbone = S3PRLBackbone(model, upstream)
    if checkpoint is not None and Path(checkpoint).is_file():
        backbone.checkpoint_id = file_fingerprint(str(checkpoint))
    return backbone.freeze()
