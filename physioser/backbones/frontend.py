"""Spectral front ends written with plain tensor ops (export to ONNX opset 17).

The STFT is a strided convolution with a fixed windowed DFT basis; the mel filterbank is the
Slaney-style one of librosa (``librosa.filters.mel(htk=False, norm="slaney")``), which is what
Whisper and resemblyzer were trained with.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from physioser import SAMPLE_RATE
from physioser.backbones.base import valid_mask


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freq / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(freq >= min_log_hz, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] Slaney-normalised triangular filters (librosa's default)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


class PowerMel(nn.Module):
    """Mel power spectrogram: |STFT|² (periodic Hann window) → mel filterbank.

    ``pad_left`` samples of reflection (``"reflect"``) or zeros (``"constant"``) go before the
    signal and ``pad_right`` zeros after it, so frame ``t`` is centred on sample ``t·hop`` and a
    batch item's valid frames never see another item's padding.

    forward(waveforms [B, S], lengths [B]) -> (mel power [B, n_mels, T], frame lengths [B]),
    with T = (S + pad_left + pad_right - n_fft) // hop + 1 and zeros beyond each item's length.
    Frame lengths are ``lengths // hop + extra_frames``.
    """

    def __init__(self, *, n_fft: int, hop: int, n_mels: int, pad_mode: str = "reflect", extra_frames: int = 0) -> None:
        super().__init__()
        self.n_fft, self.hop, self.n_mels = n_fft, hop, n_mels
        self.pad_mode = pad_mode
        self.pad = n_fft // 2
        self.extra_frames = extra_frames
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        bins = n_fft // 2 + 1
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=0) * window
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)  # [2·bins, 1, n_fft]
        fbank = torch.from_numpy(mel_filterbank(SAMPLE_RATE, n_fft, n_mels))
        self.register_buffer("fbank", fbank, persistent=False)  # [n_mels, bins]

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.hop, rounding_mode="floor") + self.extra_frames

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = waveforms.unsqueeze(1)
        if self.pad_mode == "reflect":
            x = F.pad(x, (self.pad, 0), mode="reflect")
        else:
            x = F.pad(x, (self.pad, 0))
        x = F.pad(x, (0, self.pad))
        spec = F.conv1d(x, self.basis, stride=self.hop)  # [B, 2·bins, T]
        bins = self.n_fft // 2 + 1
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2
        mel = torch.matmul(self.fbank, power)  # [B, n_mels, T]
        frames = self.frame_lengths(lengths)
        mel = mel[:, :, : mel.shape[2] - 1 + self.extra_frames]
        mask = valid_mask(frames, mel.shape[2]).unsqueeze(1).to(mel.dtype)
        return mel * mask, frames


class WhisperLogMel(nn.Module):
    """Whisper's log-mel (80 bins, 25 ms Hann, 10 ms hop), without the 30 s padding.

    Equal to ``whisper.log_mel_spectrogram`` on the valid frames: log10 of the mel power clamped
    at 1e-10, floored at (per-utterance max − 8), then (x + 4) / 4. The signal end is zero-padded
    exactly as Whisper's 30 s zero padding does, so a clip's frames equal the first frames of the
    padded input. Frames: ``S // 160`` per clip (Whisper drops the last STFT frame).

    forward(waveforms [B, S], lengths [B]) -> (log-mel [B, 80, T], frame lengths [B]); zeros beyond length.
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.mel = PowerMel(n_fft=400, hop=160, n_mels=n_mels, pad_mode="reflect", extra_frames=0)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.mel.frame_lengths(lengths)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        power, frames = self.mel(waveforms, lengths)
        mask = valid_mask(frames, power.shape[2]).unsqueeze(1)
        log_spec = torch.log10(torch.clamp(power, min=1e-10))
        peak = torch.where(mask, log_spec, torch.full_like(log_spec, -1e4)).amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        log_spec = (log_spec + 4.0) / 4.0
        return log_spec * mask.to(log_spec.dtype), frames


class LogFbank(nn.Module):
    """Log mel filterbank energies ln(mel power + 1e-6): 25 ms Hann, 10 ms hop, centred frames.

    forward(waveforms [B, S], lengths [B]) -> (log-mel [B, n_mels, T], frame lengths = S // 160 + 1).
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.mel = PowerMel(n_fft=400, hop=160, n_mels=n_mels, pad_mode="constant", extra_frames=1)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.mel.frame_lengths(lengths)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        power, frames = self.mel(waveforms, lengths)
        mask = valid_mask(frames, power.shape[2]).unsqueeze(1).to(power.dtype)
        return torch.log(power + 1e-6) * mask, frames
