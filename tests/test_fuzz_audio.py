"""Fuzzing the audio boundary (physioser.audio): bytes as files, arrays of any dtype/shape/value.

Contract checked on every example: the function returns float32 mono [S] samples that are all
finite (and at least ``min_seconds`` long), or raises AudioError naming the file/stream; the only
warnings allowed are physioser's AudioWarning subclasses (clipping, DC offset, downmix).
"""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from physioser.audio import (
    AudioError,
    AudioWarning,
    MAX_FILE_RATE,
    MIN_FILE_RATE,
    downmix,
    load_audio,
    to_float32,
    to_int16,
    to_int32,
    validate_waveform,
)
from tests.fuzzing import budget, byte_edits, check_rejection, mutate, only_warnings

TMP = Path(tempfile.mkdtemp(prefix="physioser-fuzz-audio-"))


def _check_loaded(x: np.ndarray, min_samples: int) -> None:
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1
    assert x.flags.c_contiguous and x.size >= max(1, min_samples)
    assert np.isfinite(x).all()


# ------------------------------------------------------------------ arrays

any_dtype = st.one_of(
    hnp.scalar_dtypes(),
    st.just(np.dtype(object)),
    hnp.byte_string_dtypes(max_len=4),
    hnp.unicode_string_dtypes(max_len=4),
)
any_array = hnp.arrays(any_dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40))
float_array = hnp.arrays(
    st.sampled_from([np.float16, np.float32, np.float64, np.longdouble]),
    hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=400),
    elements=st.floats(allow_nan=True, allow_infinity=True, width=16),
)


@settings(max_examples=budget(300))
@given(x=st.one_of(any_array, float_array), sr=st.sampled_from([16000, 8000, 1, 0, -16000]),
       min_seconds=st.sampled_from([0.0, 0.001, 0.1]))
@example(x=np.array([1e300, 0.5] * 1000), sr=16000, min_seconds=0.0)  # finite float64 that overflows float32
@example(x=np.array([-1e39] * 2000, dtype=np.float64), sr=16000, min_seconds=0.0)
def test_fuzz_validate_waveform(x, sr, min_seconds):
    with only_warnings(AudioWarning):
        try:
            out = validate_waveform(x, sr, name="fuzz-stream", min_seconds=min_seconds)
        except AudioError as exc:
            check_rejection(exc, (AudioError,), "fuzz-stream")
            return
    _check_loaded(out, int(np.ceil(min_seconds * sr)))
    assert sr > 0


@settings(max_examples=budget(40))
@given(seconds=st.floats(0.0, 240.0), seed=st.integers(0, 2**16), bad=st.sampled_from([None, np.nan, np.inf, -np.inf, 1e39]),
       where=st.floats(0.0, 1.0), dtype=st.sampled_from([np.float32, np.float64]))
def test_fuzz_validate_lengths_zero_to_minutes(seconds, seed, bad, where, dtype):
    """Lengths from 0 to 4 minutes; one bad sample (NaN/Inf/overflow) anywhere must be found."""
    n = int(seconds * 16000)
    x = (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(dtype)
    if bad is not None and n:
        with np.errstate(over="ignore"):  # 1e39 in a float32 array is +Inf, on purpose
            x[min(n - 1, int(where * n))] = bad
    with only_warnings(AudioWarning):
        try:
            out = validate_waveform(x, 16000, name="long-stream")
        except AudioError as exc:
            check_rejection(exc, (AudioError,), "long-stream")
            assert n < 1600 or bad is not None
            return
    assert bad is None  # a bad sample anywhere is always found
    _check_loaded(out, 1600)
    assert out.size == n


@settings(max_examples=budget(200))
@given(x=st.one_of(any_array, float_array))
def test_fuzz_conversions(x):
    """to_float32 / to_int16 / to_int32 / downmix: a result of the right type, or AudioError."""
    with only_warnings(AudioWarning):
        for convert, dtype in ((to_float32, np.float32), (to_int16, np.int16), (to_int32, np.int32)):
            try:
                out = convert(x, name="fuzz-array")
            except AudioError as exc:
                check_rejection(exc, (AudioError,), "fuzz-array")
                continue
            assert out.dtype == dtype and out.shape == np.shape(x)
            if dtype == np.float32 and np.issubdtype(np.asarray(x).dtype, np.integer):
                assert np.all(np.abs(out) <= 1.0)
        try:
            mono = downmix(x, name="fuzz-array")
        except AudioError as exc:
            check_rejection(exc, (AudioError,), "fuzz-array")
            return
    assert mono.ndim <= 1 or np.asarray(x).ndim <= 1


# ------------------------------------------------------------------ files

def _wav_bytes(fmt_tag, channels, rate, bits, data, *, data_size=None, block_align=None) -> bytes:
    """A RIFF/WAVE file with an arbitrary (possibly lying) header."""
    block_align = block_align if block_align is not None else (channels * max(bits, 8)) // 8 & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                      (rate * block_align) & 0xFFFFFFFF, block_align & 0xFFFF, bits & 0xFFFF)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size & 0xFFFFFFFF) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _valid_file(fmt: str, subtype: str, seconds: float = 0.3, rate: int = 22050, channels: int = 2) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] * np.ones(channels)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


SEEDS = {
    ".wav": _valid_file("WAV", "PCM_16"),
    ".flac": _valid_file("FLAC", "PCM_16"),
    ".ogg": _valid_file("OGG", "VORBIS"),
}


def _load(data: bytes, suffix: str, counter=[0]):  # noqa: B006 - a per-process file counter
    counter[0] += 1
    path = TMP / f"fuzz-{counter[0]}{suffix}"
    path.write_bytes(data)
    try:
        with only_warnings(AudioWarning):
            try:
                out = load_audio(path)
            except AudioError as exc:
                check_rejection(exc, (AudioError,), str(path))
                return None
        _check_loaded(out, 1600)
        return out
    finally:
        path.unlink()


@settings(max_examples=budget(150), suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ""]))
def test_fuzz_random_bytes_as_audio_file(data, suffix):
    _load(data, suffix)


