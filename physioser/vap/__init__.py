"""The VAP branch: physiology-informed quartet {M, rho, f_inst, tau_g} and its quaternion encoder.

``VAPFrontEnd(config)(waveforms [B, S], lengths [B]) -> (quartet [B, 4, F, T], frame_lengths [B])``;
``VAPBranch(config)(waveforms, lengths) -> (z_v [B, D_v], frames [B, T, D_v], frame_lengths)``.
"""

from physioser.vap.config import COMPONENTS, FRONTEND_FIELDS, FRONTEND_VERSION, VAPConfig
from physioser.vap.encoder import AttentiveStatsPooling, VAPBranch, VAPEncoder
from physioser.vap.frontend import VAPFrontEnd, filterbank, quartet_statistics

__all__ = [
    "COMPONENTS",
    "FRONTEND_FIELDS",
    "FRONTEND_VERSION",
    "VAPConfig",
    "VAPFrontEnd",
    "VAPEncoder",
    "VAPBranch",
    "AttentiveStatsPooling",
    "filterbank",
    "quartet_statistics",
]
