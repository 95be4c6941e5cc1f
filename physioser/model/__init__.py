"""The PhysioSER model: VAP branch, CPA, attention fusion head (see :mod:`physioser.model.physioser`).

Build from a typed config (:mod:`physioser.model.config`): ``build_model(config, build_backbone_for(config))``;
load a trained model directory (``config.yaml`` + ``model.safetensors``): ``load_model(path)``.
"""

from physioser.model.checkpoint import load_model, read_config
from physioser.model.config import Config, load_config
from physioser.model.cpa import CPA, info_nce
from physioser.model.factory import build_backbone_for, build_model
from physioser.model.physioser import PhysioSER

__all__ = ["CPA", "Config", "PhysioSER", "build_backbone_for", "build_model", "info_nce", "load_config", "load_model",
           "read_config"]
