"""Synthetic vowels with known physiology (source F0, vocal-tract formants) for tests, benchmarks, figures."""

from __future__ import annotations

import numpy as np
import scipy.signal as ss

__all__ = ["F0", "FORMANTS", "BANDWIDTHS", "synthetic_vowel", "vocal_tract"]

F0 = 120.0
FORMANTS = (700.0, 1220.0, 2600.0)
BANDWIDTHS = (80.0, 90.0, 120.0)


def vocal_tract(formants=FORMANTS, bandwidths=BANDWIDTHS, sample_rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of the cascade of two-pole resonators (unit gain at DC scaled by 1 - r per section)."""
    b, a = np.array([1.0]), np.array([1.0])
    for fc, bw in zip(formants, bandwidths):
        r = np.exp(-np.pi * bw / sample_rate)
        b = np.convolve(b, [1 - r])
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * fc / sample_rate), r * r])
    return b, a


def synthetic_vowel(
    f0: float = F0,
    glide_to: float | None = None,
    seconds: float = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    formants=FORMANTS,
    bandwidths=BANDWIDTHS,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Glottal pulse train (F0 constant or gliding linearly to ``glide_to``) with a -6 dB/octave source
    tilt, through the formant resonators, peak 0.5, plus optional white noise of std ``noise``. float32."""
    n = int(seconds * sample_rate)
    f = np.full(n, f0) if glide_to is None else np.linspace(f0, glide_to, n)
    cycles = np.cumsum(f) / sample_rate
    pulses = np.zeros(n)
    pulses[np.flatnonzero(np.diff(np.floor(cycles)) > 0) + 1] = 1.0
    source = ss.lfilter([1.0], [1.0, -0.97], pulses)
    y = ss.lfilter(*vocal_tract(formants, bandwidths, sample_rate), source)
    y = 0.5 * y / np.abs(y).max()
    if noise:
        y = y + np.random.default_rng(seed).normal(0, noise, n)
    return y.astype(np.float32)
