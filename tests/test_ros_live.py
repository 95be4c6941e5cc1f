"""Live acceptance of the ROS 2 node with the real rclpy: node and publisher in separate processes.

Three node processes (one per std_msgs audio type) serve the whole module; this test process
publishes a real clip as 20 ms chunks at real-time pace and listens to the emotion messages.
DDS stays on this machine (SHM transport, localhost discovery) on a private domain id.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soxr

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy", reason="rclpy is not installed (pip install 'physioser[ros]')")

from physioser.ros.play import Audio, Pause, Player, Raw, SetParams, encode  # noqa: E402
from physioser.ros.replay import replay  # noqa: E402
from physioser.ros.core import NodeConfig  # noqa: E402
from tests.ros_support import CHUNK, DOMAIN_ID, RUN, NodeProcess, chunks, offline_predict, real_clip, wait_until, write_bag  # noqa: E402

TYPES = {"i16": "std_msgs/Int16MultiArray", "f32": "std_msgs/Float32MultiArray", "u8": "std_msgs/UInt8MultiArray"}
NODE_PARAMS = {"vad": "none", "adapt": "false", "smoothing": "0.0", "max_backlog_s": "4.0", "diagnostics_period_s": "0.5", "publish_json": "true"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(model path, kind): the default model's bundle (built when missing) when present, else a small exported test model."""
    from physioser.export import open_engine
    from physioser.runtime import EngineError

    try:
        return open_engine(None).source, "default"
    except EngineError:
        from tests.tinyser import export_tiny

        return str(export_tiny(tmp_path_factory.mktemp("model"))[1]), "tiny"


@pytest.fixture(scope="module")
def clip():
    return real_clip()


@pytest.fixture(scope="module")
def live(model, tmp_path_factory):
    """{key: (NodeProcess, Player)} for the three std_msgs types, all ready."""
    logs = tmp_path_factory.mktemp("logs")
    nodes = {
        key: NodeProcess(f"emotion_{key}{RUN}", {**NODE_PARAMS, "model_path": model[0], "msg_type": t,
                                            "audio_topic": f"audio_{key}{RUN}", "emotion_topic": f"emotion_{key}{RUN}"}, logs)
        for key, t in TYPES.items()
    }
    players = {}
    try:
        for key, t in TYPES.items():
            players[key] = Player(t, topic=f"audio_{key}{RUN}", emotion_topic=f"emotion_{key}{RUN}", node_name=f"emotion_{key}{RUN}",
                                  domain_id=DOMAIN_ID)
        for key, player in players.items():
            try:
                player.wait_for_node(90)
            except TimeoutError:
                pytest.fail(f"node emotion_{key}{RUN} did not come up:\n{nodes[key].output()}")
        yield {key: (nodes[key], players[key]) for key in TYPES}
    finally:
        for player in players.values():
            player.close()
        codes = {key: node.stop() for key, node in nodes.items()}
        assert codes == {key: 0 for key in TYPES}, {key: nodes[key].output()[-2000:] for key in TYPES}


