"""Audio I/O: loading, downmix, resampling, sample-format conversion and waveform validation.

Everything downstream works on float32 mono waveforms at ``physioser.SAMPLE_RATE`` (16 kHz).

- :func:`load_audio` reads wav/flac/ogg with soundfile, mixes channels down to mono, resamples
  with soxr (high quality) and validates the result.
- :func:`stream_audio` reads a file block by block (mono, resampled, checked) in bounded memory.
- :func:`validate_waveform` checks an in-memory array (used by the runtime and the ROS node):
  dtype, shape (mono, 1-D), sample rate, emptiness, minimum duration, NaN/Inf.  Hard problems
  raise :class:`AudioError` (a ``ValueError``) naming the file or stream; clipping and DC
  offset are only reported as warnings (:class:`ClippingWarning`, :class:`DCOffsetWarning`).
- :func:`to_float32` / :func:`to_int16` / :func:`to_int32` convert between sample formats.
"""

from __future__ import annotations

import errno
import stat
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from physioser import SAMPLE_RATE

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioWarning",
    "ClippingWarning",
    "DCOffsetWarning",
    "DownmixWarning",
    "MAX_FILE_RATE",
    "MIN_FILE_RATE",
    "MIN_SECONDS",
    "audio_info",
    "downmix",
    "load_audio",
    "resample",
    "stream_audio",
    "to_float32",
    "to_int16",
    "to_int32",
    "validate_waveform",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MIN_SECONDS = 0.1
"""Default minimum duration: shorter clips carry no usable emotion cue and break framing."""
MIN_FILE_RATE = 1000
MAX_FILE_RATE = 768_000
"""Sample rates a file may declare: outside this a header is corrupt or hostile (1 Hz would make
resampling to 16 kHz expand a small file 16000-fold)."""
CLIP_LEVEL = 0.999
"""|x| at or above this (float full scale 1.0) counts as a clipped sample."""
CLIP_RUN = 3
"""This many consecutive samples at full scale are reported as clipping."""
DC_THRESHOLD = 0.01
"""|mean| above this (fraction of full scale) is reported as DC offset."""


class AudioError(ValueError):
    """Audio that cannot be used: the message names the file or stream and the problem."""


class AudioWarning(UserWarning):
    """Audio that is usable but suspicious."""


class ClippingWarning(AudioWarning):
    """Runs of samples at full scale (or float samples beyond ±1)."""


class DCOffsetWarning(AudioWarning):
    """A constant offset in the waveform."""


class DownmixWarning(AudioWarning):
    """Channels cancel each other when mixed down to mono (phase-inverted stereo)."""


def _check_float32_range(x: np.ndarray, name: str) -> None:
    """Float samples wider than float32 that the cast would turn into ±Inf are an error."""
    if x.dtype.itemsize > 4:
        huge = np.abs(x.reshape(-1)) > np.finfo(np.float32).max
        if huge.any():
            raise AudioError(
                f"{name}: {int(huge.sum())} samples beyond the float32 range (first at sample {int(np.argmax(huge))}); "
                "audio must be normalised to [-1, 1]"
            )


def to_float32(x: np.ndarray, *, name: str = "waveform") -> np.ndarray:
    """Convert integer PCM (int16, int32, uint8) or float64 samples to float32 in [-1, 1)."""
    x = np.asarray(x)
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2147483648.0).astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.floating):
        _check_float32_range(x, name)
        return x.astype(np.float32, copy=False)
    raise AudioError(f"{name}: unsupported sample type {x.dtype} (expected int16, int32, uint8 or float)")


