"""Source-filter speech synthesis with known physiology (source F0, vocal-tract formants): the
demo's utterance, and vowels for tests, benchmarks and figures. numpy only (part of the core)."""

from __future__ import annotations

import numpy as np

from physioser import SAMPLE_RATE

__all__ = ["F0", "FORMANTS", "BANDWIDTHS", "iir_filter", "synth_utterance", "synthetic_vowel", "vocal_tract"]

F0 = 120.0
FORMANTS = (700.0, 1220.0, 2600.0)
BANDWIDTHS = (80.0, 90.0, 120.0)


def iir_filter(b, a, x: np.ndarray, tail: int = SAMPLE_RATE // 4) -> np.ndarray:
    """``scipy.signal.lfilter(b, a, x)`` (zero initial state) of a stable filter, computed in the
    frequency domain; ``tail`` zero samples keep the wrap-around of the decaying response below
    1e-20 for the poles used here (|p| <= 0.985)."""
    n = len(x) + tail
    h = np.fft.rfft(b, n) / np.fft.rfft(a, n)
    return np.fft.irfft(np.fft.rfft(x, n) * h, n)[: len(x)]


def glottal_tilt(pulses: np.ndarray) -> np.ndarray:
    """The -6 dB/octave tilt of the glottal source applied to a pulse train."""
    return iir_filter([1.0], [1.0, -0.97], pulses)


def vocal_tract(formants=FORMANTS, bandwidths=BANDWIDTHS, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
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
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Glottal pulse train (F0 constant or gliding linearly to ``glide_to``) with a -6 dB/octave source
    tilt, through the formant resonators, peak 0.5, plus optional white noise of std ``noise``. float32."""
    n = int(seconds * sample_rate)
    f = np.full(n, f0) if glide_to is None else np.linspace(f0, glide_to, n)
    cycles = np.cumsum(f) / sample_rate
    pulses = np.zeros(n)
    pulses[np.flatnonzero(np.diff(np.floor(cycles)) > 0) + 1] = 1.0
    y = iir_filter(*vocal_tract(formants, bandwidths, sample_rate), glottal_tilt(pulses))
    y = 0.5 * y / np.abs(y).max()
    if noise:
        y = y + np.random.default_rng(seed).normal(0, noise, n)
    return y.astype(np.float32)


VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240), "e": (530, 1840, 2480)}


def synth_utterance(seconds: float = 4.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like test utterance: a glottal pulse train with a rise-fall F0 contour through
    formant resonators, syllables /a/ /i/ /u/ /e/ separated by short pauses (source-filter synthesis)."""
    rng = np.random.default_rng(seed)
    syllable, pause = 0.32, 0.08
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    t0, k = 0.0, 0
    while t0 + syllable <= seconds:
        m = int(syllable * sample_rate)
        t = np.arange(m) / sample_rate
        progress = (t0 + t) / seconds
        f0 = 120 + 60 * np.sin(np.pi * progress) + 8 * np.sin(2 * np.pi * 5 * t)  # phrase arc + vibrato
        phase = np.cumsum(f0) / sample_rate
        pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per period
        source = glottal_tilt(pulses) + 0.02 * rng.standard_normal(m)  # + breath
        y = iir_filter(*vocal_tract(VOWELS["aiue"[k % 4]], (80, 100, 120), sample_rate), source)
        y *= np.hanning(m) ** 0.5
        i0 = int(t0 * sample_rate)
        out[i0 : i0 + m] += y
        t0 += syllable + pause
        k += 1
    out *= 0.3 / (np.abs(out).max() + 1e-9)
    return out.astype(np.float32)
