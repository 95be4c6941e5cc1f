"""Play audio onto a ROS 2 topic as a microphone driver would, and record what the emotion node says.

Used by `physioser ros play`, by the live tests and by the latency benchmark. The player publishes
chunks (default 20 ms) of any audio type the node accepts at real-time pace (or `speed`× faster;
the audio_common_msgs types need that flavour's environment, see physioser.ros.interfaces),
stamping headers as a microphone driver would: a chunk's stamp is the time of its first sample,
and a chunk is published when its last sample has been "captured" (its stamp + its duration).
It listens to the node's typed estimates (physioser_msgs/EmotionEstimate), hri_msgs/Expression,
the JSON estimates (node parameter `publish_json`) and the JSON diagnostics, and keeps, per chunk,
the monotonic time it was published, so the latency from the last sample of a window arriving to
its estimate being received can be computed in this process, from the chunk times or from the
estimates' stamps.

`NodeProcess` starts the node from a source checkout (`ros/physioser_ros`) in its own process with
DDS kept on this machine. Needs rclpy (the `ros` extra); imported lazily so `physioser.ros` stays
importable without ROS.
A session is a list of steps: `Audio` (samples at a rate, published in chunks), `Raw` (one message
as given: malformed input), `Pause` (no messages), `SetParams` (a parameter change on the node).
"""

from __future__ import annotations

import array
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
STD_TYPES = ("std_msgs/Int16MultiArray", "std_msgs/Float32MultiArray", "std_msgs/UInt8MultiArray")
STAMPED_TYPES = ("audio_common_msgs/AudioDataStamped", "audio_common_msgs/AudioStamped")
PLAYABLE = STD_TYPES + ("audio_common_msgs/AudioData",) + STAMPED_TYPES


@dataclass
class Audio:
    samples: np.ndarray  # float32 mono; for Int16/UInt8 types quantised to int16
    rate: int = 16000
    chunk_ms: float = 20.0
    speed: float = 1.0  # 1 = real time, 10 = a burst at ten times real time


@dataclass
class Raw:
    msg: Any  # an rclpy message of the session's type, sent as is
    label: str = ""


@dataclass
class Pause:
    seconds: float


@dataclass
class SetParams:
    values: dict[str, Any]


@dataclass
class Sent:
    t: float  # time.monotonic() just after publish
    end_sample: int  # stream position (at the node's 16 kHz) after this chunk, counting Audio steps only
    stamp_ns: int  # the chunk's stamp: the time of its first sample on the audio clock


@dataclass
class Session:
    sent: list[Sent] = field(default_factory=list)
    emotions: list[tuple[float, dict]] = field(default_factory=list)  # (receive time, JSON record)
    estimates: list[tuple[int, dict]] = field(default_factory=list)  # (receive time ns, EmotionEstimate fields)
    expressions: list[dict] = field(default_factory=list)  # hri_msgs/Expression fields
    diagnostics: list[dict] = field(default_factory=list)
    param_results: list[tuple[bool, str]] = field(default_factory=list)

    def stamp_latencies_ms(self) -> list[float]:
        """Per estimate: its receive time minus its stamp (the end of its window on the audio clock)."""
        return [(t_ns - e["stamp_ns"]) / 1e6 for t_ns, e in self.estimates]

    def latencies_ms(self, chunk_samples: int = 320) -> list[float]:
        """Per emotion message: receive time minus publish time of the chunk holding the window's last sample."""
        ends = np.array([s.end_sample for s in self.sent])
        times = np.array([s.t for s in self.sent])
        out = []
        for t_recv, rec in self.emotions:
            end = int(round(rec["window_end_s"] * 16000))
            k = int(np.searchsorted(ends, end))  # first chunk whose end reaches the window's end
            if k < len(ends):
                out.append((t_recv - times[k]) * 1000.0)
        return out


def encode(msg_type: str, samples: np.ndarray, *, rate: int = 16000, stamp_ns: int = 0, frame_id: str = "mic"):
    """One rclpy audio message of `msg_type` carrying `samples` (float32 in [-1, 1]) as 16-bit PCM
    (Float32MultiArray: floats); stamped types get `stamp_ns` (the first sample's time) and `frame_id`."""
    cls = message_class(msg_type)
    if msg_type == "std_msgs/Float32MultiArray":
        return cls(data=array.array("f", np.asarray(samples, np.float32).tobytes()))
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767).astype("<i2")
    if msg_type == "std_msgs/Int16MultiArray":
        return cls(data=array.array("h", pcm.tobytes()))
    if msg_type == "std_msgs/UInt8MultiArray":
        return cls(data=array.array("B", pcm.tobytes()))
    if msg_type == "audio_common_msgs/AudioData":
        return cls(data=pcm.tobytes())
    msg = cls()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000
    msg.header.frame_id = frame_id
    if msg_type == "audio_common_msgs/AudioDataStamped":
        msg.audio.data = pcm.tobytes()
    else:  # mgonzs13 AudioStamped: paInt16 samples, the format inside the message
        msg.audio.audio_data.int16_data = array.array("h", pcm.tobytes())
        info = msg.audio.info
        info.format, info.channels, info.rate, info.chunk = 8, 1, int(rate), len(pcm)
    return msg


