"""The ROS 2 interface packages built from ros/interfaces (`make ros-interfaces`): they import, and
their messages serialise to the same CDR bytes as the rosbags definitions the decoders are tested on.

Each audio_common_msgs flavour runs in a process of its own, with that flavour's environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy", reason="rclpy is not installed (pip install 'physioser[ros]')")

from physioser.ros import interfaces as I  # noqa: E402
from physioser.ros import messages as M  # noqa: E402


def test_definitions_match_the_decoders():
    """The .msg files built are the definitions the rosbags typestore (and so the decoders) uses."""
    for flavour, definitions in (("ros-drivers", M.ROS_DRIVERS_MSGS), ("mgonzs13", M.MGONZS13_MSGS)):
        folder = I.SOURCES / flavour / "audio_common_msgs" / "msg"
        built = {f"audio_common_msgs/msg/{p.stem}": p.read_text() for p in folder.glob("*.msg")}
        assert built == definitions, flavour


def test_every_package_is_built_from_its_current_sources():
    stale = [f"{p.name} ({p.source})" for p in I.PACKAGES if not I.is_current(p)]
    assert not stale, f"{stale} not built or out of date: run `make ros-interfaces`"


def test_hri_and_physioser_messages_import_here():
    from hri_msgs.msg import Expression, IdsList
    from physioser_msgs.msg import EmotionEstimate

    assert (Expression.NEUTRAL, Expression.SCARED, Expression.DISGUSTED) == ("neutral", "scared", "disgusted")
    assert set(Expression.get_fields_and_field_types()) == {"header", "expression", "valence", "arousal", "confidence"}
    assert IdsList.get_fields_and_field_types()["ids"] == "sequence<string>"
    assert set(EmotionEstimate.get_fields_and_field_types()) == {
        "header", "window", "label", "class_names", "probabilities", "valence", "arousal", "confidence",
        "speaker_id", "inference_ms"}


# In the flavour's own process: build a message with rclpy's class, serialise it, print the bytes.
PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from rclpy.serialization import serialize_message
    import audio_common_msgs.msg as m
    pcm = np.arange(-40, 40, dtype=np.int16) * 300
    if sys.argv[1] == "ros-drivers":
        msg = m.AudioDataStamped()
        msg.audio.data = pcm.tobytes()
    else:
        msg = m.AudioStamped()
        msg.audio.audio_data.int16_data = pcm.tolist()
        msg.audio.info.format, msg.audio.info.channels, msg.audio.info.rate, msg.audio.info.chunk = 8, 1, 16000, 80
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 12, 5, "mic"
    names = sorted(n for n in dir(m) if n[0].isupper())
    print(json.dumps({"names": names, "cdr": serialize_message(msg).hex()}))
""")


@pytest.mark.parametrize("flavour", I.FLAVOURS)
def test_each_flavour_loads_in_its_own_environment_and_matches_rosbags(flavour):
    done = subprocess.run([sys.executable, "-c", PROBE, flavour], env=I.environment(flavour),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected_names = {"ros-drivers": ["AudioData", "AudioDataStamped", "AudioInfo"],
                      "mgonzs13": ["Audio", "AudioData", "AudioInfo", "AudioStamped"]}[flavour]
    assert out["names"] == expected_names
    raw = bytes.fromhex(out["cdr"])
    # the same bytes decode with the node's decoders through the rosbags definitions
    store = M.typestore(flavour)
    ros_type = {"ros-drivers": "audio_common_msgs/msg/AudioDataStamped", "mgonzs13": "audio_common_msgs/msg/AudioStamped"}[flavour]
    msg = store.deserialize_cdr(raw, ros_type)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 5, "mic")
    spec = M.audio_type(ros_type.replace("/msg/", "/"))
    decoded = spec.decode(msg, M.AudioFormat(16000, 1, "S16LE"))
    np.testing.assert_array_equal(np.round(decoded.samples * 32768).astype(np.int16), np.arange(-40, 40, dtype=np.int16) * 300)
    assert bytes(store.serialize_cdr(msg, ros_type)) == raw


def test_unknown_flavour_is_refused():
    with pytest.raises(ValueError, match="flavour"):
        I.environment("ros1")
