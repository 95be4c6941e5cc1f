"""Models from typed configs, as torchaudio's model factories build theirs."""

from __future__ import annotations

from torch import nn

from physioser.model.config import Config, ConfigError
from physioser.model.physioser import PhysioSER

__all__ = ["build_backbone_for", "build_model"]


def build_backbone_for(config: Config) -> nn.Module | None:
    """The frozen backbone of a config (None when the model has no backbone branch)."""
    if not config.model.uses("backbone"):
        return None
    from physioser.backbones import build_backbone

    return build_backbone(config.backbone.name, **config.backbone.options)


def build_model(config: Config, backbone: nn.Module | None = None) -> PhysioSER:
    """The PhysioSER model of ``config``, which names its ``class_names``.

    ``backbone`` is the frozen encoder ``forward`` runs (None for the cached training path); the
    backbone pathway is sized by its shape, else by ``config.backbone.num_layers``/``dim``.
    """
    if backbone is not None and config.model.uses("backbone"):
        shape = (int(backbone.num_layers), int(backbone.dim))
        stored = (config.backbone.num_layers, config.backbone.dim)
        if stored != (None, None) and stored != shape:
            raise ConfigError(f"backbone {config.backbone.name} has {shape[0]} layers of width {shape[1]}; "
                              f"the config was made for {stored[0]} of width {stored[1]}")
        config = config.with_backbone_shape(*shape)
    return PhysioSER(config, backbone)