@settings(max_examples=budget(200), suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt_tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0, 2, 0x40, 0x55]) | st.integers(0, 0xFFFF),
    channels=st.sampled_from([1, 2, 0, 3, 64, 65535]) | st.integers(0, 0xFFFF),
    rate=st.sampled_from([16000, 44100, 8000, 1, 0, 999, 1000, 2**31 - 1, 2**32 - 1, 768000, 768001]) | st.integers(0, 2**32 - 1),
    bits=st.sampled_from([8, 16, 24, 32, 64, 0, 12]) | st.integers(0, 0xFFFF),
    data=st.binary(max_size=8192),
    lie=st.sampled_from([None, 0, 1, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1),
)
def test_fuzz_wav_headers(fmt_tag, channels, rate, bits, data, lie):
    """RIFF/WAVE headers with any format tag, channel count, rate, bit depth and a lying data size."""
    out = _load(_wav_bytes(fmt_tag, channels, rate, bits, data, data_size=lie), ".wav")
    if out is not None:
        assert MIN_FILE_RATE <= rate <= MAX_FILE_RATE


@settings(max_examples=budget(150), suppress_health_check=[HealthCheck.too_slow])
@given(suffix=st.sampled_from(sorted(SEEDS)), edits=byte_edits(max_blob=16, min_size=1, max_size=6))
def test_fuzz_mutated_valid_files(suffix, edits):
    """A valid wav/flac/ogg with bytes flipped, truncated or inserted anywhere (headers included)."""
    _load(mutate(SEEDS[suffix], edits), suffix)


# ------------------------------------------------------------------ regressions found by the fuzzers

def test_float64_beyond_float32_range_is_rejected_not_turned_into_inf():
    """Finding: finite float64 samples beyond float32's range became ±Inf after the cast to float32."""
    x = np.full(3200, 0.1)
    x[100] = 1e300
    with pytest.raises(AudioError, match="stream-a: .*beyond the float32 range"):
        validate_waveform(x, 16000, name="stream-a")


@pytest.mark.parametrize("rate", [1, 10, 999, 768_001, 2**31 - 1])
def test_file_with_an_absurd_sample_rate_is_refused_before_decoding(tmp_path, rate):
    """Finding: a 100 kB file declaring 1 Hz would be resampled to 16 kHz: 13 GB of float32 (memory bomb)."""
    path = tmp_path / "rate.wav"
    path.write_bytes(_wav_bytes(1, 1, rate, 16, b"\x01\x00" * 50_000))
    with pytest.raises(AudioError, match=f"rate.wav: sample rate {rate} Hz is outside"):
        load_audio(path)


@pytest.mark.parametrize("convert", [to_int16, to_int32])
def test_nan_cannot_be_converted_to_integer_pcm(convert):
    """Finding: NaN became an arbitrary integer (numpy's cast of NaN) when writing PCM."""
    with pytest.raises(AudioError, match="pcm-out: .*NaN"):
        convert(np.array([0.1, np.nan, 0.2], np.float32), name="pcm-out")


def test_downmix_rejects_non_numeric_samples():
    """Finding: object/complex/bool [frames, channels] arrays crashed downmix with TypeError/ComplexWarning."""
    for x in (np.array([[None, None]], dtype=object), np.ones((4, 2), complex), np.ones((4, 2), bool)):
        with pytest.raises(AudioError, match="mix: unsupported sample type"):
            downmix(x, name="mix")
    for shape in ((0, 0), (0, 2), (5, 0)):  # numpy warned "Mean of empty slice" and returned NaN
        with pytest.raises(AudioError, match="mix: empty"):
            downmix(np.zeros(shape, np.int16), name="mix")


def test_wav_header_without_a_frame_count_is_an_audio_error(tmp_path):
    """Finding: a WAV whose format tag libsndfile opens as non-seekable (0x40, G.721 ADPCM) made
    soundfile raise a bare ValueError ("frames must be specified for non-seekable files")."""
    path = tmp_path / "nolen.wav"
    path.write_bytes(_wav_bytes(0x40, 1, 16000, 16, b"\x01\x02" * 200))
    with pytest.raises(AudioError, match="nolen.wav: cannot decode audio"):
        load_audio(path)
