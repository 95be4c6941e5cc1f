"""Unsupervised speaker adaptation from unlabelled speech of the speaker (numpy only, no torch).

A model with statistics pooling standardises each backbone layer's frame mean and deviation by
the training set; a speaker's voice shifts those statistics. Adaptation subtracts a *speaker
offset* from them: the mean, over the speaker's utterances heard so far, of their
*speaker features* — the statistics minus the offset of the emotion the model predicts for
that utterance (the graph's ``speaker_features`` output) — shrunk toward zero (the training
set's global statistics):

    offset = sum_i w_i c_i / (sum_i w_i + tau)

Removing the predicted emotion before averaging is what keeps a speaker heard in one emotion
only (an angry speaker, a sad one) from being normalised into neutral: the plain speaker mean
*is* that emotion. ``tau`` (utterances) pulls an estimate from few utterances toward no
adaptation. Nothing here reads a label.

* :func:`speaker_offsets` — the evaluation protocol: each utterance gets the offset of ``k``
  random utterances of its own speaker (``k=None``: all of them; ``k=0``: none, the strict protocol).
* :class:`SpeakerAdaptation` — the run-time state: a running estimate per speaker, at most
  ``max_speakers`` of them (least recently used evicted), resettable, saved only when asked.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["speaker_offset", "speaker_offsets", "SpeakerAdaptation", "VoiceIds", "AdaptationError"]


class AdaptationError(ValueError):
    """Speaker features or a saved adaptation state that do not fit."""


def speaker_offset(speaker_features: np.ndarray, tau: float, weights: np.ndarray | None = None) -> np.ndarray:
    """[n, F] speaker features of one speaker (optional weights [n]) -> offset [F] (zeros for n = 0)."""
    c = np.asarray(speaker_features, dtype=np.float64)
    if c.ndim != 2:
        raise AdaptationError(f"speaker features must be [n, F], got shape {c.shape}")
    w = np.ones(len(c)) if weights is None else np.asarray(weights, dtype=np.float64)
    return (w @ c) / (w.sum() + float(tau))


def speaker_offsets(speaker_features: np.ndarray, speakers: Sequence[str], k: int | None, tau: float,
                    seed: int = 0) -> np.ndarray:
    """Offsets [N, F] for every utterance: the :func:`speaker_offset` of ``k`` utterances drawn at
    random (without replacement, seeded) from its speaker's utterances in ``speaker_features``
    [N, F] (``k=None`` or ``k`` >= their number: all of them; ``k=0``: zeros, the strict protocol).
    One draw per speaker, shared by its utterances, as a robot that has heard k utterances of them."""
    c = np.asarray(speaker_features, dtype=np.float64)
    speakers = np.asarray(speakers)
    if len(speakers) != len(c):
        raise AdaptationError(f"{len(c)} speaker feature rows but {len(speakers)} speaker ids")
    out = np.zeros_like(c)
    if k == 0:
        return out
    rng = np.random.default_rng(seed)
    for spk in sorted(set(speakers.tolist())):
        rows = np.flatnonzero(speakers == spk)
        chosen = rows if k is None or k >= len(rows) else rng.choice(rows, size=k, replace=False)
        out[rows] = speaker_offset(c[chosen], tau)
    return out


class SpeakerAdaptation:
    """Running speaker offsets for a stream: ``update(speaker, c, weight)`` adds one window's speaker
    features; ``offset(speaker)`` is the shrunk mean (zeros for an unknown speaker or ``None``).

    Args:
        dim: width F of the speaker features. tau: shrinkage in utterances (see the module doc).
        max_speakers: speakers kept; the least recently used is evicted beyond it.
        horizon: utterance weight after which older speech is forgotten exponentially (a running
            estimate that follows a voice over a long session); None keeps the plain mean.
    """

    def __init__(self, dim: int, tau: float, *, max_speakers: int = 16, horizon: float | None = 200.0) -> None:
        if dim < 1 or tau < 0 or max_speakers < 1 or (horizon is not None and horizon <= 0):
            raise AdaptationError(f"bad adaptation settings: dim={dim}, tau={tau}, max_speakers={max_speakers}, horizon={horizon}")
        self.dim, self.tau, self.max_speakers, self.horizon = int(dim), float(tau), int(max_speakers), horizon
        self._state: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()  # speaker -> (weighted sum, weight)

    def __len__(self) -> int:
        return len(self._state)

    @property
    def speakers(self) -> list[str]:
        """Known speakers, least recently used first."""
        return list(self._state)

    def weight(self, speaker: str | None) -> float:
        """Utterance weight heard from ``speaker`` (0 when unknown)."""
        return 0.0 if speaker is None or speaker not in self._state else self._state[speaker][1]

    def offset(self, speaker: str | None) -> np.ndarray:
        if speaker is None or speaker not in self._state:
            return np.zeros(self.dim, dtype=np.float32)
        total, weight = self._state[speaker]
        self._state.move_to_end(speaker)
        return (total / (weight + self.tau)).astype(np.float32)

    def update(self, speaker: str | None, speaker_features: np.ndarray, weight: float = 1.0) -> None:
        """Add one utterance's (or window's, with its share as ``weight``) speaker features."""
        if speaker is None:
            return
        c = np.asarray(speaker_features, dtype=np.float64).reshape(-1)
        if c.shape[0] != self.dim or not np.all(np.isfinite(c)):
            raise AdaptationError(f"speaker features must be {self.dim} finite numbers, got shape {c.shape}")
        total, seen = self._state.pop(speaker, (np.zeros(self.dim), 0.0))
        if self.horizon is not None and seen + weight > self.horizon:
            keep = max(self.horizon - weight, 0.0) / seen
            total, seen = total * keep, seen * keep
        self._state[speaker] = (total + weight * c, seen + weight)
        while len(self._state) > self.max_speakers:
            self._state.popitem(last=False)

    def reset(self, speaker: str | None = None) -> None:
        """Forget one speaker, or every speaker (``None``)."""
        if speaker is None:
            self._state.clear()
        else:
            self._state.pop(speaker, None)

    def save(self, path: str | Path) -> None:
        """Write the state to a ``.npz`` file (only when asked: nothing is persisted otherwise)."""
        names = list(self._state)
        sums = np.stack([self._state[n][0] for n in names]) if names else np.zeros((0, self.dim))
        weights = np.array([self._state[n][1] for n in names], dtype=np.float64)
        meta = json.dumps({"dim": self.dim, "tau": self.tau, "speakers": names})
        np.savez(Path(path), sums=sums, weights=weights, meta=np.array(meta))

    def load(self, path: str | Path) -> None:
        """Replace the state with one written by :meth:`save` (same width)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                sums, weights = data["sums"], data["weights"]
        except (OSError, ValueError, KeyError) as exc:
            raise AdaptationError(f"{path} is not a saved speaker adaptation state ({type(exc).__name__})") from None
        names = meta.get("speakers", []) if isinstance(meta, dict) else []
        if meta.get("dim") != self.dim or sums.shape != (len(names), self.dim) or weights.shape != (len(names),):
            raise AdaptationError(f"{path}: saved state does not fit features of width {self.dim}")
        self._state = OrderedDict((str(n), (sums[i].astype(np.float64), float(weights[i]))) for i, n in enumerate(names))
        while len(self._state) > self.max_speakers:
            self._state.popitem(last=False)


