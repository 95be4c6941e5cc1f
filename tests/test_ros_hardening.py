"""The live ROS 2 node (real rclpy, node and peers in separate processes) against an adversarial peer:
the `profile` and `model_path` parameters never leak a file's content, the node binds no network
socket, rejections and publishers of another type are logged, and a second publisher starts a new
stream. DDS stays on this machine (shared memory only, tests/conftest.py) on a private domain id.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy", reason="rclpy is not installed (pip install 'physioser[ros]')")

from physioser.ros.play import Audio, Player, Raw, node_env  # noqa: E402
from tests.ros_support import DOMAIN_ID, I16, LIVE_PARAMS as BASE, RUN, NodeProcess, real_clip, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tinyser import export_tiny

    return export_tiny(tmp_path_factory.mktemp("model"))


def token(n: int = 20) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def plant_secrets(folder: Path) -> dict[Path, str]:
    """Files a peer might point the node at: /etc/shadow-like lines, a YAML mapping of unknown keys,
    a profile with bad values, broken YAML (the parser quotes lines), non-UTF-8 bytes."""
    bodies = {
        "shadow": "\n".join(f"{token(8)}:$6${token()}${token(40)}:19000:0:99999:7:::" for _ in range(4)),
        "keys.yaml": "\n".join(f"{token(10)}: {token()}" for _ in range(4)),
        "values.yaml": f"name: {token()}\nprecision: {token()}\nproviders: [{{name: {token()}}}]\nthreads: {{intra_op: {token()}}}",
        "broken.yaml": f"name: [{token()}, {{\n{token()}: {token()}",
        "model.onnx": f"{token()}\n{token()}: {token()}",
    }
    files = {}
    for name, body in bodies.items():
        (folder / name).write_text(body)
        files[folder / name] = body
    (folder / "latin1").write_bytes(f"\u00e9t\u00e9: {token()}".encode("latin-1"))
    files[folder / "latin1"] = (folder / "latin1").read_bytes().decode("latin-1")
    return files


def fragments(text: str, size: int = 6) -> set[str]:
    """Every `size`-character piece of the random words in a planted file."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if len(w) >= 8 and w not in ("precision", "providers")]
    return {w[i : i + size] for w in words for i in range(len(w) - size + 1)}


def leaked(text: str, planted: dict[Path, str]) -> set[str]:
    return {f for body in planted.values() for f in fragments(body) if f in text}


def start(name: str, model: str, log_dir: Path, **params) -> tuple[NodeProcess, Player]:
    node = NodeProcess(name, {**BASE, "model_path": model, "audio_topic": f"audio_{name}",
                              "emotion_topic": f"emotion_{name}", **params}, log_dir)
    player = Player(I16, topic=f"audio_{name}", emotion_topic=f"emotion_{name}", node_name=name, domain_id=DOMAIN_ID)
    try:
        player.wait_for_node(90)
    except TimeoutError:
        player.close()
        node.stop()
        pytest.fail(f"node {name} did not come up:\n{node.output()[-3000:]}")
    return node, player


def test_parameters_never_leak_a_file(tiny, tmp_path):
    """Finding: any ROS peer could set `profile` to any path and got the file's lines back in the
    refusal (and in the node's log). Now a profile is an installed name unless the operator allowed
    paths at launch, and no refusal or log line quotes a file, whichever way it fails."""
    planted = plant_secrets(tmp_path)
    outputs, nodes = [], []
    try:
        for allow in ("false", "true"):
            name = f"leak_{allow}{RUN}"
            node, player = start(name, str(tiny[1]), tmp_path, allow_profile_paths=allow)
            nodes.append(node)
            try:
                for path in planted:
                    for param in ("profile", "model_path"):
                        ok, reason = player.set_params({param: str(path)})
                        assert not ok and reason, (param, path)
                        outputs.append(reason)
                        if param == "profile" and allow == "false":
                            assert "not one of the installed profiles" in reason
                        else:
                            assert path.name in reason, reason
                assert player.set_params({"allow_profile_paths": allow == "false"})[0] is False  # launch-time only
                assert player.set_params({"profile": "cpu"}) == (True, "")  # an installed name still works
                assert node.alive()
                outputs += [json.dumps(d) for d in player.session.diagnostics]
            finally:
                player.close()
    finally:
        for node in nodes:
            node.stop()
    logs = "".join(node.output() for node in nodes)
    assert "parameter change" in logs and "refused" in logs  # the refusals were logged ...
    assert leaked("\n".join(outputs) + logs, planted) == set()  # ... without a byte of the files


