"""ROS 2 managed (lifecycle) node `physioser_emotion`: emotion estimates from a microphone topic.

rclpy wiring around `physioser.ros.core.EmotionCore` (the logic, testable without ROS):

- configure: reads the parameters, loads and verifies the model bundle, creates the publishers;
  a failure (a tampered bundle, a missing message package) is logged and leaves the node
  unconfigured and alive;
- activate: subscribes to `audio_topic` (sensor-data QoS) with the type named by `msg_type`, to
  `audio_info_topic` (ros-drivers AudioInfo) where that applies, to `speaker_topic` if set, and
  publishes; deactivate: unsubscribes and stops publishing, keeping the stream state (queued audio,
  smoothing, counters); cleanup: frees the model;
- publishes per window a physioser_msgs/EmotionEstimate on `emotion_topic`, stamped with the end of
  the window on the audio's clock, an hri_msgs/Expression on `<emotion_topic>/expression` (when
  hri_msgs is installed), JSON on `<emotion_topic>/json` if `publish_json`, whether there is speech
  (std_msgs/Bool on `<emotion_topic>/is_speaking`, latched, on every change: False = "no speech", no
  estimates), and diagnostics (diagnostic_msgs/DiagnosticArray on `/diagnostics`, JSON on
  `<emotion_topic>/diagnostics`);
- parameters carry descriptors (ranges, read-only) from `physioser.ros.parameters`; a run-time
  change the core cannot apply (e.g. a model that fails to load) is refused with the reason;
- logs (rate-limited) rejected messages with the reason, dropped audio, new streams (a new publisher
  or a gap) and publishers of another type on the audio topic.

Callbacks run on a single-threaded executor; inference runs in a worker thread woken by the audio
callback, so audio keeps arriving while a window is being inferred. (Inference in a callback group
of its own on a MultiThreadedExecutor, woken by a guard condition, was measured against it: end-to-end
p50 121/175/127 ms against 108/59/43 ms over three interleaved runs with the shipped model on the
2-core machine, the executor's own Python loop competing with inference for the two cores.)

Run: `python -m physioser_ros.node --ros-args --params-file config/physioser_emotion.yaml`
or `ros2 launch physioser_ros physioser_emotion.launch.py`.
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
import time
from dataclasses import fields, replace
from typing import Any

import rclpy
from builtin_interfaces.msg import Duration, Time
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Bool, String

from physioser.ros.core import EmotionCore, NodeConfig, event_record, hri_expression, validate_config
from physioser.ros.messages import MessageDecodeError, audio_type, decode_ros_drivers_audio_info
from physioser.ros.parameters import PARAMETERS, Param

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The last message kept for late subscribers (audio_info in, is_speaking out)."""
SPIN_TIMEOUT_S = 0.2
"""How soon the spin loop sees a stop signal when no callback is due."""


def import_message(ros_name: str, *, purpose: str):
    """Import an rclpy message class `pkg/Type` or raise RuntimeError saying how to get the package."""
    package, cls = ros_name.split("/")[0], ros_name.split("/")[-1]
    try:
        return getattr(importlib.import_module(f"{package}.msg"), cls)
    except (ImportError, AttributeError) as err:
        raise RuntimeError(
            f"{purpose} needs the ROS message package `{package}` ({ros_name}), which is not installed "
            f"in this environment ({err}). Install it (e.g. `apt install ros-$ROS_DISTRO-{package.replace('_', '-')}` "
            f"or build it in your workspace and source it; from a physioser checkout: `make ros-interfaces`, then "
            f"for audio_common_msgs `eval \"$(physioser ros env ros-drivers)\"` or `... mgonzs13`), or publish one of "
            f"the std_msgs types: std_msgs/Int16MultiArray, std_msgs/Float32MultiArray, std_msgs/UInt8MultiArray."
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


def descriptor(p: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(description=p.description, read_only=p.read_only)
    if p.range is not None and isinstance(p.default, int) and not isinstance(p.default, bool):
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    elif p.range is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]), to_value=float(p.range[1]), step=0.0)]
    if p.choices is not None:
        d.additional_constraints = "one of: " + ", ".join(p.choices)
    return d


def publisher_node(info) -> str:
    """The publishing node's full name, or a plain phrase while the ROS graph has not yet named it
    (rmw reports `_NODE_NAME_UNKNOWN_` until the publisher's participant is discovered)."""
    if info.node_name == "_NODE_NAME_UNKNOWN_":
        return "(a node not yet discovered)"
    return f"{info.node_namespace.rstrip('/')}/{info.node_name}"


