"""Frozen pretrained encoders behind one interface, layer weighting, and the on-disk feature cache.

    backbone = build_backbone("whisper-tiny.en")
    hidden_states, lengths = backbone(waveforms [B, S], lengths [B])   # list of L × [B, T', D]
    pooled = Featurizer(backbone.num_layers)(hidden_states)            # [B, T', D]
    FeatureCache().get_or_compute(path, backbone)                      # [L, T', D], cached on disk
"""

from physioser.backbones.base import Backbone
from physioser.backbones.cache import CachedFeatures, ExtractReport, FeatureCache, pad_batch
from physioser.backbones.ct2 import CheckpointError
from physioser.backbones.featurizer import Featurizer
from physioser.backbones.registry import BACKBONES, BUILTIN, build_backbone

__all__ = [
    "BACKBONES",
    "BUILTIN",
    "Backbone",
    "CachedFeatures",
    "CheckpointError",
    "ExtractReport",
    "FeatureCache",
    "Featurizer",
    "build_backbone",
    "pad_batch",
]
