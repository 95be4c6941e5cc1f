"""Generated non-speech sounds (noise, hum, tones, clicks, fan/motor noise), reproducible from a seed.

Each generator takes a duration, a ``numpy.random.Generator`` and returns float32 mono at 16 kHz
scaled to ``rms`` (linear, full scale 1). They feed the speech-gate checks (none may yield an
emotion) and the additive-noise conditions.
"""

from __future__ import annotations

import numpy as np

from physioser import SAMPLE_RATE


def _scaled(x: np.ndarray, rms: float) -> np.ndarray:
    level = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x * (rms / level if level > 0 else 0.0)).astype(np.float32)


def _n(seconds: float) -> int:
    n = int(round(seconds * SAMPLE_RATE))
    if n < 1:
        raise ValueError(f"duration must be at least one sample, got {seconds} s")
    return n


def white_noise(seconds: float, rng: np.random.Generator, rms: float = 0.1) -> np.ndarray:
    return _scaled(rng.standard_normal(_n(seconds)), rms)


def coloured_noise(seconds: float, rng: np.random.Generator, rms: float = 0.1, exponent: float = 1.0) -> np.ndarray:
    """Noise with power spectral density ~ 1/f^exponent (1: pink, 2: brown), shaped in the frequency domain."""
    n = _n(seconds)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1] if n > 1 else 1.0
    return _scaled(np.fft.irfft(spec / f ** (exponent / 2), n), rms)


def hum(seconds: float, rng: np.random.Generator, rms: float = 0.1, mains: float = 50.0, harmonics: int = 8) -> np.ndarray:
    """Mains hum: the mains frequency and its harmonics with random amplitudes (1/k tilt) and phases."""
    t = np.arange(_n(seconds)) / SAMPLE_RATE
    k = np.arange(1, harmonics + 1)
    amps = rng.uniform(0.3, 1.0, harmonics) / k
    x = (amps[:, None] * np.sin(2 * np.pi * mains * k[:, None] * t + rng.uniform(0, 2 * np.pi, harmonics)[:, None])).sum(0)
    return _scaled(x, rms)


def tone(seconds: float, rng: np.random.Generator, rms: float = 0.1, freq: float = 440.0, beep_s: float = 0.0) -> np.ndarray:
    """A sine tone; with ``beep_s`` > 0 it beeps (on and off for ``beep_s`` each)."""
    t = np.arange(_n(seconds)) / SAMPLE_RATE
    x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    if beep_s > 0:
        x *= (np.floor(t / beep_s) % 2 == 0)
    return _scaled(x, rms)


def sweep(seconds: float, rng: np.random.Generator, rms: float = 0.1, low: float = 100.0, high: float = 4000.0) -> np.ndarray:
    """A logarithmic sine sweep from ``low`` to ``high`` Hz."""
    n = _n(seconds)
    t = np.arange(n) / SAMPLE_RATE
    rate = np.log(high / low) / max(seconds, 1e-9)
    return _scaled(np.sin(2 * np.pi * low * (np.exp(rate * t) - 1) / rate + rng.uniform(0, 2 * np.pi)), rms)


def clicks(seconds: float, rng: np.random.Generator, rms: float = 0.05, rate_hz: float = 4.0, regular: bool = False) -> np.ndarray:
    """Clicks: short decaying impulses at ``rate_hz`` (Poisson times, or a metronome when ``regular``)."""
    n = _n(seconds)
    x = np.zeros(n)
    count = max(1, int(seconds * rate_hz))
    times = (np.arange(count) / rate_hz * SAMPLE_RATE).astype(int) if regular else rng.integers(0, n, count)
    decay = np.exp(-np.arange(80) / 12.0) * rng.standard_normal(80)
    for t0 in times:
        seg = x[t0 : t0 + len(decay)]
        seg += decay[: len(seg)] * rng.uniform(0.5, 1.0)
    return _scaled(x, rms)


def fan_noise(seconds: float, rng: np.random.Generator, rms: float = 0.1, rotation_hz: float | None = None,
              blades: int | None = None, harmonics: int = 12, tonal_db: float = -6.0, jitter: float = 0.01) -> np.ndarray:
    """Fan/motor noise: a blade-pass harmonic series whose frequency wanders (``jitter``: relative std of a
    slow random walk) over broadband noise (pink, low-passed by the housing). ``tonal_db``: power of
    the harmonic part relative to the broadband part. Unset rotation and blade count are drawn."""
    from scipy.signal import butter, sosfilt

    n = _n(seconds)
    rotation = rotation_hz if rotation_hz is not None else rng.uniform(20.0, 60.0)
    blades = blades if blades is not None else int(rng.integers(3, 9))
    wander = np.cumsum(rng.standard_normal(n)) / np.sqrt(SAMPLE_RATE)  # a random walk, ~1 per sqrt(second)
    wander = (wander - wander.mean()) / (wander.std() + 1e-12)
    f0 = rotation * blades * (1.0 + jitter * wander)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    k = np.arange(1, harmonics + 1)
    amps = rng.uniform(0.2, 1.0, harmonics) / k
    tonal = (amps[:, None] * np.sin(k[:, None] * phase + rng.uniform(0, 2 * np.pi, harmonics)[:, None])).sum(0)
    broad = sosfilt(butter(2, rng.uniform(1500, 5000), fs=SAMPLE_RATE, output="sos"), coloured_noise(seconds, rng, 1.0))
    tonal = _scaled(tonal, 10 ** (tonal_db / 20))
    return _scaled(tonal + _scaled(broad, 1.0), rms)
