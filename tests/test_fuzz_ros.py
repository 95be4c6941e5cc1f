"""Fuzzing ROS message decoding for every supported type (extends tests/test_ros_messages.py,
which fuzzes raw PCM bytes and Float32MultiArray).

Here: Int16MultiArray and UInt8MultiArray with any layout; AudioDataStamped; mgonzs13
AudioStamped with any format flag, channel count, rate and typed fields; both AudioInfo
flavours with any field values; random CDR bytes for every type through rosbags (as ``ros
replay`` reads a bag) and the node core's ``accept`` on all of it. Every message gives float32
mono samples in [-1, 1] or a MessageDecodeError naming the message type with a known reason;
the node core never raises and counts every message as accepted or rejected.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from physioser.ros import messages as M
from physioser.ros.core import EmotionCore, NodeConfig
from tests.fuzzing import budget, byte_edits, check_rejection, mutate, only_warnings

REASONS = {"empty", "odd_byte_count", "channel_mismatch", "non_finite", "out_of_range", "bad_layout", "bad_channels",
           "bad_rate", "unsupported_format", "wrong_type", "corrupt_cdr"}
DRIVERS = M.typestore("ros-drivers")
MGONZS13 = M.typestore("mgonzs13")
int32s = st.integers(-(2**31), 2**31 - 1)
uint32s = st.integers(0, 2**32 - 1)


def _check(decode, msg, *args):
    with only_warnings():
        try:
            out = decode(msg, *args)
        except M.MessageDecodeError as exc:
            check_rejection(exc, (M.MessageDecodeError,), exc.message_type)
            assert exc.reason in REASONS, exc.reason
            assert "/" in exc.message_type
            return None
    s = out.samples
    assert s.dtype == np.float32 and s.ndim == 1 and s.size >= 1 and s.flags.c_contiguous
    assert np.isfinite(s).all() and np.abs(s).max() <= 1.0
    assert M.MIN_RATE <= out.format.sample_rate <= M.MAX_RATE and 1 <= out.format.channels <= M.MAX_CHANNELS
    return out


def _multiarray(store, kind, data, dims, offset):
    T = store.types
    layout = T["std_msgs/msg/MultiArrayLayout"](
        dim=[T["std_msgs/msg/MultiArrayDimension"](label=label, size=size, stride=stride) for label, size, stride in dims],
        data_offset=offset)
    return T[f"std_msgs/msg/{kind}"](layout=layout, data=data)


dims = st.lists(st.tuples(st.text(max_size=3), uint32s | st.integers(0, 70), uint32s), max_size=3)
formats = st.builds(M.AudioFormat, st.sampled_from([16000, 44100, 8000, 999, 0, -5, 384001]) | int32s,
                    st.integers(-1, 70), st.sampled_from(sorted(M.PCM_ENCODINGS) + ["mp3", "s16le", ""]))


@settings(max_examples=budget(200))
@given(data=hnp.arrays(np.int16, st.integers(0, 300)), dims=dims, offset=uint32s | st.integers(0, 300), fmt=formats)
def test_fuzz_int16_multiarray(data, dims, offset, fmt):
    msg = _multiarray(DRIVERS, "Int16MultiArray", data, dims, offset)
    out = _check(M.decode_int16_multiarray, msg, fmt)
    if out is not None:
        assert out.samples.size * out.format.channels == data.size - offset


@settings(max_examples=budget(200))
@given(data=hnp.arrays(np.uint8, st.integers(0, 300)), dims=dims, offset=uint32s | st.integers(0, 300), fmt=formats)
def test_fuzz_uint8_multiarray(data, dims, offset, fmt):
    _check(M.decode_uint8_multiarray, _multiarray(DRIVERS, "UInt8MultiArray", data, dims, offset), fmt)


@settings(max_examples=budget(150))
@given(data=hnp.arrays(np.uint8, st.integers(0, 400)), fmt=formats)
def test_fuzz_audio_data_stamped(data, fmt):
    T = DRIVERS.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="mic")
    msg = T["audio_common_msgs/msg/AudioDataStamped"](header=header, audio=T["audio_common_msgs/msg/AudioData"](data=data))
    _check(M.decode_audio_data_stamped, msg, fmt)


typed_fields = st.fixed_dictionaries({
    "float32_data": hnp.arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "int32_data": hnp.arrays(np.int32, st.integers(0, 64)),
    "int16_data": hnp.arrays(np.int16, st.integers(0, 64)),
    "int8_data": hnp.arrays(np.int8, st.integers(0, 64)),
    "uint8_data": hnp.arrays(np.uint8, st.integers(0, 64)),
})


def _stamped(fields, fmt, channels, rate, chunk=512):
    T = MGONZS13.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="mic")
    audio = T["audio_common_msgs/msg/Audio"](audio_data=T["audio_common_msgs/msg/AudioData"](**fields),
                                           info=T["audio_common_msgs/msg/AudioInfo"](format=fmt, channels=channels, rate=rate, chunk=chunk))
    return T["audio_common_msgs/msg/AudioStamped"](header=header, audio=audio)


@settings(max_examples=budget(300))
@given(fields=typed_fields, fmt=st.sampled_from(sorted(M.PORTAUDIO_FORMATS)) | int32s,
       channels=st.integers(-2, 70) | int32s, rate=st.sampled_from([16000, 48000, 0]) | int32s)
def test_fuzz_mgonzs13_audio_stamped(fields, fmt, channels, rate):
    _check(M.decode_audio_stamped, _stamped(fields, fmt, channels, rate))


@settings(max_examples=budget(200))
@given(channels=st.integers(0, 255), rate=uint32s, sample_format=st.text(max_size=8) | st.sampled_from(sorted(M.PCM_ENCODINGS)),
       coding=st.text(max_size=6) | st.sampled_from(["wave", "mp3", "", "RAW"]), bitrate=uint32s)
def test_fuzz_ros_drivers_audio_info(channels, rate, sample_format, coding, bitrate):
    msg = DRIVERS.types["audio_common_msgs/msg/AudioInfo"](channels=channels, sample_rate=rate, sample_format=sample_format,
                                                           bitrate=bitrate, coding_format=coding)
    try:
        fmt = M.decode_ros_drivers_audio_info(msg)
    except M.MessageDecodeError as exc:
        check_rejection(exc, (M.MessageDecodeError,), "audio_common_msgs/AudioInfo")
        assert exc.reason in REASONS
        return
    assert M.MIN_RATE <= fmt.sample_rate <= M.MAX_RATE and 1 <= fmt.channels <= M.MAX_CHANNELS and fmt.encoding in M.PCM_ENCODINGS


@settings(max_examples=budget(200))
@given(fmt=int32s | st.sampled_from(sorted(M.PORTAUDIO_FORMATS)), channels=int32s | st.integers(0, 3), rate=int32s, chunk=int32s)
def test_fuzz_mgonzs13_audio_info(fmt, channels, rate, chunk):
    msg = MGONZS13.types["audio_common_msgs/msg/AudioInfo"](format=fmt, channels=channels, rate=rate, chunk=chunk)
    try:
        out = M.decode_mgonzs13_audio_info(msg)
    except M.MessageDecodeError as exc:
        check_rejection(exc, (M.MessageDecodeError,), "audio_common_msgs/AudioInfo")
        return
    assert M.MIN_RATE <= out.sample_rate <= M.MAX_RATE and 1 <= out.channels <= M.MAX_CHANNELS


@settings(max_examples=budget(40))
@given(name=st.text(max_size=40) | st.sampled_from(["std_msgs/msg/Int16MultiArray", "std_msgs//Int16MultiArray",
                                                    "a/b/c/d", "/", "std_msgs/msg/", "audio_common_msgs/msg/AudioStamped "]))
def test_fuzz_audio_type_names(name):
    try:
        spec = M.audio_type(name)
    except ValueError as exc:
        assert "is not supported; choose one of" in str(exc)
        return
    assert spec.name in M.AUDIO_TYPES


# ------------------------------------------------------------------ CDR bytes and the node core

VALID_CDR = {
    "std_msgs/Int16MultiArray": (DRIVERS, DRIVERS.serialize_cdr(
        _multiarray(DRIVERS, "Int16MultiArray", np.arange(64, dtype=np.int16), [], 0), "std_msgs/msg/Int16MultiArray")),
    "audio_common_msgs/AudioData": (DRIVERS, DRIVERS.serialize_cdr(
        DRIVERS.types["audio_common_msgs/msg/AudioData"](data=np.arange(128, dtype=np.uint8)), "audio_common_msgs/msg/AudioData")),
    "audio_common_msgs/AudioStamped": (MGONZS13, MGONZS13.serialize_cdr(
        _stamped({"float32_data": np.zeros(32, np.float32), "int32_data": np.zeros(0, np.int32), "int16_data": np.arange(32, dtype=np.int16),
                  "int8_data": np.zeros(0, np.int8), "uint8_data": np.zeros(0, np.uint8)}, 8, 1, 16000),
        "audio_common_msgs/msg/AudioStamped")),
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from physioser.runtime import Engine
    from tests.tinyser import export_tiny

    return Engine.from_path(export_tiny(tmp_path_factory.mktemp("ros-fuzz"))[1])




edits = byte_edits(max_blob=8, max_size=4)


@settings(max_examples=budget(150))
@given(name=st.sampled_from(sorted(VALID_CDR)), edits=edits, junk=st.none() | st.binary(max_size=200))
def test_fuzz_cdr_bytes_through_the_node_core(engine, name, edits, junk):
    """Corrupt CDR records as `ros replay` meets them: deserialisation may fail (counted as
    corrupt_cdr, as replay does); whatever deserialises goes through EmotionCore.accept, which
    must never raise."""
    store, raw = VALID_CDR[name]
    data = junk if junk is not None else mutate(bytes(raw), edits)
    core = EmotionCore(NodeConfig(msg_type=name), engine)
    msgtype = name.replace("/", "/msg/")
    try:
        msg = store.deserialize_cdr(data, msgtype)
    except Exception as err:  # noqa: BLE001 - what replay.py does with a corrupt record
        core.reject(M.MessageDecodeError(name, "corrupt_cdr", f"cannot deserialise a record: {err}"))
    else:
        with only_warnings():
            core.accept(msg, 0.0)
            core.process()
    d = core.diagnostics()
    assert d["messages_received"] == 1 == d["messages_accepted"] + d["messages_rejected"]
    assert set(d["rejected_by_reason"]) <= REASONS


@settings(max_examples=budget(60))
@given(messages=st.lists(st.tuples(hnp.arrays(np.int16, st.integers(0, 4000)), st.lists(st.tuples(st.just("d"), st.integers(0, 5000), st.just(0)), max_size=2),
                                   st.integers(0, 10), st.floats(0, 5)), max_size=8))
def test_fuzz_node_core_sequences(engine, messages):
    """A sequence of Int16MultiArray messages of any size/layout and arrival times: counters add up,
    queued audio is bounded by max_backlog_s, and every event is well formed."""
    core = EmotionCore(NodeConfig(msg_type="std_msgs/Int16MultiArray", max_backlog_s=3.0), engine)
    t = 0.0
    for data, dims, offset, dt in messages:
        t += dt
        with only_warnings():
            core.accept(_multiarray(DRIVERS, "Int16MultiArray", data, dims, offset), t)
        assert core.diagnostics()["backlog_s"] <= 3.0 + 4000 / 16000
        for timed in core.process():
            e = timed.event
            assert e.start_s < e.end_s and abs(sum(e.probs.values()) - 1.0) < 1e-4
    d = core.diagnostics()
    assert d["messages_received"] == len(messages) == d["messages_accepted"] + d["messages_rejected"]


def test_replay_counts_a_corrupt_audio_info_record(engine, tmp_path):
    """Finding: a bag whose /audio_info record does not deserialise made `ros replay` crash with
    rosbags' exception (only audio records were guarded); now it is counted as corrupt_cdr."""
    from rosbags.rosbag2 import Writer

    from physioser.ros.replay import replay

    store = M.typestore("ros-drivers")
    tone = (0.3 * np.sin(np.arange(48000) / 3.0) * 32767).astype(np.int16)
    with Writer(tmp_path / "bag", version=9) as writer:
        info = writer.add_connection("/audio_info", "audio_common_msgs/msg/AudioInfo", typestore=store)
        writer.write(info, 10**9 - 1, b"\x00\x01\x00")
        conn = writer.add_connection("/audio", "std_msgs/msg/Int16MultiArray", typestore=store)
        for i in range(0, tone.size, 1600):
            msg = _multiarray(store, "Int16MultiArray", tone[i : i + 1600], [], 0)
            writer.write(conn, 10**9 + i * 62_500, store.serialize_cdr(msg, "std_msgs/msg/Int16MultiArray"))
    # a tone is not speech: the gate is off so that the accepted audio must reach the timeline
    result = replay(tmp_path / "bag", engine=engine, config=NodeConfig(vad="none"))
    assert result.diagnostics["rejected_by_reason"] == {"corrupt_cdr": 1}
    assert result.diagnostics["messages_accepted"] == 30 and len(result.timeline) >= 1