def run_concurrently(jobs: dict):
    """Run {key: callable} in threads; re-raise the first failure."""
    errors, results = {}, {}

    def wrap(key, fn):
        try:
            results[key] = fn()
        except BaseException as err:  # noqa: BLE001
            errors[key] = err

    threads = [threading.Thread(target=wrap, args=(k, fn)) for k, fn in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise next(iter(errors.values()))
    return results


def check_clean_stream(live, clip, model, tmp_path):
    """Each std type at real-time pace: valid messages, labels equal offline `physioser predict`, replay equal."""
    sessions = run_concurrently({key: (lambda p=player: p.run([Audio(clip)])) for key, (_, player) in live.items()})
    for _, player in live.values():
        player.wait_quiet(settle_s=1.0)
    records = {key: [r for _, r in s.emotions] for key, s in sessions.items()}
    ends = [2.0, 2.5, 3.0, 3.5]
    windows = [clip[int((e - 2.0) * 16000) : int(e * 16000)] for e in ends]
    offline = offline_predict(model[0], windows, tmp_path)
    for key, recs in records.items():
        assert [r["window_end_s"] for r in recs] == ends, key
        for r, off in zip(recs, offline):
            assert r["window_end_s"] - r["window_start_s"] == pytest.approx(2.0)
            assert r["label"] == off["label"], (key, r, off)
            np.testing.assert_allclose([r["probabilities"][n] for n in off["probs"]], list(off["probs"].values()), atol=1e-4)
            assert 0 <= r["confidence"] <= 1 and sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-4)
            assert -1 <= r["valence"] <= 1 and -1 <= r["arousal"] <= 1 and r["latency_ms"] > 0
        typed = [e for _, e in sessions[key].estimates]
        assert [e["stamp_ns"] for e in typed] == [r["stamp_ns"] for r in recs]
        assert typed[0]["class_names"] == list(offline[0]["probs"])
        assert typed[0]["probabilities"] == pytest.approx(list(recs[0]["probabilities"].values()))
        diag = live[key][1].last_diagnostics()
        assert diag["messages_accepted"] == len(chunks(clip)) and diag["messages_rejected"] == 0
        assert diag["latency_ms"]["count"] == len(ends)
    # replay of a bag holding the same messages gives the live timeline
    sent = sessions["i16"].sent
    bag = write_bag(tmp_path / "bag", TYPES["i16"], chunks(clip), stamps_ns=[int(s.t * 1e9) for s in sent])
    result = replay(bag, config=NodeConfig(model_path=model[0], vad="none", adapt=False, smoothing=0.0))
    *windows, last = result.timeline  # replay ends the recording: its last utterance's end-of-utterance window
    assert last["window_end_s"] == pytest.approx(len(clip) / 16000, abs=0.01)
    assert [(r["window_end_s"], r["label"]) for r in windows] == [(r["window_end_s"], r["label"]) for r in records["i16"]]
    for r, live_r in zip(windows, records["i16"]):
        np.testing.assert_allclose(list(r["probabilities"].values()), list(live_r["probabilities"].values()), atol=1e-5)


def test_live_node_processes(live, clip, model, tmp_path):
    """One test drives the three node processes in order (so xdist never splits their shared state)."""
    check_clean_stream(live, clip, model, tmp_path)
    check_is_speaking(live)
    check_diagnostic_array(live)
    check_malformed_input(live, clip)


def test_live_uses_the_shipped_default_model(model):
    if model[1] != "default":
        pytest.skip("the shipped default model (physioser/assets/default) is not present: the live tests ran on a test model")
    from physioser.runtime.bundle import is_bundle

    assert is_bundle(Path(model[0]))


def check_malformed_input(live, clip):
    """Malformed input, a rate change, a 10x burst and a gap never stop the node and are counted."""
    from std_msgs.msg import Float32MultiArray, UInt8MultiArray

    (node16, p16), (_, p32), (node8, p8) = live["i16"], live["f32"], live["u8"]
    before = {key: player.last_diagnostics() for key, (_, player) in live.items()}
    rss_before = node16.rss_mb()
    clip8k = soxr.resample(clip[:24000], 16000, 8000).astype(np.float32)
    long_audio = np.tile(clip, 3)[: 16000 * 10]
    steps16 = [
        SetParams({"sample_rate": 8000}), Audio(clip8k, rate=8000),  # declared rate changes mid-stream
        SetParams({"sample_rate": 16000}),
        Audio(long_audio, speed=10.0),  # 10 s of audio in 1 s
        Pause(3.0),  # several seconds without audio
        Audio(clip[:40000]),
    ]
    steps8 = [Audio(clip[:8000]), Raw(UInt8MultiArray(data=bytes(321))), Raw(UInt8MultiArray()), Audio(clip[:8000])]
    nan = encode(TYPES["f32"], clip[:CHUNK])
    nan.data[5] = float("nan")
    steps32 = [Audio(clip[:8000]), Raw(nan), Raw(Float32MultiArray(data=[float("inf")] * CHUNK)),
               Raw(Float32MultiArray(data=[2.5] * CHUNK)), Audio(clip[:8000])]
    sessions = run_concurrently({"i16": lambda: p16.run(steps16), "u8": lambda: p8.run(steps8),
                                 "f32": lambda: p32.run(steps32)})
    for _, player in live.values():
        player.wait_quiet(settle_s=1.0)
    after = {key: player.last_diagnostics() for key, (_, player) in live.items()}
    assert all(node.alive() for node, _ in live.values())

    def added(key, name):
        return after[key]["rejected_by_reason"].get(name, 0) - before[key]["rejected_by_reason"].get(name, 0)

    assert (added("u8", "odd_byte_count"), added("u8", "empty")) == (1, 1)
    assert (added("f32", "non_finite"), added("f32", "out_of_range")) == (2, 1)
    assert "std_msgs/Float32MultiArray" in after["f32"]["last_rejection"]
    assert sessions["i16"].param_results[-2:] == [(True, ""), (True, "")]
    d16 = after["i16"]
    assert d16["format_changes"] - before["i16"]["format_changes"] == 2 and d16["sample_rate"] == 16000
    assert d16["gaps"] > before["i16"]["gaps"] and d16["longest_gap_s"] >= 1.5  # 3 s, less any executor lag
    assert d16["backlog_s"] <= 4.0
    received = d16["messages_received"] - before["i16"]["messages_received"]
    assert received >= 0.8 * (len(chunks(clip8k, 160)) + len(chunks(long_audio)) + len(chunks(clip[:40000])))
    # the node still answers after all that: the last real-time segment produced its windows
    last_ends = [r["window_end_s"] for _, r in sessions["i16"].emotions[-3:]]
    assert len(last_ends) == 3 and last_ends == sorted(last_ends)
    assert node16.rss_mb() - rss_before < 60, "memory grew during the burst"
    refused = p16.set_params({"hop_s": 9.0})
    assert refused[0] is False and "hop_s" in refused[1]
    assert p16.set_params({"msg_type": TYPES["f32"]})[0] is False
    assert node8.alive()


