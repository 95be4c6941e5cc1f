"""The node's logic without ROS (EmotionCore) and `physioser ros replay`, on a real clip."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soxr

from physioser.ros import messages as M
from physioser.ros.core import EmotionCore, NodeConfig, event_json, load_engine
from physioser.ros.replay import BagError, replay
from tests.ros_support import CHUNK, bag_message, chunks, pcm16, real_clip, write_bag

CLEAN = NodeConfig(vad="none", smoothing=0.0)


@pytest.fixture(scope="module")
def clip():
    return real_clip()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from tests.tinyser import export_tiny

    return export_tiny(tmp_path_factory.mktemp("model"))[1]


@pytest.fixture(scope="module")
def engine(tiny_onnx):
    return load_engine(str(tiny_onnx), "")


def feed(core, store, msg_type, pieces, t0=0.0, step=0.02):
    events = []
    for i, piece in enumerate(pieces):
        core.accept(bag_message(store, msg_type, piece) if isinstance(piece, np.ndarray) else piece, t0 + i * step)
        events += [t.event for t in core.process()]
    return events


def same_events(a, b, atol=1e-5):
    assert [(e.start_s, e.end_s, e.label) for e in a] == [(e.start_s, e.end_s, e.label) for e in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose(list(x.probs.values()), list(y.probs.values()), atol=atol)


def test_events_equal_engine_on_each_window_for_every_std_type(clip, engine):
    store = M.typestore("std_msgs")
    runs = {}
    for msg_type in ("std_msgs/Int16MultiArray", "std_msgs/Float32MultiArray", "std_msgs/UInt8MultiArray"):
        core = EmotionCore(replace(CLEAN, msg_type=msg_type), engine)
        runs[msg_type] = feed(core, store, msg_type, chunks(clip))
        assert core.diagnostics()["messages_rejected"] == 0
    events = runs["std_msgs/Int16MultiArray"]
    assert [e.end_s for e in events] == [2.0, 2.5, 3.0, 3.5]
    for other in runs.values():
        same_events(events, other)
    for e in events:
        window = clip[int(e.start_s * 16000) : int(e.end_s * 16000)]
        probs = engine.infer(window[None])["probs"][0]
        assert e.label == engine.class_names[int(np.argmax(probs))]
        np.testing.assert_allclose(list(e.probs.values()), probs, atol=1e-5)
        record = json.loads(event_json(e, 3.5))
        assert set(record) >= {"label", "confidence", "probabilities", "valence", "arousal", "window_start_s",
                               "window_end_s", "latency_ms"} and -1 <= record["valence"] <= 1


def test_malformed_messages_are_counted_and_change_nothing(clip, engine):
    store = M.typestore("std_msgs")
    T = store.types
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    clean = feed(EmotionCore(replace(CLEAN, msg_type="std_msgs/UInt8MultiArray"), engine), store,
                 "std_msgs/UInt8MultiArray", chunks(clip))
    bad = [
        T["std_msgs/msg/UInt8MultiArray"](layout=layout, data=np.zeros(321, np.uint8)),  # odd byte count
        T["std_msgs/msg/UInt8MultiArray"](layout=layout, data=np.zeros(0, np.uint8)),  # empty
    ]
    pieces = chunks(clip)
    mixed = pieces[:40] + bad + pieces[40:70] + [bad[0]] + pieces[70:]
    core = EmotionCore(replace(CLEAN, msg_type="std_msgs/UInt8MultiArray"), engine)
    same_events(clean, feed(core, store, "std_msgs/UInt8MultiArray", mixed))
    diag = core.diagnostics()
    assert diag["rejected_by_reason"] == {"empty": 1, "odd_byte_count": 2}
    assert "std_msgs/UInt8MultiArray" in diag["last_rejection"] and "321 bytes" in diag["last_rejection"]
    # NaN/Inf and out-of-range floats
    core = EmotionCore(replace(CLEAN, msg_type="std_msgs/Float32MultiArray"), engine)
    poison = [np.array([0.1, np.nan], np.float32), np.array([np.inf] * 4, np.float32), np.array([3.0], np.float32)]
    events = feed(core, store, "std_msgs/Float32MultiArray", pieces[:50] + poison + pieces[50:])
    same_events(clean, events)
    assert core.diagnostics()["rejected_by_reason"] == {"non_finite": 2, "out_of_range": 1}
    # a message of the wrong type altogether (no layout): counted, not raised
    assert core.accept(T["std_msgs/msg/String"](data="hello"), 9.0) is False
    diag = core.diagnostics()
    assert diag["rejected_by_reason"]["undecodable"] == 1 and "AttributeError" in diag["last_rejection"]


def test_declared_rate_change_mid_stream_resamples_and_counts(clip, engine):
    store = M.typestore("mgonzs13")
    core = EmotionCore(replace(CLEAN, msg_type="audio_common_msgs/AudioStamped"), engine)
    first, second = clip[:32000], clip[32000:]
    second_44k = soxr.resample(second, 16000, 44100).astype(np.float32)
    msgs = [bag_message(store, "audio_common_msgs/AudioStamped", p) for p in chunks(first)]
    msgs += [bag_message(store, "audio_common_msgs/AudioStamped", p, rate=44100) for p in chunks(second_44k, 882)]
    events = feed(core, store, "audio_common_msgs/AudioStamped", msgs)
    diag = core.diagnostics()
    assert diag["format_changes"] == 1 and diag["sample_rate"] == 44100 and diag["messages_rejected"] == 0
    assert events[0].end_s == 2.0 and events[-1].end_s == 3.5  # the stream went on at the new rate
    direct = engine.infer(first[None])["probs"][0]
    np.testing.assert_allclose(list(events[0].probs.values()), direct, atol=1e-5)
    assert abs(core.streamer.time_s - len(clip) / 16000) < 0.05


def test_gap_is_counted_and_backlog_stays_bounded(clip, engine):
    store = M.typestore("std_msgs")
    core = EmotionCore(replace(CLEAN, msg_type="std_msgs/Int16MultiArray", max_backlog_s=3.0), engine)
    msg = bag_message(store, "std_msgs/Int16MultiArray", clip[:CHUNK])
    core.accept(msg, 0.0)
    core.accept(msg, 4.0)  # four seconds between sends, less the 20 ms of the message: 3.98 s of silence
    diag = core.diagnostics()
    assert diag["gaps"] == 1 and diag["longest_gap_s"] == 3.98 and diag["streams"] == 2
    burst = bag_message(store, "std_msgs/Int16MultiArray", np.tile(clip[:16000], 2))  # 2 s per message
    for i in range(30):  # 60 s arriving while inference does not run
        core.accept(burst, 4.0 + i * 0.001)
    diag = core.diagnostics()
    assert diag["backlog_s"] <= 3.0 and diag["dropped_audio_s"] >= 57.0
    assert len(list(core.process())) <= 3  # at most the bounded backlog is analysed


def test_parameters_are_validated_and_time_goes_on(clip, engine):
    store = M.typestore("std_msgs")
    core = EmotionCore(replace(CLEAN, msg_type="std_msgs/Int16MultiArray"), engine)
    for bad, words in [({"hop_s": 5.0}, "hop_s"), ({"smoothing": 1.5}, "smoothing"), ({"vad": "loud"}, "vad"),
                       ({"sample_rate": 12}, "sample_rate"), ({"msg_type": "std_msgs/Float32MultiArray"}, "restart"),
                       ({"model_path": "/nonexistent.onnx"}, "does not exist"), ({"colour": 1}, "unknown")]:
        before = core.config
        with pytest.raises(ValueError, match=words):
            core.set_config(bad)
        assert core.config == before
    events = feed(core, store, "std_msgs/Int16MultiArray", chunks(clip[:40000]))
    core.set_config({"window_s": 1.0, "hop_s": 0.25})
    events += feed(core, store, "std_msgs/Int16MultiArray", chunks(clip[40000:]))
    ends = [e.end_s for e in events]
    assert ends == sorted(ends) and ends[-1] == pytest.approx(len(clip) // CHUNK * CHUNK / 16000, abs=0.25)
    assert events[-1].end_s - events[-1].start_s == pytest.approx(1.0)


def test_broken_model_file_keeps_the_old_model(tmp_path, tiny_onnx, clip):
    model = tmp_path / "model.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    core = EmotionCore(replace(CLEAN, model_path=str(model)))
    assert core.check_model_file() is None
    old = core.engine
    model.write_bytes(b"\x08\x07not an onnx graph")
    assert core.check_model_file() is None  # changed: waits one period for the file to settle
    assert core.check_model_file() is False
    diag = core.diagnostics()
    assert core.engine is old and diag["model_reload_failures"] == 1
    assert str(model) in diag["model_error"] and "keeping the previous model" in diag["model_error"]
    assert core.check_model_file() is None  # reported once per version of the file
    store = M.typestore("std_msgs")
    assert len(feed(core, store, "std_msgs/Int16MultiArray", chunks(clip[:48000]))) == 3  # still serving
    with model.open("wb") as fh:  # a file caught half-written is not loaded
        fh.write(tiny_onnx.read_bytes()[:100])
        fh.flush()
        assert core.check_model_file() is None
        fh.write(tiny_onnx.read_bytes()[100:])
    assert core.check_model_file() is None
    assert core.check_model_file() is True and core.engine is not old
    assert core.diagnostics()["model_error"] == "" and core.diagnostics()["model_reloads"] == 1


# ---- parameters ------------------------------------------------------------------------------

def test_parameter_table_bounds_the_config_and_is_documented():
    from physioser.ros.core import validate_config
    from physioser.ros.parameters import PARAMETERS, with_table
    from tests.ros_support import REPO

    doc = (REPO / "docs" / "ros.md").read_text()
    assert with_table(doc) == doc, "docs/ros.md is out of date: python -m physioser.ros.parameters --update docs/ros.md"
    ranged = [p for p in PARAMETERS if p.core and p.range is not None]
    assert {p.name for p in ranged} >= {"sample_rate", "window_s", "hop_s", "smoothing", "gap_s", "latency_history"}
    for p in ranged:
        for bad in (p.range[0] - 1, p.range[1] + 1):
            value = type(p.default)(bad)
            with pytest.raises(ValueError, match=p.name):
                validate_config(replace(NodeConfig(), **{p.name: value}))
    with pytest.raises(ValueError, match="vad"):
        validate_config(replace(NodeConfig(), vad="loud"))


# ---- stamps and speakers -----------------------------------------------------------------------

@pytest.mark.parametrize("msg_type", ["audio_common_msgs/AudioDataStamped", "audio_common_msgs/AudioStamped"])
def test_estimates_are_stamped_with_the_window_end_on_the_audio_clock(clip, engine, msg_type):
    """Header stamps mark each message's first sample; 30 ms messages, so windows end inside one."""
    store = M.typestore(M.audio_type(msg_type).flavour)
    core = EmotionCore(replace(CLEAN, msg_type=msg_type), engine)
    t0 = 1_700_000_000 * 10**9 + 123_456_789
    timed = []
    for i, piece in enumerate(chunks(clip, 480)):
        core.accept(bag_message(store, msg_type, piece, stamp_ns=t0 + i * 30_000_000), i * 0.03, received_ns=1)
        timed += list(core.process())
    assert [t.event.end_s for t in timed] == [2.0, 2.5, 3.0, 3.5]
    assert [t.stamp_ns for t in timed] == [t0 + round(t.event.end_s * 1e9) for t in timed]
    assert {t.frame_id for t in timed} == {"mic"}


