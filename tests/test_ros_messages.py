"""Decoders of every supported ROS audio message, on CDR bytes written by rosbags (no ROS runtime).

Where rclpy imports, the std_msgs cases also deserialise the same rosbags bytes with rclpy, so the
decoders are checked on the objects the live node receives too.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from physioser.ros import messages as M

RNG = np.random.default_rng(0)
TONE = (0.5 * np.sin(2 * np.pi * 220 * np.arange(480) / 16000)).astype(np.float32)
PCM16 = np.round(TONE * 32767).astype(np.int16)


def _empty(dtype):
    return np.zeros(0, dtype)


def roundtrip(store, msg):
    """Serialise with rosbags to CDR bytes and read them back (as a bag reader would)."""
    raw = store.serialize_cdr(msg, msg.__msgtype__)
    assert isinstance(raw, (bytes, bytearray, memoryview, np.ndarray)) and len(raw) > 4
    return store.deserialize_cdr(raw, msg.__msgtype__), bytes(raw)


@pytest.fixture(scope="module")
def drivers():
    return M.typestore("ros-drivers")


@pytest.fixture(scope="module")
def mgonzs13():
    return M.typestore("mgonzs13")


def multiarray(store, kind, data, dims=(), offset=0):
    T = store.types
    layout = T["std_msgs/msg/MultiArrayLayout"](
        dim=[T["std_msgs/msg/MultiArrayDimension"](label=label, size=size, stride=stride) for label, size, stride in dims],
        data_offset=offset,
    )
    return T[f"std_msgs/msg/{kind}"](layout=layout, data=data)


def header(store):
    T = store.types
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=12, nanosec=5), frame_id="mic")


def stamped(store, *, fmt=8, channels=1, rate=16000, **fields):
    T = store.types
    data = {f: _empty(d) for f, d in (("float32_data", np.float32), ("int32_data", np.int32), ("int16_data", np.int16),
                                       ("int8_data", np.int8), ("uint8_data", np.uint8))}
    data.update(fields)
    audio = T["audio_common_msgs/msg/Audio"](
        audio_data=T["audio_common_msgs/msg/AudioData"](**data),
        info=T["audio_common_msgs/msg/AudioInfo"](format=fmt, channels=channels, rate=rate, chunk=512),
    )
    return T["audio_common_msgs/msg/AudioStamped"](header=header(store), audio=audio)


F16K = M.AudioFormat(16000, 1, "S16LE")


# ---- every type, valid ----------------------------------------------------------------------

def test_ros_drivers_audio_data_s16le(drivers):
    msg, _ = roundtrip(drivers, drivers.types["audio_common_msgs/msg/AudioData"](data=np.frombuffer(PCM16.tobytes(), np.uint8)))
    out = M.decode_audio_data(msg, F16K)
    assert out.format == F16K and out.samples.dtype == np.float32
    np.testing.assert_allclose(out.samples, PCM16 / 32768.0, atol=1e-7)


def test_ros_drivers_audio_data_stamped_stereo_44k(drivers):
    stereo = np.stack([PCM16, -PCM16 // 2], axis=1).reshape(-1)
    T = drivers.types
    msg = T["audio_common_msgs/msg/AudioDataStamped"](
        header=header(drivers), audio=T["audio_common_msgs/msg/AudioData"](data=np.frombuffer(stereo.tobytes(), np.uint8)))
    msg, _ = roundtrip(drivers, msg)
    out = M.decode_audio_data_stamped(msg, M.AudioFormat(44100, 2, "S16LE"))
    assert out.format.sample_rate == 44100 and out.samples.size == PCM16.size
    np.testing.assert_allclose(out.samples, (PCM16 + (-PCM16 // 2)) / 2 / 32768.0, atol=1e-6)


@pytest.mark.parametrize("encoding,dtype,scale", [("S32LE", "<i4", 2**31), ("F32LE", "<f4", 1.0), ("U8", "u1", 128), ("S8", "i1", 128)])
def test_pcm_encodings(drivers, encoding, dtype, scale):
    if encoding == "U8":
        values = (np.round(TONE * 127) + 128).astype(dtype)
        expect = (values.astype(np.float32) - 128) / 128
    elif encoding == "F32LE":
        values, expect = TONE.astype(dtype), TONE
    else:
        values = np.round(TONE * (scale - 1)).astype(dtype)
        expect = values.astype(np.float64) / scale
    msg, _ = roundtrip(drivers, drivers.types["audio_common_msgs/msg/AudioData"](data=np.frombuffer(values.tobytes(), np.uint8)))
    out = M.decode_audio_data(msg, M.AudioFormat(16000, 1, encoding))
    np.testing.assert_allclose(out.samples, expect, atol=1e-6)


def test_ros_drivers_audio_info(drivers):
    info, _ = roundtrip(drivers, drivers.types["audio_common_msgs/msg/AudioInfo"](
        channels=2, sample_rate=48000, sample_format="S16LE", bitrate=0, coding_format="wave"))
    assert M.decode_ros_drivers_audio_info(info) == M.AudioFormat(48000, 2, "S16LE")
    mp3, _ = roundtrip(drivers, drivers.types["audio_common_msgs/msg/AudioInfo"](
        channels=1, sample_rate=16000, sample_format="S16LE", bitrate=192, coding_format="mp3"))
    with pytest.raises(M.MessageDecodeError, match="format:=wave") as err:
        M.decode_ros_drivers_audio_info(mp3)
    assert err.value.reason == "unsupported_format" and "AudioInfo" in str(err.value)


@pytest.mark.parametrize("flag,field,values", [
    (8, "int16_data", PCM16),
    (1, "float32_data", TONE),
    (2, "int32_data", PCM16.astype(np.int32) * 65536),
    (16, "int8_data", (PCM16 // 256).astype(np.int8)),
    (32, "uint8_data", (PCM16 // 256 + 128).astype(np.uint8)),
])
def test_mgonzs13_audio_stamped(mgonzs13, flag, field, values):
    msg, _ = roundtrip(mgonzs13, stamped(mgonzs13, fmt=flag, rate=22050, **{field: values}))
    out = M.decode_audio_stamped(msg)
    assert out.format.sample_rate == 22050 and out.format.channels == 1
    np.testing.assert_allclose(out.samples, TONE, atol=1.0 / 64)  # 8-bit formats are coarse


def test_mgonzs13_audio_info(mgonzs13):
    info, _ = roundtrip(mgonzs13, mgonzs13.types["audio_common_msgs/msg/AudioInfo"](format=1, channels=2, rate=48000, chunk=512))
    assert M.decode_mgonzs13_audio_info(info) == M.AudioFormat(48000, 2, "F32")


def _rclpy_std_msgs():
    pytest.importorskip("rclpy", reason="rclpy (the ros extra) is not installed")
    from rclpy.serialization import deserialize_message
    import std_msgs.msg

    return deserialize_message, std_msgs.msg


@pytest.mark.parametrize("kind,data,fmt", [
    ("Int16MultiArray", PCM16, F16K),
    ("Float32MultiArray", TONE, F16K),
    ("UInt8MultiArray", np.frombuffer(PCM16.tobytes(), np.uint8), F16K),
])
@pytest.mark.parametrize("reader", ["rosbags", "rclpy"])
def test_std_msgs_types(drivers, kind, data, fmt, reader):
    msg, raw = roundtrip(drivers, multiarray(drivers, kind, data, dims=[("samples", data.size, data.size)]))
    if reader == "rclpy":
        deserialize, msgs = _rclpy_std_msgs()
        msg = deserialize(raw, getattr(msgs, kind))
    decode = M.audio_type(f"std_msgs/{kind}").decode
    out = decode(msg, fmt)
    np.testing.assert_allclose(out.samples, PCM16 / 32768.0, atol=1e-4)
    assert out.format.sample_rate == 16000


def test_multiarray_frames_by_channels_layout_and_offset(drivers):
    stereo = np.stack([PCM16, PCM16], axis=1).reshape(-1)
    data = np.concatenate([np.array([7, 7], np.int16), stereo])
    msg, _ = roundtrip(drivers, multiarray(drivers, "Int16MultiArray", data,
                                           dims=[("frames", PCM16.size, stereo.size), ("channels", 2, 2)], offset=2))
    out = M.decode_int16_multiarray(msg, F16K)
    assert out.format.channels == 2
    np.testing.assert_allclose(out.samples, PCM16 / 32768.0, atol=1e-7)


# ---- malformed input: a specific error naming the message and the problem --------------------

@pytest.mark.parametrize("build,decode,reason,words", [
    (lambda s: s.types["audio_common_msgs/msg/AudioData"](data=np.zeros(321, np.uint8)), M.decode_audio_data,
     "odd_byte_count", "321 bytes"),
    (lambda s: s.types["audio_common_msgs/msg/AudioData"](data=_empty(np.uint8)), M.decode_audio_data, "empty", "no bytes"),
    (lambda s: multiarray(s, "Int16MultiArray", _empty(np.int16)), M.decode_int16_multiarray, "empty", "no samples"),
    (lambda s: multiarray(s, "Float32MultiArray", np.array([0.1, np.nan, np.inf], np.float32)), M.decode_float32_multiarray,
     "non_finite", "2 of 3"),
    (lambda s: multiarray(s, "Float32MultiArray", np.array([0.1, 300.0], np.float32)), M.decode_float32_multiarray,
     "out_of_range", "[-1, 1]"),
    (lambda s: multiarray(s, "Int16MultiArray", PCM16[:5], dims=[("frames", 2, 4), ("channels", 2, 2)]),
     M.decode_int16_multiarray, "bad_layout", "declares 4 values"),
    (lambda s: multiarray(s, "Int16MultiArray", PCM16[:6], dims=[("a", 1, 1), ("b", 2, 2), ("c", 3, 3)]),
     M.decode_int16_multiarray, "bad_layout", "3 dimensions"),
    (lambda s: multiarray(s, "UInt8MultiArray", np.zeros(9, np.uint8), offset=20), M.decode_uint8_multiarray,
     "bad_layout", "data_offset 20"),
    (lambda s: multiarray(s, "UInt8MultiArray", np.zeros(9, np.uint8)), M.decode_uint8_multiarray, "odd_byte_count", "9 bytes"),
])
def test_malformed_messages(drivers, build, decode, reason, words):
    msg, _ = roundtrip(drivers, build(drivers))
    with pytest.raises(M.MessageDecodeError) as err:
        decode(msg, F16K)
    assert err.value.reason == reason
    assert words in str(err.value) and err.value.message_type.split("/")[0] in ("std_msgs", "audio_common_msgs")


def test_channel_mismatch_and_bad_formats(drivers, mgonzs13):
    msg, _ = roundtrip(drivers, multiarray(drivers, "Int16MultiArray", PCM16[:5]))
    with pytest.raises(M.MessageDecodeError, match="2 interleaved channels") as err:
        M.decode_int16_multiarray(msg, M.AudioFormat(16000, 2))
    assert err.value.reason == "channel_mismatch"
    for fmt, reason in [(M.AudioFormat(0, 1), "bad_rate"), (M.AudioFormat(16000, 0), "bad_channels"),
                        (M.AudioFormat(16000, 1, "MP3"), "unsupported_format")]:
        with pytest.raises(M.MessageDecodeError) as err:
            M.decode_pcm_bytes(np.zeros(4, np.uint8), fmt, "std_msgs/UInt8MultiArray")
        assert err.value.reason == reason
    bad_flag, _ = roundtrip(mgonzs13, stamped(mgonzs13, fmt=4, int16_data=PCM16))
    with pytest.raises(M.MessageDecodeError, match="PortAudio format flag 4"):
        M.decode_audio_stamped(bad_flag)
    wrong_field, _ = roundtrip(mgonzs13, stamped(mgonzs13, fmt=1, int16_data=PCM16))
    with pytest.raises(M.MessageDecodeError, match="float32_data but it is empty.*int16_data"):
        M.decode_audio_stamped(wrong_field)
    zero_rate, _ = roundtrip(mgonzs13, stamped(mgonzs13, rate=0, int16_data=PCM16))
    with pytest.raises(M.MessageDecodeError) as err:
        M.decode_audio_stamped(zero_rate)
    assert err.value.reason == "bad_rate"
    # the mgonzs13 AudioData handed to the ros-drivers decoder
    other = mgonzs13.types["audio_common_msgs/msg/AudioData"](float32_data=TONE, int32_data=_empty(np.int32),
                                                             int16_data=_empty(np.int16), int8_data=_empty(np.int8),
                                                             uint8_data=_empty(np.uint8))
    with pytest.raises(M.MessageDecodeError, match="mgonzs13") as err:
        M.decode_audio_data(other, F16K)
    assert err.value.reason == "wrong_type"


def test_audio_type_lookup():
    assert M.audio_type("std_msgs/msg/Int16MultiArray").name == "std_msgs/Int16MultiArray"
    assert M.audio_type("audio_common_msgs/AudioStamped").flavour == "mgonzs13"
    with pytest.raises(ValueError, match="not supported; choose one of"):
        M.audio_type("sensor_msgs/Image")


# ---- fuzzing: any content gives samples or a MessageDecodeError, nothing else ----------------

class _Bytes:
    def __init__(self, data):
        self.data = data


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), encoding=st.sampled_from(sorted(M.PCM_ENCODINGS)), channels=st.integers(1, 4))
def test_fuzz_pcm_bytes(data, encoding, channels):
    try:
        out = M.decode_audio_data(_Bytes(data), M.AudioFormat(16000, channels, encoding))
    except M.MessageDecodeError as err:
        assert err.reason in {"empty", "odd_byte_count", "channel_mismatch", "non_finite", "out_of_range"}
        return
    assert out.samples.dtype == np.float32 and np.all(np.isfinite(out.samples)) and np.all(np.abs(out.samples) <= 1.0)
    assert out.samples.size * channels * np.dtype(M.PCM_ENCODINGS[encoding][0]).itemsize == len(data)


class _Layout:
    def __init__(self, dims, offset):
        self.dim, self.data_offset = dims, offset


class _Dim:
    def __init__(self, size):
        self.label, self.size, self.stride = "d", size, size


class _Multi:
    def __init__(self, data, dims, offset):
        self.data, self.layout = data, _Layout(dims, offset)


@settings(max_examples=300, deadline=None)
@given(
    data=hnp.arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
    sizes=st.lists(st.integers(0, 70), max_size=3),
    offset=st.integers(-2, 70),
)
def test_fuzz_float_multiarray(data, sizes, offset):
    try:
        out = M.decode_float32_multiarray(_Multi(data, [_Dim(s) for s in sizes], offset), F16K)
    except M.MessageDecodeError as err:
        assert err.reason in {"empty", "bad_layout", "bad_channels", "channel_mismatch", "non_finite", "out_of_range"}
        assert "std_msgs/Float32MultiArray" in str(err)
        return
    assert np.all(np.isfinite(out.samples)) and out.samples.size >= 1


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


_TYPED = {"float32_data": np.float32, "int32_data": np.int32, "int16_data": np.int16, "int8_data": np.int8, "uint8_data": np.uint8}


@settings(max_examples=300, deadline=None)
@given(
    flag=st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64]),
    rate=st.integers(-5, 500_000),
    channels=st.integers(-1, 70),
    field=st.sampled_from(sorted(_TYPED)),
    raw=st.binary(max_size=256),
)
def test_fuzz_audio_stamped(flag, rate, channels, field, raw):
    arrays = {name: np.zeros(0, dtype) for name, dtype in _TYPED.items()}
    dtype = np.dtype(_TYPED[field])
    arrays[field] = np.frombuffer(raw[: len(raw) // dtype.itemsize * dtype.itemsize], dtype)
    msg = _Obj(audio=_Obj(audio_data=_Obj(**arrays), info=_Obj(format=flag, channels=channels, rate=rate, chunk=0)))
    try:
        out = M.decode_audio_stamped(msg)
    except M.MessageDecodeError as err:
        assert err.reason in {"unsupported_format", "bad_rate", "bad_channels", "empty", "channel_mismatch",
                              "non_finite", "out_of_range"}
        assert "AudioStamped" in str(err) or "AudioInfo" in str(err)
        return
    assert out.format.sample_rate == rate and out.samples.dtype == np.float32
    assert np.all(np.abs(out.samples) <= 1.0) and out.samples.size * channels == arrays[field].size
