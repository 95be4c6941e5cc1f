"""``resemblyzer``: the GE2E speaker encoder of the resemblyzer package (Apache-2.0), frame level.

The package itself does not import here (webrtcvad needs pkg_resources), so its shipped
``pretrained.pt`` is read with ``torch.load(weights_only=True)`` into this module: 40-band mel
power spectrogram (25 ms / 10 ms, no log, as resemblyzer computes it) → 3 stacked LSTM layers
(256) → linear + ReLU (256). The waveform is scaled to -30 dBFS first, as resemblyzer's
``preprocess_wav`` does (its VAD trimming is not applied: frames must stay aligned with time).

Hidden states (4 × 256-d, 100 Hz): the output of each LSTM layer and the ReLU projection.
:class:`DVector` is the speaker encoder's d-vector of a clip: the projection at its last valid frame.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from physioser.backbones._weights import load_matching, load_torch_weights, package_file
from physioser.backbones.base import Backbone, file_fingerprint, valid_mask
from physioser.backbones.ct2 import CheckpointError
from physioser.backbones.frontend import PowerMel

TARGET_DBFS = -30.0


class ResemblyzerBackbone(Backbone):
    """forward(waveforms [B, S], lengths [B]) -> (4 × [B, S // 160 + 1, 256], lengths')."""

    name = "resemblyzer"
    frame_rate = 100.0
    num_layers = 4
    dim = 256
    min_samples = 1
    version = "1"

    def __init__(self, n_mels: int = 40, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.mel = PowerMel(n_fft=400, hop=160, n_mels=n_mels, pad_mode="constant", extra_frames=1)
        self.lstms = nn.ModuleList([nn.LSTM(n_mels if i == 0 else hidden, hidden, batch_first=True) for i in range(layers)])
        self.linear = nn.Linear(hidden, hidden)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.mel.frame_lengths(lengths)

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        mask = valid_mask(lengths, waveforms.shape[1]).to(waveforms.dtype)
        rms = torch.sqrt((waveforms**2 * mask).sum(1) / lengths.clamp(min=1).to(waveforms.dtype)).clamp(min=1e-8)
        scaled = waveforms * (10 ** (TARGET_DBFS / 20) / rms).unsqueeze(1)
        mel, frames = self.mel(scaled, lengths)
        x = mel.transpose(1, 2)
        keep = valid_mask(frames, x.shape[1]).unsqueeze(-1).to(x.dtype)
        hidden = []
        for lstm in self.lstms:
            x, _ = lstm(x)  # unidirectional: padding after a clip never reaches its valid frames
            hidden.append(x * keep)
        hidden.append(torch.relu(self.linear(x)) * keep)
        return hidden


class DVector(nn.Module):
    """forward(waveforms [B, S], lengths [B]) -> d-vectors [B, 256]: the GE2E projection at each
    clip's last valid frame (the unidirectional LSTMs have then heard the whole clip). Not unit
    length; compare by cosine."""

    def __init__(self, encoder: ResemblyzerBackbone) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden, frames = self.encoder(waveforms, lengths)
        last = (frames - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.encoder.dim)
        return hidden[-1].gather(1, last).squeeze(1)


def build_resemblyzer(checkpoint: str | Path | None = None) -> ResemblyzerBackbone:
    path = Path(checkpoint) if checkpoint is not None else package_file("resemblyzer", "pretrained.pt")
    blob = load_torch_weights(path)
    state = blob.get("model_state") if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a resemblyzer checkpoint (no 'model_state')")
    ours: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("lstm."):
            kind, _, layer = key[len("lstm.") :].rpartition("_l")
            ours[f"lstms.{layer}.{kind}_l0"] = value
        elif key.startswith("linear."):
            ours[key] = value
    module = ResemblyzerBackbone()
    load_matching(module, ours, path)
    module.checkpoint_id = file_fingerprint(str(path))
    return module.freeze()

