"""The PhysioSER model: VAP branch, CPA, attention fusion head (see :mod:`physioser.model.physioser`).

Build from a config: ``PhysioSER(cfg, backbone=build_backbone_for(cfg))``; load a trained model
directory (``config.yaml`` + ``model.safetensors``): ``load_model(path)``.
"""

from physioser.model.checkpoint import load_model, read_config
from physioser.model.config import load_config
from physioser.model.cpa import CPA, info_nce
from physioser.model.physioser import PhysioSER, build_backbone_for

__all__ = ["CPA", "PhysioSER", "build_backbone_for", "info_nce", "load_config", "load_model", "read_config"]