class VoiceIds:
    """Names the voice of a window when the robot gives no speaker identity: the nearest running
    centroid (cosine of unit-length vectors, e.g. the graph's ``features`` output) at or above
    ``threshold``, else a new ``voice-N``; at most ``max_voices`` kept (least recently heard evicted).

    A cheap identity from the emotion model's own statistics, not a speaker-verification model:
    on the five corpora here (whisper-tiny.en statistics, standardised), an utterance's cosine to
    its own speaker's centroid was >= 0.6 for 62 % of utterances and to another speaker's of the
    same corpus for 15 % (docs/adaptation.md)."""

    def __init__(self, threshold: float = 0.6, max_voices: int = 16) -> None:
        if not -1.0 <= threshold <= 1.0 or max_voices < 1:
            raise AdaptationError(f"bad voice id settings: threshold={threshold}, max_voices={max_voices}")
        self.threshold, self.max_voices = float(threshold), int(max_voices)
        self._centroids: OrderedDict[str, tuple[np.ndarray, float]] = OrderedDict()
        self._next = 1

    def identify(self, vector: np.ndarray) -> str:
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        norm = np.linalg.norm(v)
        if not np.isfinite(norm) or norm == 0:
            raise AdaptationError("a voice vector must be finite and non-zero")
        v = v / norm
        best, score = None, -np.inf
        for name, (total, _) in self._centroids.items():
            s = float(v @ total / max(np.linalg.norm(total), 1e-12))
            if s > score:
                best, score = name, s
        if best is None or score < self.threshold:
            best, total, count = f"voice-{self._next}", np.zeros_like(v), 0.0
            self._next += 1
        else:
            total, count = self._centroids.pop(best)
        self._centroids[best] = (total + v, count + 1)
        while len(self._centroids) > self.max_voices:
            self._centroids.popitem(last=False)
        return best

    def reset(self) -> None:
        self._centroids.clear()
        self._next = 1