def quantise(samples: np.ndarray) -> np.ndarray:
    """The float32 samples the node decodes from int16 PCM of `samples` (what the node will see)."""
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)
    return (pcm / 32768.0).astype(np.float32)


def message_class(msg_type: str):
    """The rclpy class of a playable type (audio_common_msgs: the flavour on this process's path)."""
    import importlib

    if msg_type not in PLAYABLE:
        raise ValueError(f"play publishes {PLAYABLE}, not {msg_type!r}")
    package, name = msg_type.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{msg_type} is not importable here ({err}); for audio_common_msgs run "
                         f"`make ros-interfaces` and `eval \"$(physioser ros env ros-drivers)\"` (or mgonzs13)") from None


class Player:
    """A ROS node publishing audio and listening to the emotion node (one per process)."""

    def __init__(self, msg_type: str | None, *, topic: str = "audio", emotion_topic: str = "emotion",
                 node_name: str = "physioser_emotion", domain_id: int | None = None):
        """`msg_type` None: listen only (the audio comes from another process)."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter_client import AsyncParameterClient
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from physioser_msgs.msg import EmotionEstimate
        from std_msgs.msg import String

        self.msg_type = msg_type
        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("physioser_player", context=self.context)
        self.pub = None if msg_type is None else self.node.create_publisher(message_class(msg_type), topic, qos_profile_sensor_data)
        self.session = Session()
        self._lock = threading.Lock()
        self._diag_time = 0.0  # when the last diagnostics arrived
        self._output_time = 0.0  # when the last estimate (typed or JSON) arrived
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(EmotionEstimate, emotion_topic, self._on_estimate, reliable)
        self.node.create_subscription(String, f"{emotion_topic}/json", self._on_emotion, reliable)
        self.node.create_subscription(String, f"{emotion_topic}/diagnostics", self._on_diag, reliable)
        try:
            from hri_msgs.msg import Expression
        except ImportError:
            pass  # hri_msgs not built here: the node's Expression messages are not recorded
        else:
            self.node.create_subscription(Expression, f"{emotion_topic}/expression", self._on_expression, reliable)
        self.params = AsyncParameterClient(self.node, node_name)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown races end the loop
                if not self._running:
                    return
                raise

    def _on_emotion(self, msg) -> None:
        t = time.monotonic()
        with self._lock:
            self.session.emotions.append((t, json.loads(msg.data)))
            self._output_time = t

    def _on_estimate(self, msg) -> None:
        t_ns = time.time_ns()
        record = {
            "stamp_ns": msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
            "frame_id": msg.header.frame_id,
            "window_s": msg.window.sec + msg.window.nanosec / 1e9,
            "label": msg.label, "class_names": list(msg.class_names), "probabilities": [float(p) for p in msg.probabilities],
            "valence": msg.valence, "arousal": msg.arousal, "confidence": msg.confidence,
            "speaker_id": msg.speaker_id, "inference_ms": msg.inference_ms,
        }
        with self._lock:
            self.session.estimates.append((t_ns, record))
            self._output_time = time.monotonic()

    def _on_expression(self, msg) -> None:
        record = {"stamp_ns": msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                  "expression": msg.expression, "valence": msg.valence, "arousal": msg.arousal, "confidence": msg.confidence}
        with self._lock:
            self.session.expressions.append(record)

    def _on_diag(self, msg) -> None:
        with self._lock:
            self.session.diagnostics.append(json.loads(msg.data))
            self._diag_time = time.monotonic()

    def wait_for_node(self, timeout_s: float = 60.0) -> None:
        """Until the node subscribes to the audio and publishes its diagnostics (it is then ready)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                have_diag = bool(self.session.diagnostics)
            if (self.pub is None or self.pub.get_subscription_count() > 0) and have_diag:
                return
            time.sleep(0.05)
        raise TimeoutError(f"no emotion node on this ROS domain after {timeout_s:.0f} s")

    def run(self, steps: list) -> Session:
        """Publish the steps in order at their pace."""
        position = 0  # samples at 16 kHz published so far (Audio steps)
        for step in steps:
            if isinstance(step, Audio):
                position = self._play(step, position)
            elif isinstance(step, Raw):
                self.pub.publish(step.msg)
            elif isinstance(step, Pause):
                time.sleep(step.seconds)
            elif isinstance(step, SetParams):
                self.session.param_results.append(self.set_params(step.values))
            else:
                raise TypeError(f"unknown step {step!r}")
        return self.session

    def _play(self, step: Audio, position: int) -> int:
        chunk = max(1, int(round(step.rate * step.chunk_ms / 1000.0)))
        period = chunk / step.rate / step.speed
        start = time.monotonic()
        # the audio clock: chunk k is captured over [origin + k·chunk, origin + (k+1)·chunk) and
        # published at its end (at real-time pace: `start` + (k+1)·period, so the first at `start`)
        origin_ns = time.time_ns() - round(chunk * 1e9 / step.rate)
        for k, i in enumerate(range(0, len(step.samples), chunk)):
            due = start + k * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            piece = step.samples[i : i + chunk]
            msg_stamp = origin_ns + round(i * 1e9 / step.rate)
            msg = encode(self.msg_type, piece, rate=step.rate, stamp_ns=msg_stamp)
            self.pub.publish(msg)
            position += int(round(len(piece) * 16000 / step.rate))
            self.session.sent.append(Sent(time.monotonic(), position, msg_stamp))
        return position

    def set_params(self, values: dict[str, Any], timeout_s: float = 30.0) -> tuple[bool, str]:
        from rclpy.parameter import Parameter

        if not self.params.wait_for_services(timeout_sec=timeout_s):
            raise TimeoutError("the node's parameter services did not appear")
        future = self.params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            raise TimeoutError(f"set_parameters {values} got no answer")
        result = future.result().results[0]
        return bool(result.successful), str(result.reason)

    def wait_quiet(self, settle_s: float = 1.0, timeout_s: float = 120.0) -> None:
        """Until the node has analysed everything sent: diagnostics published after the last chunk show
        no backlog, and no emotion message has arrived for `settle_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                last = self._output_time
                sent = self.session.sent[-1].t if self.session.sent else 0.0
                idle = self._diag_time > sent + 0.05 and self.session.diagnostics[-1]["backlog_s"] == 0
            if idle and time.monotonic() - max(last, sent) > settle_s:
                return
            time.sleep(0.05)
        raise TimeoutError(f"the node was still busy after {timeout_s:.0f} s")

    def last_diagnostics(self, fresh: bool = True, timeout_s: float = 5.0) -> dict:
        """The newest diagnostics; with `fresh`, wait for one published after this call."""
        count = len(self.session.diagnostics)
        if fresh:
            deadline = time.monotonic() + timeout_s
            while len(self.session.diagnostics) == count and time.monotonic() < deadline:
                time.sleep(0.05)
        with self._lock:
            return dict(self.session.diagnostics[-1])

    def close(self) -> None:
        self._running = False
        self._spin.join(timeout=2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.context)


# DDS on this machine with no network socket: Fast DDS over shared memory only (the XML profile and
# the built-in transport setting agree). Not ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: with it,
# rmw_fastrtps adds a UDP transport of its own whose sockets bind 0.0.0.0 and every interface.
FASTDDS_PROFILE = REPO / "ros" / "config" / "fastdds_local.xml"
LOCAL_DDS_ENV = {
    "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE),
    "FASTDDS_BUILTIN_TRANSPORTS": "SHM",
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT",
}


def keep_dds_local() -> None:
    """Apply LOCAL_DDS_ENV to this process (before its first rclpy.init): tests and benchmarks."""
    os.environ.update(LOCAL_DDS_ENV)


def node_env(domain_id: int, flavour: str | None = None, **extra: str) -> dict[str, str]:
    """Environment of a ROS process: DDS on this machine only (LOCAL_DDS_ENV), domain `domain_id`,
    the node package of this checkout on the path, one OpenMP thread, Python's stacks in the log
    if the process crashes in native code (DDS), and the built audio_common_msgs `flavour`
    ("ros-drivers" or "mgonzs13") if one is named."""
    env = dict(os.environ)
    if flavour is not None:
        from physioser.ros.interfaces import environment

        env = environment(flavour, env)
    env.update(
        LOCAL_DDS_ENV,
        ROS_DOMAIN_ID=str(domain_id),
        PYTHONPATH=os.pathsep.join([str(REPO / "ros"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",
        **extra,
    )
    return env


class NodeProcess:
    """`python -m physioser_ros.node` in its own process, named `name`, with `params` (-p k:=v);
    output to `log_dir/<name>.log`."""

    def __init__(self, name: str, params: dict, log_dir: Path, *, domain_id: int, flavour: str | None = None):
        self.name = name
        self.log = Path(log_dir) / f"{name}.log"
        args = [sys.executable, "-m", "physioser_ros.node", "--ros-args", "-r", f"__node:={name}"]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen(args, env=node_env(domain_id, flavour), cwd=REPO, stdout=self._fh, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.name}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int | None:
        """Signal the node, wait for it (kill after `timeout`); returns its exit code."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")