def _to_int(x: np.ndarray, bits: int, dtype: type, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == dtype:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        x = to_float32(x, name=name)
    finite = np.isfinite(x)
    if not finite.all():
        raise AudioError(f"{name}: {int(x.size - finite.sum())} NaN/Inf samples cannot be converted to int{bits} PCM")
    beyond = int((np.abs(x) > 1.0).sum())
    if beyond:
        warnings.warn(f"{name}: {beyond} samples beyond ±1 saturated at int{bits} full scale", ClippingWarning, stacklevel=3)
    scale = float(2 ** (bits - 1))
    # saturate before scaling: a huge sample times the scale would overflow float64
    return np.clip(np.round(np.clip(x.astype(np.float64), -1.0, 1.0) * scale), -scale, scale - 1).astype(dtype)


def to_int16(x: np.ndarray, *, name: str = "waveform") -> np.ndarray:
    """Convert float (full scale ±1) or other integer PCM to int16, saturating at full scale."""
    return _to_int(x, 16, np.int16, name)


def to_int32(x: np.ndarray, *, name: str = "waveform") -> np.ndarray:
    """Convert float (full scale ±1) or other integer PCM to int32, saturating at full scale."""
    return _to_int(x, 32, np.int32, name)


def downmix(x: np.ndarray, *, name: str = "waveform") -> np.ndarray:
    """Mix ``[frames, channels]`` down to mono ``[frames]`` (mean of the channels).

    A 1-D input is returned unchanged.  Warns with :class:`DownmixWarning` when channels cancel:
    the mix keeps less than a quarter of the energy uncorrelated channels would give (channels in
    opposite phase); ordinary stereo, correlated or not, does not warn.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise AudioError(f"{name}: expected [frames] or [frames, channels], got shape {x.shape}")
    if x.dtype.kind not in "iuf":  # signed/unsigned integer PCM or float (not bool, complex, timedelta, objects)
        raise AudioError(f"{name}: unsupported sample type {x.dtype} (expected integer PCM or float)")
    if x.size == 0:
        raise AudioError(f"{name}: empty ({x.shape[0]} frames x {x.shape[1]} channels)")
    if x.shape[1] == 1:
        return x[:, 0]
    # absurd magnitudes (> 1e154) and ±Inf channels (their mean is NaN) are rejected later by validate_waveform
    with np.errstate(over="ignore", invalid="ignore"):
        mono = x.mean(axis=1, dtype=np.float64).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
        channel_energy = float(np.mean(np.square(x, dtype=np.float64)))
        mono_energy = float(np.mean(np.square(mono, dtype=np.float64)))
    # Uncorrelated channels mix to 1/C of their mean energy, identical ones to all of it: warn only
    # where the mix keeps under a quarter of the uncorrelated figure (channels in opposite phase;
    # for two equal channels, a correlation below -0.75).
    if channel_energy > 0 and mono_energy < 0.25 * channel_energy / x.shape[1]:
        warnings.warn(
            f"{name}: the {x.shape[1]} channels cancel when mixed to mono (opposite phase?); "
            f"the mono signal keeps {mono_energy / channel_energy:.0%} of their energy",
            DownmixWarning,
            stacklevel=2,
        )
    return mono


def resample(x: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float32 mono audio with soxr (high quality); a no-op when the rates match."""
    if orig_sr == target_sr:
        return x
    if orig_sr <= 0 or target_sr <= 0:
        raise AudioError(f"invalid sample rates {orig_sr} -> {target_sr}")
    return soxr.resample(x, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def validate_waveform(
    x: np.ndarray,
    sr: int = SAMPLE_RATE,
    *,
    name: str = "waveform",
    min_seconds: float = MIN_SECONDS,
    expected_sr: int | None = None,
) -> np.ndarray:
    """Check one waveform and return it as contiguous float32 ``[S]``.

    Raises :class:`AudioError` (naming ``name``) for: not an array, integer samples, more than
    one channel, a sample rate other than ``expected_sr`` (when given), empty, shorter than
    ``min_seconds``, NaN or Inf.  Warns (:class:`ClippingWarning`, :class:`DCOffsetWarning`)
    for clipping and DC offset; those waveforms are still returned.
    """
    if not isinstance(x, np.ndarray):
        raise AudioError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(
            f"{name}: samples are {x.dtype}, expected float32 in [-1, 1] (convert with physioser.audio.to_float32)"
        )
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise AudioError(
            f"{name}: expected mono [samples], got shape {tuple(x.shape)} "
            "(multi-channel audio: mix down with physioser.audio.downmix)"
        )
    if expected_sr is not None and sr != expected_sr:
        raise AudioError(f"{name}: sample rate {sr} Hz, expected {expected_sr} Hz (resample first)")
    if sr <= 0:
        raise AudioError(f"{name}: invalid sample rate {sr}")
    if x.size == 0:
        raise AudioError(f"{name}: empty (0 samples)")
    seconds = x.size / sr
    if seconds < min_seconds:
        raise AudioError(f"{name}: too short ({seconds:.3f} s < minimum {min_seconds:g} s)")
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(x.size - finite.sum())
        first = int(np.argmin(finite))
        raise AudioError(f"{name}: {bad} NaN/Inf samples (first at sample {first})")
    _check_float32_range(x, name)
    x = np.ascontiguousarray(x, dtype=np.float32)
    magnitude = np.abs(x)
    beyond = int((magnitude > 1.0).sum())
    full = magnitude >= CLIP_LEVEL
    clipped_runs = full[: -(CLIP_RUN - 1)].copy() if x.size >= CLIP_RUN else np.zeros(0, dtype=bool)
    for shift in range(1, CLIP_RUN):
        clipped_runs &= full[shift : x.size - CLIP_RUN + 1 + shift]
    if beyond or clipped_runs.any():
        warnings.warn(
            f"{name}: clipped ({int(full.sum())} samples at full scale, {beyond} beyond ±1)",
            ClippingWarning,
            stacklevel=2,
        )
    offset = float(x.mean(dtype=np.float64))
    if abs(offset) > DC_THRESHOLD:
        warnings.warn(f"{name}: DC offset {offset:+.4f} of full scale", DCOffsetWarning, stacklevel=2)
    return x


def _require_file(path: Path) -> None:
    """Raise AudioError unless ``path`` is a regular file (through symbolic links), saying what it is."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise AudioError(f"{path}: symbolic link loop") from None
        if error.errno == errno.ENOENT:
            raise AudioError(f"{path}: " + ("broken symbolic link (its target does not exist)" if path.is_symlink()
                                            else "no such file")) from None
        raise AudioError(f"{path}: cannot open ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not stat.S_ISREG(mode):
        raise AudioError(f"{path}: not a regular file (a device, pipe or socket)")


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file (sample rate, channels, frames) without decoding it."""
    path = Path(path)
    _require_file(path)
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error


def load_audio(
    path: str | Path,
    *,
    target_sr: int = SAMPLE_RATE,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Read an audio file (wav/flac/ogg) as float32 mono ``[S]`` at ``target_sr``.

    Stereo is mixed down (mean of channels), other rates are resampled with soxr (HQ).
    Raises :class:`AudioError` naming the file for a missing file, an undecodable file, an
    empty file, audio shorter than ``min_seconds`` and NaN/Inf samples; clipping and DC
    offset produce warnings.
    """
    path = Path(path)
    _require_file(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            sr = handle.samplerate
            if not MIN_FILE_RATE <= sr <= MAX_FILE_RATE:
                raise AudioError(f"{path}: sample rate {sr} Hz is outside {MIN_FILE_RATE}..{MAX_FILE_RATE} Hz (corrupt header?)")
            data = handle.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:  # ValueError: e.g. unknown length
        raise AudioError(f"{path}: cannot decode audio ({error})") from error
    if data.size == 0:
        raise AudioError(f"{path}: empty (0 samples)")
    name = str(path)
    mono = downmix(data, name=name)
    if not np.isfinite(mono).all():
        # check before resampling, which would smear NaN over the whole signal
        validate_waveform(mono, sr, name=name, min_seconds=0.0)
    return validate_waveform(resample(mono, sr, target_sr), target_sr, name=name, min_seconds=min_seconds)


def stream_audio(
    path: str | Path,
    *,
    target_sr: int = SAMPLE_RATE,
    block_s: float = 10.0,
    min_seconds: float = MIN_SECONDS,
) -> Iterator[np.ndarray]:
    """Read an audio file as consecutive float32 mono blocks at ``target_sr`` (about ``block_s`` each).

    The same conversions and checks as :func:`load_audio`, in memory bounded by one block whatever
    the file's length (the resampler streams across block boundaries). Errors name the file; a
    file shorter than ``min_seconds`` (from its header) is refused before any decoding.
    """
    path = Path(path)
    name = str(path)
    _require_file(path)
    try:
        handle = sf.SoundFile(name)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"{path}: cannot decode audio ({error})") from error
    with handle:
        sr = handle.samplerate
        if not MIN_FILE_RATE <= sr <= MAX_FILE_RATE:
            raise AudioError(f"{path}: sample rate {sr} Hz is outside {MIN_FILE_RATE}..{MAX_FILE_RATE} Hz (corrupt header?)")
        if handle.frames <= 0:
            raise AudioError(f"{path}: empty (0 samples)")
        if handle.frames / sr < min_seconds:
            raise AudioError(f"{path}: too short ({handle.frames / sr:.3f} s < minimum {min_seconds:g} s)")
        resampler = None if sr == target_sr else soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ")
        size = max(1, int(block_s * sr))
        while True:
            try:
                data = handle.read(size, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
                raise AudioError(f"{path}: cannot decode audio ({error})") from error
            last = len(data) < size
            mono = downmix(data, name=name) if len(data) else np.zeros(0, np.float32)
            if not np.isfinite(mono).all():
                validate_waveform(mono, sr, name=name, min_seconds=0.0)  # raises, naming the file
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
            if len(mono):
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                return
