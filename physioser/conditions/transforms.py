"""Conditions applied to a 16 kHz speech waveform: additive noise at a set SNR, a simulated room,
a low-quality microphone. Each is a pure function of its inputs and a ``numpy.random.Generator``.

- :func:`add_noise`: ``speech + g * noise`` with ``g`` chosen so that the SNR — the ratio of the mean
  power of the speech clip (whole clip, silences included) to that of the added noise over the same
  samples — is exactly ``snr_db``. Noise shorter than the speech is looped; longer noise is cut at a
  random offset. The sum is scaled down (both parts alike, the SNR unchanged) only if its peak would
  exceed :data:`PEAK`.
- :func:`room_impulse_response` / :func:`reverberate`: a shoebox room simulated by pyroomacoustics'
  image-source method, its absorption set by Sabine's formula for the requested T60, source
  ``distance`` metres from the microphone. The reverberant signal keeps the input's length (the tail
  past the end is cut) and its RMS level (so a condition changes the sound, not the loudness).
- :func:`telephone`, :func:`robot_mic`, :func:`clip`: band limits and clipping.
"""

from __future__ import annotations

import numpy as np

from physioser import SAMPLE_RATE

PEAK = 0.99


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """The SNR (dB) of ``speech`` over ``noise`` as :func:`add_noise` defines it."""
    return 10 * np.log10(power(speech) / power(noise))


def fit_length(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``noise``: looped when shorter, cut at a random offset when longer."""
    if len(noise) == 0:
        raise ValueError("noise is empty")
    if len(noise) < n:
        noise = np.tile(noise, -(-n // len(noise)))
    start = int(rng.integers(0, len(noise) - n + 1))
    return noise[start : start + n]


def scaled_noise(speech: np.ndarray, noise: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """``len(speech)`` samples of ``noise`` at the level that puts ``speech`` ``snr`` dB above it."""
    n = fit_length(np.asarray(noise, np.float64), len(speech), rng)
    ps, pn = power(speech), power(n)
    if ps == 0 or pn == 0:
        raise ValueError("speech and noise must both have non-zero power to set an SNR")
    return n * np.sqrt(ps / (pn * 10 ** (snr / 10)))


def add_noise(speech: np.ndarray, noise: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """Speech plus noise at ``snr`` dB (see module docstring)."""
    mix = speech.astype(np.float64) + scaled_noise(speech, noise, snr, rng)
    peak = float(np.abs(mix).max())
    return (mix * (PEAK / peak if peak > PEAK else 1.0)).astype(np.float32)


def room_impulse_response(t60: float, distance: float, rng: np.random.Generator,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """An image-source RIR of a random shoebox room (5-9 x 4-7 x 2.6-3.4 m) with reverberation time
    ``t60`` s (T30 by Schroeder integration), source and microphone ``distance`` m apart at 1.0-1.8 m
    height, 0.5 m or more from the walls."""
    import pyroomacoustics as pra

    for _ in range(100):
        dims = np.array([rng.uniform(5, 9), rng.uniform(4, 7), rng.uniform(2.6, 3.4)])
        mic = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5), rng.uniform(1.0, 1.8)])
        angle = rng.uniform(0, 2 * np.pi)
        src = mic + distance * np.array([np.cos(angle), np.sin(angle), 0.0])
        src[2] = rng.uniform(1.0, 1.8)
        src = mic + (src - mic) * distance / np.linalg.norm(src - mic)
        if np.all(src[:2] > 0.5) and np.all(src[:2] < dims[:2] - 0.5) and 0.5 < src[2] < dims[2] - 0.5:
            break
    else:
        raise ValueError(f"no room placement for a source {distance} m from the microphone")
    def rir(target: float) -> np.ndarray:
        absorption, max_order = pra.inverse_sabine(target, dims)
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=max_order)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        return np.asarray(room.rir[0][0], np.float64)

    # Sabine's formula overshoots in image-source rooms (measured 0.62-0.83 s for 0.6): one correction
    # step aims the absorption at the T60 the first room measured
    measured = float(pra.experimental.measure_rt60(rir(t60), fs=sample_rate, decay_db=30))
    return rir(t60 * t60 / measured) if measured > 0 else rir(t60)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir``, cut to ``len(x)``, at the RMS level of ``x`` (see module docstring)."""
    from scipy.signal import fftconvolve

    y = fftconvolve(x.astype(np.float64), rir)[: len(x)]
    py = power(y)
    y *= np.sqrt(power(x) / py) if py > 0 else 0.0
    peak = float(np.abs(y).max())
    return (y * (PEAK / peak if peak > PEAK else 1.0)).astype(np.float32)


def _sos_filter(x: np.ndarray, sos) -> np.ndarray:
    from scipy.signal import sosfilt

    return sosfilt(sos, x.astype(np.float64)).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    """Telephone band: 300-3400 Hz (4th-order Butterworth band-pass) and 8 kHz sampling, back at 16 kHz."""
    import soxr
    from scipy.signal import butter

    y = _sos_filter(x, butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos"))
    return soxr.resample(soxr.resample(y, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)[: len(x)].astype(np.float32)


def robot_mic(x: np.ndarray, low_hz: float = 250.0, high_hz: float = 4000.0) -> np.ndarray:
    """A small MEMS microphone behind a robot's shell: 2nd-order roll-off below ``low_hz`` and above ``high_hz``."""
    from scipy.signal import butter

    y = _sos_filter(x, butter(2, low_hz, btype="highpass", fs=SAMPLE_RATE, output="sos"))
    return _sos_filter(y, butter(2, high_hz, btype="lowpass", fs=SAMPLE_RATE, output="sos"))


def clip(x: np.ndarray, fraction: float) -> np.ndarray:
    """Overdriven input: gain until ``fraction`` of the samples reach full scale, then clipped at ±1."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    level = float(np.quantile(np.abs(x), 1 - fraction))
    if level == 0:
        return x.astype(np.float32)
    return np.clip(x / level, -1.0, 1.0).astype(np.float32)