def ros_time(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def ros_duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class EmotionNode(LifecycleNode):
    def __init__(self) -> None:
        super().__init__("physioser_emotion")
        for p in PARAMETERS:
            self.declare_parameter(p.name, p.default, descriptor(p))
        self.add_on_set_parameters_callback(self._on_parameters)
        self.core: EmotionCore | None = None
        self._active = False
        self._wake = threading.Event()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="physioser-inference", daemon=True)
        self._worker.start()
        self._inputs: list = []
        self._audio_sub = None
        self._own_timers: list = []
        self._outputs: dict[str, Any] = {}

    def opt(self, name: str) -> Any:
        return self.get_parameter(name).value

    # ---- lifecycle ----------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            spec = audio_type(self.opt("msg_type"))
            self._audio_cls = import_message(spec.name, purpose=f"msg_type {spec.name}")
            check_flavour(self._audio_cls, spec.flavour, spec.name)
            estimate_cls = import_message("physioser_msgs/EmotionEstimate", purpose="the emotion estimates")
            config = NodeConfig(**{f.name: self.opt(f.name) for f in fields(NodeConfig)})
            # loads the model and verifies the bundle's checksums
            self.core = EmotionCore(config, log=self.get_logger().warning, on_speech=self._publish_speaking)
        except Exception as err:  # noqa: BLE001 - any failure leaves the node unconfigured, alive, and says why
            self.core = None
            self.get_logger().error(f"configure failed: {type(err).__name__}: {err}")
            return TransitionCallbackReturn.FAILURE
        self._spec = spec
        out = self.opt("emotion_topic")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {"estimate": self.create_lifecycle_publisher(estimate_cls, out, reliable),
                "speaking": self.create_lifecycle_publisher(Bool, f"{out}/is_speaking", LATCHED),
                "diag_json": self.create_lifecycle_publisher(String, f"{out}/diagnostics", reliable)}
        if self.opt("publish_json"):
            pubs["json"] = self.create_lifecycle_publisher(String, f"{out}/json", reliable)
        for key, name, topic in (("expression", "hri_msgs/Expression", f"{out}/expression"),
                                 ("diag", "diagnostic_msgs/DiagnosticArray", "/diagnostics")):
            try:
                pubs[key] = self.create_lifecycle_publisher(import_message(name, purpose=topic), topic, reliable)
            except RuntimeError as err:
                self.get_logger().warning(f"not publishing {topic}: {err}")
        self._outputs = pubs
        self._own_timers = [self.create_timer(float(self.opt("diagnostics_period_s")), self._publish_diagnostics)]
        if float(self.opt("model_watch_s")) > 0:
            self._own_timers.append(self.create_timer(float(self.opt("model_watch_s")), self._watch_model))
        self.get_logger().info(
            f"configured: model {config.model_path or '(default)'}, classes {list(self.core.engine.class_names)}, "
            f"audio {self.resolve_topic_name(self.opt('audio_topic'))} ({spec.name})"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        sensor = QoSProfile(
            depth=int(self.opt("qos_depth")), reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history,
        )
        self._audio_sub = self.create_subscription(self._audio_cls, self.opt("audio_topic"), self._on_audio, sensor)
        self._inputs = [self._audio_sub]
        self._subscribe_audio_info()
        self._subscribe_speaker()
        self._active = True
        self._wake.set()  # audio queued before a deactivate goes on
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs, self._audio_sub = [], None
        self.get_logger().info("inactive: the stream state is kept")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs, self._audio_sub = [], None
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.on_shutdown(state)
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        for timer in self._own_timers:
            self.destroy_timer(timer)
        for pub in self._outputs.values():
            self.destroy_lifecycle_publisher(pub)
        self._own_timers, self._outputs = [], {}
        self.core = None

    def _subscribe_audio_info(self) -> None:
        if self._spec.info_type is None:
            return  # AudioStamped declares its format in every message
        try:
            info_cls = import_message(self._spec.info_type, purpose="audio_info")
            if "sample_rate" not in info_cls.get_fields_and_field_types():
                raise RuntimeError("the installed audio_common_msgs is the mgonzs13 flavour (no ros-drivers AudioInfo)")
        except RuntimeError as err:
            self.get_logger().info(
                f"not subscribing to {self.opt('audio_info_topic')}: {err} The format comes from the parameters "
                f"sample_rate/channels/sample_format ({self.core.format})."
            )
            return
        self._inputs.append(self.create_subscription(info_cls, self.opt("audio_info_topic"), self._on_audio_info, LATCHED))

    def _subscribe_speaker(self) -> None:
        topic = self.opt("speaker_topic")
        if not topic:
            return
        kind = self.opt("speaker_msg_type")
        try:
            cls = import_message(kind, purpose="speaker_topic")
        except RuntimeError as err:
            self.get_logger().error(f"not following the speaker: {err}")
            return
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._inputs.append(self.create_subscription(cls, topic, self._on_speaker, reliable))

    # ---- callbacks: the executor's thread --------------------------------------------------------
    def _on_audio(self, msg, info) -> None:
        if self.core is None:
            return
        gid = info.get("publisher_gid")
        sent = info.get("source_timestamp") or None
        if self.core.accept(msg, time.monotonic(), source=bytes(gid["data"]) if gid else None,
                            sent=sent / 1e9 if sent else None, received_ns=self.get_clock().now().nanoseconds):
            self._wake.set()

    def _on_audio_info(self, msg) -> None:
        try:
            self.core.set_format(decode_ros_drivers_audio_info(msg))
        except MessageDecodeError as err:
            self.core.reject(err)
            self.get_logger().warning(str(err), throttle_duration_sec=5.0)

    def _on_speaker(self, msg) -> None:
        speaker = (msg.ids[0] if msg.ids else None) if hasattr(msg, "ids") else msg.data
        self.core.set_speaker(speaker)

    def _on_parameters(self, params) -> SetParametersResult:
        """Descriptors have already refused read-only changes, wrong types and out-of-range numbers."""
        changes = {p.name: p.value for p in params if p.name in NodeConfig.__dataclass_fields__}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            if self.core is None:  # unconfigured: checked now, applied at the next configure
                validate_config(replace(NodeConfig(**{f.name: self.opt(f.name) for f in fields(NodeConfig)}), **changes))
            else:
                self.core.set_config(changes)
        except Exception as err:  # noqa: BLE001 - a bad combination or a model that fails to load: refuse, keep running
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
        if self._audio_sub is not None:
            publishers = self.get_publishers_info_by_topic(self._audio_sub.topic_name)
            self.core.check_publishers([(publisher_node(i), i.topic_type) for i in publishers])
        diag = self.core.diagnostics()
        self._outputs["diag_json"].publish(String(data=json.dumps(diag)))
        if "diag" not in self._outputs:
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
        self._outputs["diag"].publish(array)

    # ---- inference: the worker thread -------------------------------------------------------
    def _work(self) -> None:
        while self._running:
            self._wake.wait(0.2)
            self._wake.clear()
            self._infer()

    def stop(self) -> None:
        self._running = False
        self._wake.set()
        self._worker.join(timeout=5.0)

    def _infer(self) -> None:
        core = self.core
        if core is None or not self._active:
            return  # queued audio waits for the next activate
        try:
            for timed in core.process():
                if not self._running:
                    break  # stopping: the queued audio is not analysed
                self._publish_estimate(timed)
        except Exception as err:  # noqa: BLE001 - report, keep serving the next windows
            self.get_logger().error(f"inference failed: {type(err).__name__}: {err}", throttle_duration_sec=5.0)

    def _publish_speaking(self, speaking: bool) -> None:
        self._outputs["speaking"].publish(Bool(data=speaking))

    def _publish_estimate(self, timed) -> None:
        event, pubs = timed.event, self._outputs
        names = list(event.probs)
        msg = pubs["estimate"].msg_type()
        msg.header.stamp, msg.header.frame_id = ros_time(timed.stamp_ns), timed.frame_id
        msg.window = ros_duration(event.end_s - event.start_s)
        msg.label, msg.class_names = event.label, names
        msg.probabilities = [float(event.probs[n]) for n in names]
        msg.valence, msg.arousal, msg.confidence = float(event.valence), float(event.arousal), float(event.confidence)
        msg.speaker_id, msg.inference_ms = timed.speaker_id, float(event.latency_ms)
        pubs["estimate"].publish(msg)
        if "expression" in pubs:
            expr = pubs["expression"].msg_type()
            expr.header = msg.header
            expr.expression = hri_expression(event.label)
            expr.valence, expr.arousal, expr.confidence = msg.valence, msg.arousal, msg.confidence
            pubs["expression"].publish(expr)
        latency_ms = (time.monotonic() - timed.arrival) * 1000.0
        if "json" in pubs:
            record = {**event_record(event, latency_ms), "stamp_ns": timed.stamp_ns, "speaker_id": timed.speaker_id}
            pubs["json"].publish(String(data=json.dumps(record, allow_nan=False)))
        self.core.record_latency(latency_ms / 1000.0)


def main(args: list[str] | None = None) -> int:
    # SIGINT / SIGTERM stop the spin loop here instead of shutting rclpy's context down from its signal
    # handler, so the inference thread ends before its publishers and the context go (publishing into
    # a context being shut down can crash the process).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    node = None
    try:
        node = EmotionNode()
        if node.opt("autostart") and node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            node.trigger_activate()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stopping.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as err:  # noqa: BLE001 - e.g. a parameter outside its range at start-up
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
