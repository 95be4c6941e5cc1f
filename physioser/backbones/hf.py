"""wav2vec 2.0, HuBERT, WavLM and data2vec-audio from a local transformers ``save_pretrained`` directory.

No weights for these models are reachable here: users point ``checkpoint`` at their own directory
(``config.json`` + ``model.safetensors``/``pytorch_model.bin``, optionally
``preprocessor_config.json``). Hidden states: the transformer input (after the feature projection
and positional convolution, as transformers returns it) plus every layer, 50 Hz.

Padding: group-norm feature encoders (the base variants) were trained without padding and
attention masks do not make every family padding-invariant (data2vec-audio is not), so the
clips of a padded batch run one by one at their own lengths; equal-length batches run at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from physioser.backbones.base import Backbone, file_fingerprint, valid_mask
from physioser.backbones.ct2 import CheckpointError

MODEL_TYPES = {"wav2vec2": ("wav2vec2",), "hubert": ("hubert",), "wavlm": ("wavlm",), "data2vec": ("data2vec-audio",)}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _import_transformers():
    """The transformers module, usable even where an installed torchaudio fails to load.

    torchaudio 2.11 (pulled in by pesto-pitch/torchcrepe/silero-vad) cannot load its C++ library
    beside torch 2.13; transformers then crashes importing its audio utilities. transformers
    needs torchaudio only for file reading, so it is told torchaudio is unavailable.
    """
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        import transformers.utils
        import transformers.utils.import_utils

        transformers.utils.is_torchaudio_available = lambda: False
        transformers.utils.import_utils.is_torchaudio_available = lambda: False
    import transformers

    return transformers


def receptive_field(kernels: list[int], strides: list[int]) -> int:
    """Samples seen by one output frame of a stack of 1-D convolutions."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


class TransformersBackbone(Backbone):
    """forward(waveforms [B, S], lengths [B]) -> ((num_hidden_layers + 1) × [B, T', hidden_size], lengths')."""

    version = "1"

    def __init__(self, model: torch.nn.Module, family: str, *, normalize: bool) -> None:
        super().__init__()
        config = model.config
        self.model = model
        self.name = family
        self.num_layers = config.num_hidden_layers + 1
        self.dim = config.hidden_size
        hop = 1
        for stride in config.conv_stride:
            hop *= stride
        self.frame_rate = 16000 / hop
        self.min_samples = receptive_field(list(config.conv_kernel), list(config.conv_stride))
        self.normalize = normalize
        self.options = {"normalize": normalize}

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(lengths).long()

    def _normalise(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = valid_mask(lengths, waveforms.shape[1]).to(waveforms.dtype)
        count = lengths.clamp(min=1).to(waveforms.dtype)[:, None]
        mean = (waveforms * mask).sum(1, keepdim=True) / count
        var = (((waveforms - mean) * mask) ** 2).sum(1, keepdim=True) / count
        return (waveforms - mean) / torch.sqrt(var + 1e-7) * mask

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        if self.normalize:
            waveforms = self._normalise(waveforms, lengths)
        if bool((lengths == waveforms.shape[1]).all()):
            return list(self.model(waveforms, output_hidden_states=True).hidden_states)
        frames = self.output_lengths(lengths)
        width = int(frames.max())
        per_item = []
        for wave, length in zip(waveforms, lengths.tolist()):
            hidden = self.model(wave[None, :length], output_hidden_states=True).hidden_states
            per_item.append([torch.nn.functional.pad(h[0], (0, 0, 0, width - h.shape[1])) for h in hidden])
        return [torch.stack([item[layer] for item in per_item]) for layer in range(self.num_layers)]


def build_transformers(family: str, checkpoint: str | Path | None, *, normalize: bool | None = None) -> TransformersBackbone:
    """Load ``family`` (wav2vec2, hubert, wavlm, data2vec) from a local save_pretrained directory."""
    if checkpoint is None:
        raise CheckpointError(f"backbone {family} needs checkpoint=<local transformers save_pretrained directory>")
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a transformers checkpoint directory (no config.json)")
    weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path}: no weights file ({' or '.join(WEIGHT_FILES)})")
    transformers = _import_transformers()
    AutoConfig, AutoModel = transformers.AutoConfig, transformers.AutoModel
    config = AutoConfig.from_pretrained(path)
    if config.model_type not in MODEL_TYPES[family]:
        raise CheckpointError(f"{path}: model_type '{config.model_type}' is not a {family} model")
    try:
        model, info = AutoModel.from_pretrained(path, output_loading_info=True)
    except Exception as error:  # safetensors/torch raise their own types on corrupt files
        raise CheckpointError(f"{weights}: cannot load {family} weights (truncated or corrupt?): {error}") from error
    if info.get("missing_keys"):
        raise CheckpointError(f"{weights}: {len(info['missing_keys'])} weights missing, e.g. {sorted(info['missing_keys'])[:3]}")
    if normalize is None:
        extractor = path / "preprocessor_config.json"
        normalize = bool(json.loads(extractor.read_text()).get("do_normalize", False)) if extractor.is_file() else False
    backbone = TransformersBackbone(model, family, normalize=normalize)
    backbone.checkpoint_id = file_fingerprint(str(weights))
    return backbone.freeze()
