"""Helpers of the ROS tests: a real clip, rosbags messages of each audio type, bag writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from physioser.ros import messages as M
from physioser.ros.play import NodeProcess as EmotionNodeProcess, node_env, quantise

CLIP = "Actor_01/03-01-05-01-01-01-01.flac"  # RAVDESS, angry, 3.9 s
CHUNK = 320  # 20 ms at 16 kHz


def real_clip() -> np.ndarray:
    """The clip as the node sees it after int16 PCM transport (float32, 16 kHz)."""
    from physioser.audio import load_audio

    from tests.conftest import corpus_dir

    return quantise(load_audio(corpus_dir("RAVDESS") / CLIP))


def chunks(x: np.ndarray, size: int = CHUNK) -> list[np.ndarray]:
    return [x[i : i + size] for i in range(0, len(x), size)]


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2")


def bag_message(store, msg_type: str, samples: np.ndarray, rate: int = 16000, stamp_ns: int = 0):
    """A rosbags message of `msg_type` carrying `samples` exactly as the player publishes them."""
    T = store.types
    kind = msg_type.split("/")[-1]
    if msg_type.startswith("std_msgs/"):
        layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        data = {
            "Int16MultiArray": lambda: pcm16(samples),
            "Float32MultiArray": lambda: samples.astype(np.float32),
            "UInt8MultiArray": lambda: np.frombuffer(pcm16(samples).tobytes(), np.uint8),
        }[kind]()
        return T[f"std_msgs/msg/{kind}"](layout=layout, data=data)
    header = T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="mic")
    if kind == "AudioData":
        return T["audio_common_msgs/msg/AudioData"](data=np.frombuffer(pcm16(samples).tobytes(), np.uint8))
    if kind == "AudioDataStamped":
        audio = T["audio_common_msgs/msg/AudioData"](data=np.frombuffer(pcm16(samples).tobytes(), np.uint8))
        return T["audio_common_msgs/msg/AudioDataStamped"](header=header, audio=audio)
    if kind == "AudioStamped":
        e = {f: np.zeros(0, d) for f, d in (("float32_data", np.float32), ("int32_data", np.int32),
                                            ("int8_data", np.int8), ("uint8_data", np.uint8))}
        audio = T["audio_common_msgs/msg/Audio"](
            audio_data=T["audio_common_msgs/msg/AudioData"](int16_data=pcm16(samples), **e),
            info=T["audio_common_msgs/msg/AudioInfo"](format=8, channels=1, rate=rate, chunk=len(samples)),
        )
        return T["audio_common_msgs/msg/AudioStamped"](header=header, audio=audio)
    raise ValueError(msg_type)


def write_bag(path: Path, msg_type: str, pieces: list[np.ndarray], *, stamps_ns: list[int] | None = None,
              topic: str = "/audio", storage: str = "sqlite3", rate: int = 16000, audio_info: tuple | None = None) -> Path:
    """A rosbag2 (rosbags writer) with one audio topic; `audio_info` (channels, rate, format) adds a
    ros-drivers AudioInfo message on /audio_info before the audio."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    spec = M.audio_type(msg_type)
    store = M.typestore(spec.flavour)
    ros_type = msg_type.replace("/", "/msg/")
    stamps_ns = stamps_ns or [10**9 + i * 20_000_000 for i in range(len(pieces))]
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        if audio_info is not None:
            info_conn = writer.add_connection("/audio_info", "audio_common_msgs/msg/AudioInfo", typestore=store)
            channels, info_rate, sample_format = audio_info
            info = store.types["audio_common_msgs/msg/AudioInfo"](
                channels=channels, sample_rate=info_rate, sample_format=sample_format, bitrate=0, coding_format="wave")
            writer.write(info_conn, stamps_ns[0] - 1, store.serialize_cdr(info, info_conn.msgtype))
        conn = writer.add_connection(topic, ros_type, typestore=store)
        for piece, stamp in zip(pieces, stamps_ns):
            msg = bag_message(store, msg_type, piece, rate=rate, stamp_ns=stamp)
            writer.write(conn, stamp, store.serialize_cdr(msg, ros_type))
    return path


# ---- live ROS: node processes on a private DDS domain ------------------------------------------

REPO = Path(__file__).resolve().parents[1]
# One DDS domain per test process (xdist workers run in parallel); 1..100 keeps to the default ports.
DOMAIN_ID = 1 + (os.getpid() % 100)
# ...and node/topic names carrying the process id, so even two runs on one domain never cross.
RUN = f"_{os.getpid()}"


# Node parameters of the live tests that drive one Int16MultiArray node: every window analysed,
# no smoothing, frequent diagnostics, the JSON estimates (with stream times) published too.
I16 = "std_msgs/Int16MultiArray"
LIVE_PARAMS = {"vad": "none", "adapt": "false", "smoothing": "0.0", "diagnostics_period_s": "0.3", "msg_type": I16, "publish_json": "true"}


def ros_env(**extra: str) -> dict[str, str]:
    return node_env(DOMAIN_ID, **extra)


class NodeProcess(EmotionNodeProcess):
    def __init__(self, name: str, params: dict, log_dir: Path, flavour: str | None = None):
        super().__init__(name, params, log_dir, domain_id=DOMAIN_ID, flavour=flavour)


def wait_until(predicate, timeout_s: float, what: str, step: float = 0.05, nodes=()):
    """Poll `predicate` until truthy (returned); on timeout, raise with the logs of `nodes`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    logs = "".join(f"\n--- {n.name} (alive: {n.alive()}):\n{n.output()[-3000:]}" for n in nodes)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}{logs}")


def call(node, srv_type, name: str, request, timeout_s: float = 30.0):
    """Call a service from `node` (spun elsewhere, e.g. a Player's node) and return the response."""
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise TimeoutError(f"service {name} did not appear")
        future = client.call_async(request)
        wait_until(future.done, timeout_s, f"an answer from {name}")
        return future.result()
    finally:
        node.destroy_client(client)


def lifecycle_state(node, target: str) -> str:
    """The lifecycle state label of node `target` (unconfigured, inactive, active, finalized)."""
    from lifecycle_msgs.srv import GetState

    return call(node, GetState, f"/{target}/get_state", GetState.Request()).current_state.label


def lifecycle_change(node, target: str, transition: str) -> bool:
    """Ask node `target` for a transition (configure, activate, deactivate, cleanup, shutdown)."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
           "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
           "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
    request = ChangeState.Request(transition=Transition(id=ids[transition]))
    return bool(call(node, ChangeState, f"/{target}/change_state", request, timeout_s=120.0).success)


def offline_predict(model_path: str, windows: list[np.ndarray], tmp: Path) -> list[dict]:
    """`physioser predict --vad none` (a separate process) on each window written as 16-bit WAV: the whole window inferred."""
    files = []
    for i, w in enumerate(windows):
        files.append(tmp / f"window{i}.wav")
        sf.write(files[-1], w, 16000, subtype="PCM_16")
    exe = Path(sys.executable).with_name("physioser")
    res = subprocess.run([str(exe), "predict", *map(str, files), "--model", model_path, "--vad", "none", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)["results"]