def inet_sockets(pid: int) -> list[tuple[str, str]]:
    """(protocol, local address) of every IPv4/IPv6 socket process `pid` holds, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if match:
            inodes.add(match.group(1))
    found = []
    for proto in ("tcp", "udp", "tcp6", "udp6", "raw", "raw6"):
        table = Path(f"/proc/{pid}/net/{proto}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((proto, local_address(fields[1])))
    return found


def local_address(hex_address: str) -> str:
    """/proc/net's `0100007F:1B58` → `127.0.0.1` (IPv6: `::1`, `::`, ...)."""
    import ipaddress

    host = hex_address.split(":")[0]
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    return str(ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))))


def non_loopback(sockets: list[tuple[str, str]]) -> list[tuple[str, str]]:
    import ipaddress

    return [(p, a) for p, a in sockets if not ipaddress.ip_address(a).is_loopback]


def test_the_node_binds_no_network_socket(tiny, tmp_path):
    """Finding: with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, rmw_fastrtps bound UDP sockets on
    0.0.0.0 and on the machine's external address. With the project's DDS settings (Fast DDS over
    shared memory only) the node and this process hold no socket beyond loopback, and still talk."""
    name = f"sockets{RUN}"
    node, player = start(name, str(tiny[1]), tmp_path)
    try:
        player.run([Audio(real_clip()[:40000])])
        wait_until(lambda: player.session.emotions, 30, "an emotion message", nodes=[node])
        assert non_loopback(inet_sockets(node.proc.pid)) == []
        assert non_loopback(inet_sockets(os.getpid())) == []
    finally:
        player.close()
        assert node.stop() == 0
    # the check can fail: the previous settings bind 0.0.0.0 / the external address
    env = node_env(DOMAIN_ID)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE")
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    script = "import rclpy, time; rclpy.init(); n = rclpy.create_node('probe'); time.sleep(8.0)"
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        wait_until(lambda: non_loopback(inet_sockets(proc.pid)), 20, "sockets of a participant with the old settings")
    finally:
        proc.wait(30)


def test_rejections_wrong_types_and_a_new_publisher_live(tiny, tmp_path):
    """Rejected messages and a publisher of another type on the audio topic are logged (rate-limited);
    a second publisher's first window holds none of the first one's audio."""
    from std_msgs.msg import Int16MultiArray, MultiArrayDimension

    name = f"logs{RUN}"
    node, first = start(name, str(tiny[1]), tmp_path, gap_s=3.0)
    second = Player(I16, topic=f"audio_{name}", emotion_topic=f"emotion_{name}", node_name=name, domain_id=DOMAIN_ID)
    try:
        clip = real_clip()
        a, b = clip[:40000], np.ascontiguousarray(clip[::-1][:40000])  # 2.5 s each, different audio
        first.run([Audio(a)])
        wait_until(lambda: second.pub.get_subscription_count() > 0, 30, "the second publisher matched")
        second.run([Audio(b)])
        first.wait_quiet(settle_s=1.0)
        ends = [(r["window_start_s"], r["window_end_s"]) for _, r in first.session.emotions]
        assert ends == [(0.0, 2.0), (0.5, 2.5), (2.5, 4.5), (3.0, 5.0)], ends
        from physioser.runtime import Engine

        direct = Engine.from_path(tiny[1]).infer(b[None, :32000])["probs"][0]
        np.testing.assert_allclose(list(first.session.emotions[2][1]["probabilities"].values()), direct, atol=1e-4)
        assert first.last_diagnostics()["streams"] == 2

        bad = Int16MultiArray(data=[1, 2, 3])
        bad.layout.dim = [MultiArrayDimension(label="frames", size=5, stride=5)]
        first.run([Raw(bad)] * 20)
        script = ("import time, rclpy; from std_msgs.msg import Float32MultiArray; rclpy.init(); "
                  "n = rclpy.create_node('wrong_talker'); "
                  f"p = n.create_publisher(Float32MultiArray, 'audio_{name}', 10); "
                  "[(p.publish(Float32MultiArray(data=[0.0] * 320)), time.sleep(0.1)) for _ in range(150)]")
        talker = subprocess.Popen([sys.executable, "-c", script], env=node_env(DOMAIN_ID))
        try:
            wait_until(lambda: "/wrong_talker sends std_msgs/msg/Float32MultiArray" in node.output(), 30,
                       "the wrong-type log line naming the publisher",
                       nodes=[node])
            assert first.last_diagnostics()["wrong_type_publishers"] == 1
        finally:
            talker.kill()
            talker.wait(10)
        log = node.output()
        assert len(re.findall(r"message rejected: std_msgs/Int16MultiArray: .*\[bad_layout\]", log)) == 1, log[-2000:]
        assert "/wrong_talker sends" in log and "msg_type:=std_msgs/Float32MultiArray" in log
        assert "a new publisher on the audio topic" in log
    finally:
        second.close()
        first.close()
        assert node.stop() == 0