def check_is_speaking(live):
    """The latched std_msgs/Bool `is_speaking` reaches a subscriber that comes after it was published
    (ungated, vad none: every window is speech)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Bool

    _, player = live["i16"]
    got = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    player.node.create_subscription(Bool, f"emotion_i16{RUN}/is_speaking", lambda m: got.append(m.data), latched)
    wait_until(lambda: got, 10, "the latched is_speaking state")
    assert got == [True]


def check_diagnostic_array(live):
    """diagnostic_msgs/DiagnosticArray on /diagnostics carries the counters and latency statistics."""
    from diagnostic_msgs.msg import DiagnosticArray

    _, player = live["i16"]
    got = []
    player.node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    wait_until(lambda: any(s.name.startswith(f"emotion_i16{RUN}") for a in got for s in a.status), 10, "a DiagnosticArray")
    status = next(s for a in got for s in a.status if s.name.startswith(f"emotion_i16{RUN}"))
    values = {kv.key: kv.value for kv in status.values}
    assert {"messages_received", "messages_rejected", "rejected_by_reason", "windows_processed", "latency_ms"} <= set(values)
    assert json.loads(values["latency_ms"])["count"] >= 4


def test_missing_message_package_is_explained(tmp_path):
    """Without audio_common_msgs on its path the node cannot configure: it says why and stays up."""
    node = NodeProcess(f"emotion_missing{RUN}", {"msg_type": "audio_common_msgs/AudioData"}, tmp_path)
    try:
        wait_until(lambda: "configure failed" in node.output(), 60, "the configure failure", nodes=[node])
        out = node.output()
        assert "audio_common_msgs" in out and "not installed" in out and "std_msgs/Int16MultiArray" in out
        assert node.alive()
    finally:
        assert node.stop() == 0


def test_parameter_file_and_package_match_the_node():
    import xml.etree.ElementTree as ET
    from dataclasses import fields

    import yaml

    from tests.ros_support import REPO

    from physioser.ros.parameters import PARAMETERS

    params = yaml.safe_load((REPO / "ros/config/physioser_emotion.yaml").read_text())["physioser_emotion"]["ros__parameters"]
    assert list(params) == [p.name for p in PARAMETERS]
    assert all(params[p.name] == p.default for p in PARAMETERS)
    assert {p.name for p in PARAMETERS if p.core} == {f.name for f in fields(NodeConfig)}
    assert ET.parse(REPO / "ros/package.xml").getroot().findtext("name") == "physioser_ros"
    compile((REPO / "ros/launch/physioser_emotion.launch.py").read_text(), "launch", "exec")
    assert (REPO / "ros/resource/physioser_ros").is_file()
