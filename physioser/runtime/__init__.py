"""Runtime, the deployable core (no torch): the ONNX contract, the onnxruntime engine, profiles and streaming."""

from physioser.runtime.engine import CIRCUMPLEX, Engine, EngineError, valence_arousal
from physioser.runtime.profiles import HardwareProfile, ProfileError, load_profile
from physioser.runtime.streamer import EmotionEvent, Streamer

__all__ = [
    "CIRCUMPLEX", "Engine", "EngineError", "EmotionEvent", "HardwareProfile", "ProfileError", "Streamer",
    "load_profile", "valence_arousal",
]
