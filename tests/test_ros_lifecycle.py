"""The node as a managed (lifecycle) node, driven through its lifecycle services from another process:
a configure that fails on a tampered model bundle leaves it unconfigured and alive; parameter
descriptors refuse read-only changes and out-of-range values; activate publishes, deactivate stops
without losing the stream's state, cleanup unloads. DDS stays on this machine on a private domain.
"""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy", reason="rclpy is not installed (pip install 'physioser[ros]')")

from physioser.ros.play import Audio, Player  # noqa: E402
from tests.ros_support import (  # noqa: E402
    DOMAIN_ID, RUN, NodeProcess, lifecycle_change, lifecycle_state, real_clip, wait_until,
)

I16 = "std_msgs/Int16MultiArray"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A model bundle (a small test model exported as `physioser export` does)."""
    from tests.tinyser import bundle_tiny

    return bundle_tiny(tmp_path_factory.mktemp("model"))


def tampered_bundle(bundle, folder):
    """A copy of `bundle` with one byte of its graph changed (SHA256SUMS unchanged)."""
    copy = shutil.copytree(bundle, folder / "tampered")
    graph = copy / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    return copy


def test_lifecycle_transitions_and_parameter_descriptors(tiny, tmp_path):
    name = f"emotion_lifecycle{RUN}"
    node = NodeProcess(name, {"autostart": "false", "model_path": str(tampered_bundle(tiny, tmp_path)), "msg_type": I16,
                              "vad": "none", "adapt": "false", "smoothing": "0.0", "diagnostics_period_s": "0.3", "publish_json": "true",
                              "gap_s": "60.0",  # the pause while inactive must not start a new stream here
                              "speaker_topic": f"speaking_{name}",  # hri_msgs/IdsList: the voice that speaks
                              "audio_topic": f"audio_{name}", "emotion_topic": f"emotion_{name}"}, tmp_path)
    player = None
    try:
        player = Player(I16, topic=f"audio_{name}", emotion_topic=f"emotion_{name}", node_name=name, domain_id=DOMAIN_ID)
        ros = player.node
        assert lifecycle_state(ros, name) == "unconfigured"

        # a tampered bundle: configure fails, the node stays unconfigured and alive, and says why
        assert lifecycle_change(ros, name, "configure") is False
        assert lifecycle_state(ros, name) == "unconfigured" and node.alive()
        assert "integrity check failed" in node.output()

        # descriptors: read-only and out-of-range values are refused by rclpy, naming the parameter
        for values, reason in (({"msg_type": "std_msgs/Float32MultiArray"}, "read-only"), ({"hop_s": 100.0}, "hop_s"),
                               ({"latency_history": 5}, "latency_history"), ({"sample_rate": 10}, "sample_rate"),
                               ({"smoothing": 1.5}, "smoothing"), ({"vad": "loud"}, "vad")):
            ok, why = player.set_params(values)
            assert ok is False and reason in why, (values, why)
        assert player.set_params({"model_path": str(tiny)}) == (True, "")

        assert lifecycle_change(ros, name, "configure") and lifecycle_state(ros, name) == "inactive"
        assert player.pub.get_subscription_count() == 0  # inactive: not listening yet
        assert lifecycle_change(ros, name, "activate") and lifecycle_state(ros, name) == "active"
        player.wait_for_node(60)
        from hri_msgs.msg import IdsList
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        speaking = ros.create_publisher(IdsList, f"speaking_{name}", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        wait_until(lambda: speaking.get_subscription_count() > 0, 10, "the node's speaker subscription")
        speaking.publish(IdsList(ids=["voice_3"]))
        clip = real_clip()
        player.run([Audio(clip[:40000])])  # 2.5 s: windows ending at 2.0 and 2.5 s
        player.wait_quiet(settle_s=0.5)
        assert [r["window_end_s"] for _, r in player.session.emotions] == [2.0, 2.5]
        assert [e["speaker_id"] for _, e in player.session.estimates] == ["voice_3", "voice_3"]
        received = player.last_diagnostics()["messages_received"]

        # deactivate: no subscription, nothing published; the stream's state stays
        assert lifecycle_change(ros, name, "deactivate") and lifecycle_state(ros, name) == "inactive"
        wait_until(lambda: player.pub.get_subscription_count() == 0, 10, "the node to unsubscribe")
        count = len(player.session.emotions)
        player.run([Audio(clip[40000:56000])])  # 1 s nobody listens to
        assert lifecycle_change(ros, name, "activate")
        wait_until(lambda: player.pub.get_subscription_count() > 0, 10, "the node to subscribe again")
        assert len(player.session.emotions) == count
        player.run([Audio(clip[40000:56000])])
        player.wait_quiet(settle_s=0.5)
        assert [r["window_end_s"] for _, r in player.session.emotions[count:]] == [3.0, 3.5]  # the stream went on
        assert player.last_diagnostics()["messages_received"] == received + 50  # counters kept

        # cleanup frees the model; configure again loads it
        assert lifecycle_change(ros, name, "deactivate") and lifecycle_change(ros, name, "cleanup")
        assert lifecycle_state(ros, name) == "unconfigured" and "model freed" in node.output()
        assert lifecycle_change(ros, name, "configure") and lifecycle_state(ros, name) == "inactive"
    finally:
        if player is not None:
            player.close()
        code = node.stop()
    assert code == 0, node.output()[-3000:]
