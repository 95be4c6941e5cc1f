"""The canonical emotion vocabulary and the 4-class set.

Every corpus keeps its own label codes (``Row.label``, as published) and maps each code to one
canonical emotion (``Row.canonical``); the per-corpus tables live with the readers in
:mod:`physioser.data.registry` and are printed by ``physioser corpora list --labels``.
"""

from __future__ import annotations

CANONICAL: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    # beyond the eight RAVDESS/Ekman-style categories
    "boredom",  # EmoDB "L" (Langeweile)
    "contempt",  # MSP-Podcast "C"
    "frustrated",  # IEMOCAP "fru"
    "excited",  # IEMOCAP "exc"
    "other",  # IEMOCAP "oth", MSP-Podcast "O": annotators chose "other"
    "no_agreement",  # IEMOCAP "xxx", MSP-Podcast "X": annotators did not agree on a class
)

FOUR_CLASSES: tuple[str, ...] = ("neutral", "happy", "angry", "sad")

FOUR_CLASS_MAP: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happy",
    # IEMOCAP convention (since Busso et al.'s baselines): "excited" merges into "happy"
    "excited": "happy",
    "angry": "angry",
    "sad": "sad",
}


def to_four_class(canonical: str) -> str | None:
    """The 4-class label of a canonical emotion, or None where it has none (e.g. "fearful")."""
    if canonical not in CANONICAL:
        raise ValueError(f"unknown canonical emotion {canonical!r}; known: {', '.join(CANONICAL)}")
    return FOUR_CLASS_MAP.get(canonical)
