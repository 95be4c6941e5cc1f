"""ROS 2 node `physioser_emotion`: emotion estimates from a microphone topic.

Thin rclpy wiring around `physioser.ros.core.EmotionCore` (the logic, testable without ROS):

- subscribes to `audio_topic` (sensor-data QoS) with the type named by `msg_type`, and, for
  ros-drivers/std_msgs audio, to `audio_info_topic` (ros-drivers AudioInfo) when audio_common_msgs
  is installed;
- publishes on `emotion_topic` a JSON std_msgs/String per window, on `<emotion_topic>/probabilities`
  a Float32MultiArray (layout dim i is labelled with class i's name), on `<emotion_topic>/expression`
  an hri_msgs/Expression when hri_msgs is installed, diagnostic_msgs/DiagnosticArray on
  `/diagnostics` and the same figures as JSON on `<emotion_topic>/diagnostics`;
- validates parameter changes at run time, and reloads the model when its file changes (a broken
  file is reported and the previous model kept);
- logs (rate-limited) rejected messages with the reason, dropped audio, new streams (a new publisher
  or a gap) and publishers of another type on the audio topic.

Run: `python -m physioser_ros.node --ros-args --params-file config/physioser_emotion.yaml`
or `ros2 launch physioser_ros physioser_emotion.launch.py`.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from dataclasses import fields
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from std_msgs.msg import Float32MultiArray, MultiArrayDimension, String

from physioser.ros.core import EmotionCore, NodeConfig, event_json, hri_expression
from physioser.ros.messages import MessageDecodeError, audio_type, decode_ros_drivers_audio_info

# Node-level parameters (the core's parameters are the fields of NodeConfig).
NODE_PARAMS: dict[str, tuple[Any, str]] = {
    "audio_topic": ("audio", "audio input topic (restart to change)"),
    "audio_info_topic": ("audio_info", "ros-drivers AudioInfo topic declaring rate/channels/format (restart to change)"),
    "emotion_topic": ("emotion", "output topic prefix (restart to change)"),
    "qos_depth": (500, "history depth of the audio subscription (sensor-data QoS: best effort, volatile); "
                      "deep enough to ride out a busy CPU without losing chunks (restart to change)"),
    "diagnostics_period_s": (1.0, "seconds between diagnostics messages (restart to change)"),
    "model_watch_s": (2.0, "seconds between checks of the model file for changes; 0 = off (restart to change)"),
}
PARAM_HELP = {
    "model_path": "model bundle or .onnx file; empty = the default bundle",
    "profile": "installed hardware profile name (physioser/hardware/*.yaml); empty = default; a file path only with allow_profile_paths",
    "allow_profile_paths": "let `profile` name a YAML file instead of an installed profile (set at launch only)",
    "msg_type": "audio message type (restart to change)",
    "sample_rate": "declared input rate in Hz (overridden by audio_info / AudioStamped)",
    "channels": "declared interleaved channels (overridden by audio_info / AudioStamped / layout)",
    "sample_format": "PCM encoding of byte messages: S16LE, S32LE, F32LE, U8, S8",
    "window_s": "analysis window in seconds",
    "hop_s": "seconds between windows",
    "vad": "speech gate: auto (silero where installed, else energy), silero, energy or none",
    "vad_threshold_db": "energy gate threshold in dBFS",
    "smoothing": "EMA weight of past probabilities (0 = off)",
    "gap_s": "arrival gap counted as an interruption in diagnostics",
    "max_backlog_s": "most queued audio before the oldest is dropped (and counted)",
    "latency_history": "windows kept for latency statistics",
}


def import_message(ros_name: str, module: str, cls: str, *, purpose: str):
    """Import an rclpy message class or raise RuntimeError saying which package to install."""
    package = ros_name.split("/")[0]
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as err:
        raise RuntimeError(
            f"{purpose} needs the ROS message package `{package}` ({ros_name}), which is not installed "
            f"in this environment ({err}). Install it (e.g. `apt install ros-$ROS_DISTRO-{package.replace('_', '-')}` "
            f"or build it in your workspace and source it), or publish one of the std_msgs types: "
            f"std_msgs/Int16MultiArray, std_msgs/Float32MultiArray, std_msgs/UInt8MultiArray."
        ) from None


def check_flavour(msg_cls, flavour: str, ros_name: str) -> None:
    """ros-drivers and mgonzs13 both ship `audio_common_msgs`: refuse the wrong one clearly."""
    if flavour == "std_msgs":
        return
    names = set(msg_cls.get_fields_and_field_types())
    expected = {"audio_common_msgs/AudioData": {"data"}, "audio_common_msgs/AudioDataStamped": {"header", "audio"},
                "audio_common_msgs/AudioStamped": {"header", "audio"}}[ros_name]
    if not expected <= names:
        other = "mgonzs13" if flavour == "ros-drivers" else "ros-drivers"
        raise RuntimeError(
            f"the installed audio_common_msgs has {ros_name} fields {sorted(names)}: it looks like the {other} "
            f"package, not {flavour}/audio_common. Pick the msg_type that matches your driver."
        )


class EmotionNode(Node):
    def __init__(self) -> None:
        super().__init__("physioser_emotion")
        defaults = NodeConfig()
        for f in fields(NodeConfig):
            self.declare_parameter(f.name, getattr(defaults, f.name), ParameterDescriptor(
                description=PARAM_HELP.get(f.name, ""), read_only=f.name == "allow_profile_paths"))
        for name, (default, help_text) in NODE_PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=help_text))
        values = {f.name: self.get_parameter(f.name).value for f in fields(NodeConfig)}
        self.opts = {name: self.get_parameter(name).value for name in NODE_PARAMS}

        spec = audio_type(values["msg_type"])
        msg_cls = import_message(spec.name, spec.module, spec.cls, purpose=f"msg_type {spec.name}")
        check_flavour(msg_cls, spec.flavour, spec.name)

        self.core = EmotionCore(NodeConfig(**values), log=self.get_logger().warning)
        names = list(self.core.engine.class_names)
        self.get_logger().info(
            f"model {values['model_path'] or '(default)'}: classes {names}; listening on "
            f"{self.resolve_topic_name(self.opts['audio_topic'])} ({spec.name})"
        )

        out = self.opts["emotion_topic"]
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_json = self.create_publisher(String, out, reliable)
        self.pub_probs = self.create_publisher(Float32MultiArray, f"{out}/probabilities", reliable)
        self.pub_diag_json = self.create_publisher(String, f"{out}/diagnostics", reliable)
        self.pub_expression = self._optional_publisher(
            "hri_msgs.msg", "Expression", f"{out}/expression", reliable,
            missing="hri_msgs is not installed: not publishing hri_msgs/Expression (the std_msgs forms are published)",
        )
        self.pub_diag = self._optional_publisher(
            "diagnostic_msgs.msg", "DiagnosticArray", "/diagnostics", reliable,
            missing="diagnostic_msgs is not installed: diagnostics only as JSON on " + f"{out}/diagnostics",
        )

        sensor = QoSProfile(
            depth=int(self.opts["qos_depth"]), reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history,
        )
        self.audio_sub = self.create_subscription(msg_cls, self.opts["audio_topic"], self._on_audio, sensor)
        self._subscribe_audio_info(spec)
        self.add_on_set_parameters_callback(self._on_parameters)
        self.create_timer(float(self.opts["diagnostics_period_s"]), self._publish_diagnostics)
        if float(self.opts["model_watch_s"]) > 0:
            self.create_timer(float(self.opts["model_watch_s"]), self._watch_model)

        self._wake = threading.Event()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="physioser-inference", daemon=True)
        self._worker.start()

    def _optional_publisher(self, module: str, cls: str, topic: str, qos, *, missing: str):
        try:
            msg_cls = getattr(importlib.import_module(module), cls)
        except ImportError:
            self.get_logger().warning(missing)
            return None
        return self.create_publisher(msg_cls, topic, qos)

    def _subscribe_audio_info(self, spec) -> None:
        if spec.info_type is None:
            return  # AudioStamped declares its format in every message
        try:
            info_cls = import_message(spec.info_type, "audio_common_msgs.msg", "AudioInfo", purpose="audio_info")
            if "sample_rate" not in info_cls.get_fields_and_field_types():
                raise RuntimeError("the installed audio_common_msgs is the mgonzs13 flavour (no ros-drivers AudioInfo)")
        except RuntimeError as err:
            self.get_logger().info(
                f"not subscribing to {self.opts['audio_info_topic']}: {err} The format comes from the parameters "
                f"sample_rate/channels/sample_format ({self.core.format})."
            )
            return
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(info_cls, self.opts["audio_info_topic"], self._on_audio_info, latched)

    # ---- callbacks (executor thread) --------------------------------------------------------
    def _on_audio(self, msg, info) -> None:
        gid = info.get("publisher_gid")
        source = bytes(gid["data"]) if gid else None
        sent = info.get("source_timestamp") or None
        if self.core.accept(msg, time.monotonic(), source=source, sent=sent / 1e9 if sent else None):
            self._wake.set()

    def _on_audio_info(self, msg) -> None:
        try:
            self.core.set_format(decode_ros_drivers_audio_info(msg))
        except MessageDecodeError as err:
            self.core.reject(err)
            self.get_logger().warning(str(err), throttle_duration_sec=5.0)

    def _on_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        node_level = sorted(set(changes) & set(NODE_PARAMS))
        if node_level:
            return SetParametersResult(successful=False, reason=f"{node_level} take effect only at start-up; restart the node")
        try:
            self.core.set_config(changes)
        except Exception as err:  # noqa: BLE001 - a bad value or a model that fails to load: refuse, keep running
            self.get_logger().warning(f"parameter change {changes} refused: {err}")
            return SetParametersResult(successful=False, reason=str(err))
        self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    def _watch_model(self) -> None:
        result = self.core.check_model_file()
        if result is False:
            self.get_logger().error(self.core.stats.model_error)
        elif result:
            self.get_logger().info(f"model file {self.core.config.model_path} changed: reloaded")

    def _publish_diagnostics(self) -> None:
        self.core.check_publishers([(f"{i.node_namespace.rstrip('/')}/{i.node_name}", i.topic_type)
                                    for i in self.get_publishers_info_by_topic(self.audio_sub.topic_name)])
        diag = self.core.diagnostics()
        self.pub_diag_json.publish(String(data=json.dumps(diag)))
        if self.pub_diag is None:
            return
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        problems = [text for text, bad in (
            (f"model: {diag['model_error']}", diag["model_error"]),
            (f"{diag['messages_rejected']} messages rejected", diag["messages_rejected"]),
            (f"{diag['dropped_audio_s']} s of audio dropped (inference behind)", diag["dropped_audio_s"]),
            (f"{diag['wrong_type_publishers']} publishers of another type on the audio topic", diag["wrong_type_publishers"]),
        ) if bad]
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
            name=f"{self.get_name()}: emotion pipeline",
            message="; ".join(problems) or "ok",
            hardware_id="",
            values=[KeyValue(key=k, value=json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in diag.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(array)

    # ---- worker thread ----------------------------------------------------------------------
    def _work(self) -> None:
        while self._running:
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                for timed in self.core.process():
                    self._publish_event(timed)
            except Exception as err:  # noqa: BLE001 - report, keep serving the next windows
                self.get_logger().error(f"inference failed: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _publish_event(self, timed) -> None:
        event = timed.event
        stamp = self.get_clock().now().to_msg()
        latency_ms = (time.monotonic() - timed.arrival) * 1000.0
        self.pub_json.publish(String(data=event_json(event, latency_ms)))
        names = list(event.probs)
        probs = Float32MultiArray(data=[float(event.probs[n]) for n in names])
        probs.layout.dim = [MultiArrayDimension(label=n, size=1, stride=1) for n in names]
        self.pub_probs.publish(probs)
        if self.pub_expression is not None:
            msg = self.pub_expression.msg_type()
            msg.header.stamp = stamp
            msg.expression = hri_expression(event.label)
            msg.valence, msg.arousal, msg.confidence = float(event.valence), float(event.arousal), float(event.confidence)
            self.pub_expression.publish(msg)
        self.core.record_latency(latency_ms / 1000.0)

    def stop(self) -> None:
        self._running = False
        self._wake.set()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = EmotionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as err:  # noqa: BLE001 - missing message package, bad parameter, unloadable model
        print(f"physioser_emotion: cannot start: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 2
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
