"""Audio I/O: formats, downmix, resampling, sample-format conversion and every rejected input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from physioser import SAMPLE_RATE
from physioser.audio import (
    AudioError,
    ClippingWarning,
    DCOffsetWarning,
    DownmixWarning,
    audio_info,
    downmix,
    load_audio,
    resample,
    stream_audio,
    to_float32,
    to_int16,
    to_int32,
    validate_waveform,
)


def tone(seconds: float = 0.5, sr: int = SAMPLE_RATE, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS"), (".wav", "FLOAT")])
def test_load_formats_resample_to_16k(tmp_path, ext, subtype):
    x = tone(0.5, 44100, freq=300.0)
    path = tmp_path / f"a{ext}"
    sf.write(path, x, 44100, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 8000) <= 1
    # the resampled tone keeps its frequency: spectrum peak at 300 Hz
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(y)
    assert abs(peak_hz - 300.0) < 5.0


def test_stereo_is_mixed_down(tmp_path):
    left, right = tone(0.5, freq=200.0, amp=0.4), tone(0.5, freq=200.0, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_phase_inverted_stereo_warns(tmp_path):
    x = tone(0.5)
    with pytest.warns(DownmixWarning, match="cancel"):
        downmix(np.stack([x, -x * 0.98], axis=1), name="inverted.wav")


def test_ordinary_stereo_does_not_warn_but_cancelling_channels_do():
    """Finding: the down-mix warning fired on uncorrelated channels (the mix of C uncorrelated
    channels keeps 1/C of their energy); it now fires only where channels cancel."""
    import warnings

    rng = np.random.default_rng(0)
    for channels in (2, 4, 6):
        x = (0.1 * rng.standard_normal((16000, channels))).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DownmixWarning)
            downmix(x, name="uncorrelated.wav")
    s = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    with pytest.warns(DownmixWarning, match="anti.wav: the 2 channels cancel"):
        downmix(np.stack([s, -s + 0.01 * rng.standard_normal(16000).astype(np.float32)], axis=1), name="anti.wav")


def test_stereo_beyond_float32_is_refused_without_a_stray_warning(tmp_path):
    """Found by test_fuzz_wav_headers: a float64 stereo file whose samples overflow float32 to +Inf
    and -Inf made downmix's mean emit numpy's "invalid value" RuntimeWarning."""
    import warnings

    path = tmp_path / "huge.wav"
    sf.write(path, np.array([[5e38, -5e38]] * 1600, dtype=np.float64), SAMPLE_RATE, subtype="DOUBLE")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(AudioError, match="huge.wav"):
            load_audio(path)


def test_a_directory_and_a_symlink_loop_get_their_own_errors(tmp_path):
    """Finding: both were reported as "no such file"."""
    folder = tmp_path / "clips.wav"
    folder.mkdir()
    loop = tmp_path / "loop.wav"
    loop.symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(loop)
    dangling = tmp_path / "dangling.wav"
    dangling.symlink_to(tmp_path / "gone.wav")
    for read in (load_audio, audio_info, lambda p: list(stream_audio(p))):
        with pytest.raises(AudioError, match=r"clips\.wav: is a directory"):
            read(folder)
        with pytest.raises(AudioError, match=r"loop\.wav: symbolic link loop"):
            read(loop)
        with pytest.raises(AudioError, match=r"dangling\.wav: broken symbolic link"):
            read(dangling)


def test_target_rate_option(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, tone(1.0), SAMPLE_RATE)
    assert len(load_audio(path, target_sr=8000)) == 8000


def test_int_float_conversions_round_trip():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 0.999969], dtype=np.float32)
    i16 = to_int16(x)
    assert i16.dtype == np.int16 and i16[0] == -32768 and i16[2] == 0
    np.testing.assert_allclose(to_float32(i16), x, atol=1 / 32768)
    i32 = to_int32(x)
    assert i32.dtype == np.int32 and i32[0] == -(2**31)
    np.testing.assert_allclose(to_float32(i32), x, atol=1e-7)
    with pytest.warns(ClippingWarning, match="2 samples beyond ±1 saturated"):
        assert to_int16(np.array([2.0, -2.0])).tolist() == [32767, -32768]  # saturates, never wraps
    np.testing.assert_allclose(to_float32(np.array([0, 128, 255], dtype=np.uint8)), [-1.0, 0.0, 127 / 128])
    assert to_int16(i32).dtype == np.int16
    with pytest.raises(AudioError, match="unsupported sample type"):
        to_float32(np.array(["a"]))


def test_resample_noop_and_length():
    x = tone(1.0, 48000)
    assert resample(x, 16000, 16000) is x
    assert len(resample(x, 48000)) == 16000


# ------------------------------------------------------------------------------ bad files
def test_empty_file_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"empty\.wav: empty"):
        load_audio(path)


def test_too_short_rejected(tmp_path):
    path = tmp_path / "short.flac"
    sf.write(path, tone(0.05), SAMPLE_RATE)
    with pytest.raises(AudioError, match=r"short\.flac: too short \(0\.050 s < minimum 0\.1 s\)"):
        load_audio(path)
    assert len(load_audio(path, min_seconds=0.01)) == 800


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected(tmp_path, bad):
    x = tone(0.5)
    x[100] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, x, 48000, subtype="FLOAT")  # resampling would smear NaN: caught before
    with pytest.raises(AudioError, match=r"bad\.wav: 1 NaN/Inf samples \(first at sample 100\)"):
        load_audio(path)


def test_undecodable_and_missing_rejected(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(AudioError, match=r"garbage\.wav: cannot decode audio"):
        load_audio(path)
    with pytest.raises(AudioError, match=r"nothere\.flac: no such file"):
        load_audio(tmp_path / "nothere.flac")
    truncated = tmp_path / "truncated.flac"
    sf.write(truncated, tone(1.0), SAMPLE_RATE)
    truncated.write_bytes(truncated.read_bytes()[:30])
    with pytest.raises(AudioError, match="truncated.flac"):
        load_audio(truncated)


def test_audio_error_is_value_error():
    assert issubclass(AudioError, ValueError)


# ------------------------------------------------------------------------------ warnings
def test_clipping_warns_but_loads(tmp_path):
    x = tone(0.5, amp=1.5).clip(-1.0, 1.0)
    path = tmp_path / "clipped.wav"
    sf.write(path, x, SAMPLE_RATE, subtype="PCM_16")
    with pytest.warns(ClippingWarning, match=r"clipped\.wav: clipped"):
        y = load_audio(path)
    assert len(y) == 8000


def test_float_beyond_full_scale_warns():
    with pytest.warns(ClippingWarning, match="beyond"):
        validate_waveform(np.full(1600, 0.2, dtype=np.float32) * np.sign(np.arange(1600) % 2 - 0.5) * 6)


def test_single_peak_is_not_clipping():
    x = tone(0.5)
    x[10] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_waveform(x)


def test_dc_offset_warns(tmp_path):
    path = tmp_path / "dc.wav"
    sf.write(path, tone(0.5, amp=0.3) + 0.2, SAMPLE_RATE, subtype="PCM_16")
    with pytest.warns(DCOffsetWarning, match=r"dc\.wav: DC offset \+0\.2"):
        load_audio(path)


# ------------------------------------------------------------------------------ arrays
def test_validate_waveform_accepts_and_normalises():
    x = tone(0.5).astype(np.float64)
    y = validate_waveform(x, name="mic")
    assert y.dtype == np.float32 and y.flags["C_CONTIGUOUS"]
    assert validate_waveform(x[None, :]).shape == (8000,)  # [1, S] is mono


@pytest.mark.parametrize(
    "x,kwargs,message",
    [
        (to_int16(tone(0.5)), {}, r"mic: samples are int16, expected float32"),
        (np.stack([tone(0.5), tone(0.5)]), {}, r"mic: expected mono \[samples\], got shape \(2, 8000\)"),
        (np.zeros((2, 2, 2), dtype=np.float32), {}, "expected mono"),
        (tone(0.5), {"sr": 8000, "expected_sr": 16000}, r"mic: sample rate 8000 Hz, expected 16000 Hz"),
        (np.zeros(0, dtype=np.float32), {}, r"mic: empty \(0 samples\)"),
        (tone(0.01), {}, r"mic: too short"),
        (np.array([0.0, np.nan] * 1000, dtype=np.float32), {}, r"mic: 1000 NaN/Inf samples \(first at sample 1\)"),
        ([0.0] * 8000, {}, "mic: expected a numpy array, got list"),
        (tone(0.5), {"sr": 0}, "invalid sample rate"),
    ],
)
def test_validate_waveform_rejects(x, kwargs, message):
    with pytest.raises(AudioError, match=message):
        validate_waveform(x, name="mic", **kwargs)
