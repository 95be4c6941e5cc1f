"""Training-time augmentation from the same conditions: noise, reverberation, speed.

``Augmenter(...)(x, key, corpus, epoch)`` draws, per clip and epoch, each of: speed perturbation
(probability ``p_speed``, factor from ``speeds``, resampled with soxr so pitch and tempo move
together), a simulated room (``p_reverb``, T60 uniform in ``t60``), additive noise (``p_noise``, SNR
uniform in ``snr``; babble from corpora other than the clip's, generated fan noise, or the *training*
half of the real-noise split, :data:`physioser.conditions.spec.REAL_NOISE_TRAIN` — evaluation uses the
other half). The draws depend only on ``(seed, key, epoch)``. Its rooms and seeds are disjoint from
the evaluation's (``seed`` + :data:`TRAIN_SEED_OFFSET`).

``StreamWindow(...)(x, key, copy)`` cuts a clip as the stream hears it: the clip within
silence, one window ending at a random point from 0.5 s into the clip to 1.5 s after its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from physioser import SAMPLE_RATE
from physioser.conditions import transforms as T
from physioser.conditions.spec import Condition, clip_rng

TRAIN_SEED_OFFSET = 1_000_003
T60_STEPS = (0.2, 0.4, 0.6, 0.8, 1.0)  # room banks the uniform T60 draw snaps to


@dataclass
class Augmenter:
    seed: int = 0
    p_noise: float = 0.5
    snr: tuple[float, float] = (0.0, 20.0)
    noise_kinds: tuple[str, ...] = ("babble", "fan", "noise-train")
    p_reverb: float = 0.3
    t60: tuple[float, float] = (0.2, 1.0)
    p_speed: float = 0.3
    speeds: tuple[float, ...] = (0.9, 1.1)
    noise_root: Path = Path("../shared/noise")
    corpora_root: Path = Path("../shared/corpora")
    _cond: Condition = field(init=False)

    def __post_init__(self):
        # one Condition holds the noise sources and room banks; its spec is only a placeholder step
        self._cond = Condition("clean", seed=self.seed + TRAIN_SEED_OFFSET, noise_root=self.noise_root,
                               corpora_root=self.corpora_root)

    def __call__(self, x: np.ndarray, key: str, corpus: str | None = None, epoch: int = 0) -> np.ndarray:
        rng = clip_rng(self.seed + TRAIN_SEED_OFFSET, f"{key}#{epoch}")
        y = np.asarray(x, np.float32)
        if rng.random() < self.p_speed:
            import soxr

            factor = float(rng.choice(self.speeds))
            y = soxr.resample(y, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)
        if rng.random() < self.p_reverb:
            t60 = min(T60_STEPS, key=lambda s: abs(s - rng.uniform(*self.t60)))
            rooms = self._cond.rooms(t60)
            y = T.reverberate(y, rooms[int(rng.integers(len(rooms)))])
        if rng.random() < self.p_noise:
            kind = str(rng.choice(self.noise_kinds))
            y = T.add_noise(y, self._cond.noise(kind, len(y), rng, corpus), float(rng.uniform(*self.snr)), rng)
        return y


@dataclass(frozen=True)
class StreamWindow:
    """One window of ``window_s`` of a clip heard between silences, as the Streamer analyses it: its
    end drawn from (``seed``, key, copy) between 0.5 s into the clip (or its end, if shorter) and
    1.5 s after its end."""

    window_s: float
    seed: int = 0

    def __call__(self, x: np.ndarray, key: str, copy: int = 0) -> np.ndarray:
        rng = clip_rng(self.seed + TRAIN_SEED_OFFSET, f"window:{key}#{copy}")
        w = int(round(self.window_s * SAMPLE_RATE))
        y = np.asarray(x, np.float32)
        padded = np.concatenate([np.zeros(w, np.float32), y, np.zeros(w, np.float32)])
        first = w + min(SAMPLE_RATE // 2, len(y))
        last = w + len(y) + min(3 * SAMPLE_RATE // 2, w)
        end = int(rng.integers(first, last + 1))
        return padded[end - w : end]