def test_audio_without_a_header_is_stamped_when_received(clip, engine):
    store = M.typestore("std_msgs")
    core = EmotionCore(CLEAN, engine)
    t0 = 5 * 10**9
    timed = []
    for i, piece in enumerate(chunks(clip, 480)):
        core.accept(bag_message(store, "std_msgs/Int16MultiArray", piece), i * 0.03, received_ns=t0 + (i + 1) * 30_000_000)
        timed += list(core.process())
    assert len(timed) == 4
    assert [t.stamp_ns for t in timed] == [t0 + round(t.event.end_s * 1e9) for t in timed]
    assert {t.frame_id for t in timed} == {""}


def test_the_speaker_the_robot_names_labels_the_estimates(clip, engine):
    store = M.typestore("std_msgs")
    core = EmotionCore(CLEAN, engine)
    speakers = []
    for i, piece in enumerate(chunks(clip)):
        if i == 130:
            core.set_speaker("voice_7")
            assert core.streamer.speaker == "voice_7"  # the Streamer's adaptation is keyed on it
        elif i == 170:
            core.set_speaker(None)
            assert core.streamer.speaker is None  # the tiny test model has no adaptation: no voice named
        core.accept(bag_message(store, "std_msgs/Int16MultiArray", piece), i * 0.02)
        speakers += [(t.event.end_s, t.speaker_id) for t in core.process()]
    assert speakers == [(2.0, ""), (2.5, ""), (3.0, "voice_7"), (3.5, "")]


