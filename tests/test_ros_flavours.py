"""Live acceptance with the audio_common_msgs types built here (`make ros-interfaces`), three processes
per audio type: the node and a publisher (`physioser ros play`), both in that flavour's environment,
and this test process subscribing to the node's typed outputs (physioser_msgs/EmotionEstimate,
hri_msgs/Expression). Labels equal `physioser predict` on the same windows; the estimates' stamps are
the ends of their windows on the publisher's audio clock. DDS stays on this machine (SHM transport,
localhost discovery) on a private domain id.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy", reason="rclpy is not installed (pip install 'physioser[ros]')")

from physioser.ros.core import hri_expression  # noqa: E402
from physioser.ros.play import Player, node_env  # noqa: E402
from tests.ros_support import DOMAIN_ID, REPO, RUN, NodeProcess, offline_predict, real_clip  # noqa: E402

# key: (flavour, msg_type); AudioData has no header: its estimates are stamped on reception
TYPES = {"drivers_stamped": ("ros-drivers", "audio_common_msgs/AudioDataStamped"),
         "drivers_plain": ("ros-drivers", "audio_common_msgs/AudioData"),
         "mgonzs13": ("mgonzs13", "audio_common_msgs/AudioStamped")}
ENDS = [2.0, 2.5, 3.0, 3.5]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The shipped default model's ONNX graph when present, else a small exported test model."""
    from physioser.runtime import Engine, EngineError

    try:
        return Engine.from_path(None).source
    except EngineError:
        from tests.tinyser import export_tiny

        return str(export_tiny(tmp_path_factory.mktemp("model"))[1])


def test_each_audio_common_flavour_live(model, tmp_path):
    clip = real_clip()
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip, 16000, subtype="PCM_16")
    nodes, listeners, publishers = {}, {}, {}
    try:
        for key, (flavour, msg_type) in TYPES.items():
            name = f"emotion_{key}{RUN}"
            nodes[key] = NodeProcess(name, {"model_path": model, "msg_type": msg_type, "vad": "none", "adapt": "false", "smoothing": "0.0",
                                            "audio_topic": f"audio_{key}{RUN}", "emotion_topic": f"emotion_{key}{RUN}",
                                            "diagnostics_period_s": "0.5"}, tmp_path, flavour=flavour)
            listeners[key] = Player(None, emotion_topic=f"emotion_{key}{RUN}", node_name=name, domain_id=DOMAIN_ID)
        for key, listener in listeners.items():
            try:
                listener.wait_for_node(120)
            except TimeoutError:
                pytest.fail(f"node {key} did not come up:\n{nodes[key].output()[-3000:]}")
        for key, (flavour, msg_type) in TYPES.items():
            args = [sys.executable, "-m", "physioser.ros.cli", "play", str(wav), "--type", msg_type,
                    "--topic", f"audio_{key}{RUN}", "--emotion-topic", f"emotion_{key}{RUN}", "--out", str(tmp_path / f"{key}.json")]
            publishers[key] = subprocess.Popen(args, env=node_env(DOMAIN_ID, flavour), cwd=REPO,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        outputs = {key: p.communicate(timeout=300)[0] for key, p in publishers.items()}
        for key, p in publishers.items():
            assert p.returncode == 0, (key, outputs[key][-3000:], nodes[key].output()[-3000:])
        for listener in listeners.values():
            listener.wait_quiet(settle_s=1.0)
    finally:
        for p in publishers.values():
            if p.poll() is None:
                p.kill()
        for listener in listeners.values():
            listener.close()
        codes = {key: node.stop() for key, node in nodes.items()}
    assert codes == {key: 0 for key in TYPES}, {key: nodes[key].output()[-2000:] for key in TYPES}

    offline = offline_predict(model, [clip[int((e - 2.0) * 16000) : int(e * 16000)] for e in ENDS], tmp_path)
    for key, (flavour, msg_type) in TYPES.items():
        estimates = [e for _, e in listeners[key].session.estimates]
        played = json.loads((tmp_path / f"{key}.json").read_text())
        diagnostics = listeners[key].session.diagnostics[-1] if listeners[key].session.diagnostics else {}
        delivery = {"messages_sent": played["messages_sent"], **{k: diagnostics.get(k) for k in (
            "messages_received", "messages_rejected", "gaps", "longest_gap_s", "streams", "dropped_audio_s")}}
        assert [e["label"] for e in estimates] == [o["label"] for o in offline], (key, delivery)
        for e, o in zip(estimates, offline):
            assert e["class_names"] == list(o["probs"])
            np.testing.assert_allclose(e["probabilities"], list(o["probs"].values()), atol=1e-4)
            assert e["window_s"] == pytest.approx(2.0) and 0 <= e["confidence"] <= 1
        stamps = [e["stamp_ns"] for e in estimates]
        first = played["first_stamp_ns"]  # the publisher's audio clock
        ends = [first + round(end * 1e9) for end in ENDS]
        if msg_type == "audio_common_msgs/AudioData":  # no header: stamped when the node received the window's last chunk
            assert all(end <= s < end + 3e9 for s, end in zip(stamps, ends)) and stamps == sorted(stamps), (key, stamps, ends)
            assert {e["frame_id"] for e in estimates} == {""}
        else:  # the window's end on the publisher's audio clock, to the nanosecond
            assert stamps == ends, key
            assert {e["frame_id"] for e in estimates} == {"mic"}
        expressions = listeners[key].session.expressions
        assert [(x["stamp_ns"], x["expression"]) for x in expressions] == [(s, hri_expression(e["label"])) for s, e in
                                                                           zip(stamps, estimates)]
