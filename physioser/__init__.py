"""physioser: embedded speech emotion recognition for robots (PhysioSER)."""

__version__ = "0.1.0"
SAMPLE_RATE = 16000