def test_adapting_to_unnamed_voices_is_a_parameter_off_by_default(engine):
    from physioser.ros.core import make_streamer

    assert NodeConfig().adapt and not NodeConfig().adapt_unnamed
    assert not make_streamer(engine, NodeConfig()).adapt_unnamed
    assert make_streamer(engine, NodeConfig(adapt_unnamed=True)).adapt_unnamed


# ---- replay ----------------------------------------------------------------------------------

@pytest.mark.parametrize("msg_type,storage", [
    ("std_msgs/Int16MultiArray", "sqlite3"),
    ("std_msgs/Float32MultiArray", "mcap"),
    ("std_msgs/UInt8MultiArray", "sqlite3"),
    ("audio_common_msgs/AudioData", "mcap"),
    ("audio_common_msgs/AudioStamped", "sqlite3"),
])
def test_replay_equals_the_core_on_the_same_messages(tmp_path, clip, engine, msg_type, storage):
    pieces = chunks(clip)
    info = (1, 16000, "S16LE") if msg_type == "audio_common_msgs/AudioData" else None
    bag = write_bag(tmp_path / "bag", msg_type, pieces, storage=storage, audio_info=info)
    result = replay(bag, config=CLEAN, engine=engine)
    store = M.typestore(M.audio_type(msg_type).flavour)
    core = EmotionCore(replace(CLEAN, msg_type=msg_type), engine)
    direct = feed(core, store, msg_type, pieces) + [t.event for t in core.end_stream()]  # replay ends the stream too
    assert [(r["window_end_s"], r["label"], r["end_of_utterance"]) for r in result.timeline] == [
        (e.end_s, e.label, e.final) for e in direct]
    assert [r["end_of_utterance"] for r in result.timeline] == [False] * 4 + [True]  # the tail after the last hop
    for r, e in zip(result.timeline, direct):
        np.testing.assert_allclose(list(r["probabilities"].values()), list(e.probs.values()), atol=1e-5)
    # the window's end: the bag time of its last message, or that message's header stamp + its 20 ms
    stamped = msg_type == "audio_common_msgs/AudioStamped"
    assert result.timeline[0]["stamp_s"] == pytest.approx(1.0 + 99 * 0.02 + (0.02 if stamped else 0.0))
    assert result.diagnostics["messages_accepted"] == len(pieces)


def test_replay_follows_audio_info_in_the_bag(tmp_path, clip, engine):
    x44 = soxr.resample(clip, 16000, 44100).astype(np.float32)
    bag = write_bag(tmp_path / "bag", "audio_common_msgs/AudioData", chunks(x44, 882), audio_info=(1, 44100, "S16LE"))
    result = replay(bag, config=CLEAN, engine=engine)
    assert result.diagnostics["sample_rate"] == 44100 and result.diagnostics["format_changes"] == 1
    assert [r["window_end_s"] for r in result.timeline][:4] == [2.0, 2.5, 3.0, 3.5]
    assert len(result.timeline) == 5 and result.timeline[-1]["end_of_utterance"]  # the tail, at the end of the bag


def test_replay_command_writes_csv_and_json(tmp_path, clip, tiny_onnx):
    from typer.testing import CliRunner
    import typer

    from physioser.ros import cli

    app = typer.Typer()
    cli.register(app)
    bag = write_bag(tmp_path / "bag", "std_msgs/Int16MultiArray", chunks(clip), storage="mcap")
    args = ["ros", "replay", str(bag), "--model", str(tiny_onnx), "--vad", "none", "--smoothing", "0"]
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].split(",") == ["stamp_s", "window_start_s", "window_end_s", "label", "confidence", "valence",
                                   "arousal", "p_neutral", "p_happy", "p_angry", "p_sad"]
    assert len(lines) == 6  # four windows on the hop grid and the tail the end of the bag analyses
    lone = str(next(bag.glob("*.mcap")))  # a bare .mcap file, without its metadata.yaml, works too
    res = CliRunner().invoke(app, [*args[:2], lone, *args[3:], "--out", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["msg_type"] == "std_msgs/Int16MultiArray" and len(data["timeline"]) == 5
    assert [r["label"] for r in data["timeline"]] == [line.split(",")[3] for line in lines[1:]]
    res = CliRunner().invoke(app, ["ros", "replay", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such bag" in res.output
    res = CliRunner().invoke(app, args + ["--topic", "/mic"])
    assert res.exit_code == 2 and "no topic '/mic'" in res.output


def test_replay_refuses_a_bag_without_audio(tmp_path, engine):
    from rosbags.rosbag2 import Writer

    store = M.typestore("std_msgs")
    with Writer(tmp_path / "bag", version=9) as w:
        c = w.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        w.write(c, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    with pytest.raises(BagError, match="pass --topic: 0 audio topics"):
        replay(tmp_path / "bag", engine=engine)


def test_load_engine_error_names_the_file(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(Exception, match="x.onnx"):
        load_engine(str(bad), "")


def stereo_int16(store, samples):
    """An Int16MultiArray with a [frames, 2] layout carrying `samples` on both channels."""
    T = store.types
    dims = [T["std_msgs/msg/MultiArrayDimension"](label="frames", size=len(samples), stride=2 * len(samples)),
            T["std_msgs/msg/MultiArrayDimension"](label="channels", size=2, stride=2)]
    return T["std_msgs/msg/Int16MultiArray"](layout=T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0),
                                             data=np.repeat(pcm16(samples), 2))


def test_mono_after_a_stereo_layout_message_is_read_as_mono(clip, engine):
    """Finding: one [frames, 2] message switched the node to stereo for good; later mono messages
    were read as two channels (half the audio) and a 321-sample one was refused (channel_mismatch)."""
    store = M.typestore("std_msgs")
    msg_type = "std_msgs/Int16MultiArray"
    core = EmotionCore(replace(CLEAN, msg_type=msg_type), engine)
    mono = [clip[CHUNK : CHUNK + 321]] + chunks(clip[CHUNK + 321 : 3 * 16000])
    assert core.accept(stereo_int16(store, clip[:CHUNK]), 0.0)
    events = [t.event for t in core.process()] + feed(core, store, msg_type, mono, t0=0.02)
    diag = core.diagnostics()
    assert diag["messages_rejected"] == 0 and diag["channels"] == 1
    assert diag["audio_received_s"] == pytest.approx(3.0)
    plain = feed(EmotionCore(replace(CLEAN, msg_type=msg_type), engine), store, msg_type, [clip[:CHUNK]] + mono)
    assert [e.end_s for e in events] == [2.0, 2.5, 3.0]
    same_events(events, plain)


def test_one_long_message_leaves_at_most_max_backlog(clip, engine):
    """Finding: the queue never dropped its last item, so one 120 s message stayed queued whole
    (backlog 120 s, 237 windows from one process() call) with max_backlog_s=5."""
    store = M.typestore("std_msgs")
    msg_type = "std_msgs/Float32MultiArray"
    core = EmotionCore(replace(CLEAN, msg_type=msg_type, max_backlog_s=5.0), engine)
    long = np.tile(clip, 40)[: 120 * 16000]
    assert core.accept(bag_message(store, msg_type, long), 0.0)
    diag = core.diagnostics()
    assert diag["backlog_s"] == 5.0 and diag["dropped_audio_s"] == 115.0
    events = [t.event for t in core.process()]
    assert [e.end_s for e in events] == [117.0, 117.5, 118.0, 118.5, 119.0, 119.5, 120.0]  # the newest 5 s only
    direct = engine.infer(long[None, 115 * 16000 : 117 * 16000])["probs"][0]
    np.testing.assert_allclose(list(events[0].probs.values()), direct, atol=1e-5)


def test_a_new_publisher_or_a_gap_starts_a_new_stream(clip, engine):
    """Finding: stream time carried over between publishers, so the first window of a new publisher
    held audio of the previous one. Now a new publisher (or a gap) ends the old stream (its tail is
    analysed) and the first window of the new one holds only its own audio."""
    store = M.typestore("std_msgs")
    msg_type = "std_msgs/Int16MultiArray"
    first, second = clip[:40000], np.ascontiguousarray(clip[::-1][:40000])  # 2.5 s each, different audio
    for how in ("publisher", "gap"):
        core = EmotionCore(replace(CLEAN, msg_type=msg_type), engine)
        events = []
        for i, piece in enumerate(chunks(first)):
            core.accept(bag_message(store, msg_type, piece), i * 0.02, source="A")
            events += [t.event for t in core.process()]
        t0 = 2.5 + (2.0 if how == "gap" else 0.0)
        for i, piece in enumerate(chunks(second)):
            core.accept(bag_message(store, msg_type, piece), t0 + i * 0.02, source="B" if how == "publisher" else "A")
            events += [t.event for t in core.process()]
        assert [(e.start_s, e.end_s) for e in events] == [(0.0, 2.0), (0.5, 2.5), (2.5, 4.5), (3.0, 5.0)], how
        assert not any(e.start_s < 2.5 < e.end_s for e in events)
        direct = engine.infer(second[None, :32000])["probs"][0]
        np.testing.assert_allclose(list(events[2].probs.values()), direct, atol=1e-5)
        assert core.diagnostics()["streams"] == 2


def test_rejections_drops_and_wrong_types_are_logged_rate_limited(clip, engine):
    """Finding: rejections and drops were only counted, never logged; a publisher of another type on
    the audio topic never connects and nothing said so."""
    store = M.typestore("std_msgs")
    T = store.types
    lines, now = [], [0.0]
    core = EmotionCore(replace(CLEAN, msg_type="std_msgs/UInt8MultiArray", max_backlog_s=3.0), engine,
                       clock=lambda: now[0], log=lines.append)
    layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
    odd = T["std_msgs/msg/UInt8MultiArray"](layout=layout, data=np.zeros(321, np.uint8))
    for _ in range(50):
        assert core.accept(odd) is False
    assert len(lines) == 1 and "std_msgs/UInt8MultiArray" in lines[0] and "odd_byte_count" in lines[0]
    core.accept(T["std_msgs/msg/UInt8MultiArray"](layout=layout, data=np.zeros(0, np.uint8)))  # another reason
    assert len(lines) == 2 and "[empty]" in lines[1]
    now[0] = 6.0
    core.accept(odd)
    assert len(lines) == 3 and "odd_byte_count" in lines[2] and "49 more" in lines[2]
    core.accept(bag_message(store, "std_msgs/UInt8MultiArray", np.tile(clip, 3)[: 10 * 16000]))
    assert len(lines) == 4 and "dropped the oldest 7.00 s" in lines[3]
    wrong = [("/talker", "std_msgs/msg/Float32MultiArray"), ("/mic", "std_msgs/msg/UInt8MultiArray"), ("/x", "std_msgs/msg/String")]
    assert core.check_publishers(wrong) == 2 and core.diagnostics()["wrong_type_publishers"] == 2
    assert "/talker sends std_msgs/msg/Float32MultiArray" in lines[4] and "msg_type:=std_msgs/Float32MultiArray" in lines[4]
    assert "/x sends std_msgs/msg/String" in lines[5] and "not an audio type" in lines[5]
    core.check_publishers(wrong)
    assert len(lines) == 6  # the same publishers again within the period: held back


def test_window_and_hop_follow_the_model_bundle_unless_set(tmp_path, clip):
    """The node's window_s/hop_s default to 0: the bundle's metadata decides (here 1 s every 0.25 s);
    a set value wins; max_backlog_s must hold one window of the model's."""
    from tests.tinyser import bundle_tiny

    bundle = bundle_tiny(tmp_path / "bundle", window_s=1.0, hop_s=0.25)
    engine = load_engine(str(bundle), "")
    store = M.typestore("std_msgs")
    core = EmotionCore(replace(CLEAN, msg_type="std_msgs/Int16MultiArray"), engine)
    events = feed(core, store, "std_msgs/Int16MultiArray", chunks(clip[:32000]))
    assert [(e.start_s, e.end_s) for e in events][:3] == [(0.0, 1.0), (0.25, 1.25), (0.5, 1.5)]
    core.set_config({"window_s": 2.0, "hop_s": 0.5})
    assert core.streamer.window == 32000 and core.streamer.hop == 8000
    with pytest.raises(ValueError, match="max_backlog_s"):
        EmotionCore(replace(CLEAN, msg_type="std_msgs/Int16MultiArray", max_backlog_s=0.5), engine)


def test_no_speech_is_reported_as_a_state_after_the_estimates(engine):
    """Finding: the node published nothing for windows without speech, so a robot could not tell "no
    speech" from a stalled node. The core reports the speech state on every change (the node's
    latched `is_speaking`): False for silence, True with the first estimate of an utterance, False
    once a window holds no speech again — each after the estimates before it."""
    from physioser.synthesis import synth_utterance

    store = M.typestore("std_msgs")
    msg_type = "std_msgs/Float32MultiArray"
    log = []
    core = EmotionCore(NodeConfig(vad="energy", msg_type=msg_type), engine, on_speech=lambda s: log.append(("speaking", s)))
    silence = np.zeros(3 * 16000, np.float32)
    x = np.concatenate([silence, synth_utterance(2.5, seed=3), silence])
    for i, piece in enumerate(chunks(x, 1600)):
        core.accept(bag_message(store, msg_type, piece), i * 0.1)
        log += [("estimate", t.event.end_s) for t in core.process()]
    estimates = [i for i, (kind, _) in enumerate(log) if kind == "estimate"]
    assert estimates and log[0] == ("speaking", False)
    assert [entry for entry in log if entry[0] == "speaking"] == [("speaking", False), ("speaking", True), ("speaking", False)]
    assert log[estimates[0] - 1] == ("speaking", True)  # speech is announced before the first estimate ...
    assert log[estimates[-1] + 1] == ("speaking", False)  # ... and its end after the last one
    assert all(kind == "estimate" for kind, _ in log[estimates[0] : estimates[-1] + 1])
    assert core.speaking is False and core.diagnostics()["windows_without_speech"] > 0


def test_the_end_of_a_stream_reports_no_speech(clip, engine):
    """Ungated (vad none) every window holds speech; a gap on the topic or the end of the recording
    ends the stream, and with it the speech."""
    store = M.typestore("std_msgs")
    msg_type = "std_msgs/Int16MultiArray"
    states = []
    core = EmotionCore(replace(CLEAN, msg_type=msg_type), engine, on_speech=states.append)
    feed(core, store, msg_type, chunks(clip[:40000]))
    assert states == [True]
    feed(core, store, msg_type, chunks(clip[:40000]), t0=10.0)  # after a gap: a new stream
    assert states == [True, False, True]
    list(core.end_stream())
    assert states == [True, False, True, False] and core.speaking is False
