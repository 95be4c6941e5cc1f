"""The emotion node's logic as a plain class: no ROS needed, shared by the live node and `ros replay`.

Flow: `accept(msg, arrival)` decodes a message (counting rejections by reason), follows the declared
format, resamples to 16 kHz with a streaming resampler and queues the samples (bounded: the oldest
audio is dropped, and counted, if inference falls behind). `process()` drains the queue through the
runtime `Streamer` and returns the emotion events, each with the arrival time of the message whose
samples closed its window. The ROS wiring (`ros/physioser_ros/node.py`) calls `accept` from the
subscription callback and `process` from a worker thread; replay calls both in turn.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soxr

from physioser import SAMPLE_RATE
from physioser.runtime.contract import DEFAULT_HOP_S, DEFAULT_WINDOW_S
from physioser.ros.messages import (
    AudioFormat,
    MessageDecodeError,
    PCM_ENCODINGS,
    audio_type,
    check_format,
)

# ROS4HRI hri_msgs/Expression constants for the project's canonical labels (others pass through).
HRI_EXPRESSIONS = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fearful": "scared",
    "disgust": "disgusted",
    "surprised": "surprised",
}


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node can be told through parameters (names match the ROS parameters)."""

    model_path: str = ""
    profile: str = ""
    msg_type: str = "std_msgs/Int16MultiArray"
    sample_rate: int = SAMPLE_RATE
    channels: int = 1
    sample_format: str = "S16LE"
    window_s: float = DEFAULT_WINDOW_S
    hop_s: float = DEFAULT_HOP_S
    vad: str = "energy"
    vad_threshold_db: float = -45.0
    smoothing: float = 0.5
    gap_s: float = 1.0
    max_backlog_s: float = 5.0
    latency_history: int = 1000

    def audio_format(self) -> AudioFormat:
        return AudioFormat(int(self.sample_rate), int(self.channels), self.sample_format)


# Parameters that rebuild the streamer, the resampler, or the engine when they change.
STREAMER_KEYS = {"window_s", "hop_s", "vad", "vad_threshold_db", "smoothing"}
FORMAT_KEYS = {"sample_rate", "channels", "sample_format"}
ENGINE_KEYS = {"model_path", "profile"}
FIXED_KEYS = {"msg_type"}  # the subscription's type: needs a restart


def validate_config(config: NodeConfig) -> NodeConfig:
    """Return `config` if the node-level values are usable, else raise ValueError naming the parameter.

    Window, hop, VAD and smoothing are checked by the runtime Streamer when it is built.
    """
    audio_type(config.msg_type)
    check_format(config.audio_format(), "parameters")
    if config.sample_format.upper() not in PCM_ENCODINGS:
        raise ValueError(f"sample_format {config.sample_format!r} is not one of {sorted(PCM_ENCODINGS)}")
    if not 0.05 <= config.gap_s <= 3600:
        raise ValueError(f"gap_s {config.gap_s} must be within 0.05..3600 s")
    if not config.window_s <= config.max_backlog_s <= 600:
        raise ValueError(f"max_backlog_s {config.max_backlog_s} must be within window_s..600 s")
    if not 10 <= config.latency_history <= 100_000:
        raise ValueError(f"latency_history {config.latency_history} must be within 10..100000")
    if config.model_path and not Path(config.model_path).exists():
        raise ValueError(f"model_path {config.model_path!r} does not exist")
    return config


class _Resampler:
    """Streaming resampler from a declared rate to 16 kHz (identity at 16 kHz)."""

    def __init__(self, rate: int):
        self.rate = rate
        self._stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")

    def __call__(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=last)


@dataclass
class TimedEvent:
    """An emotion event and the arrival time (time.monotonic) of the message that closed its window."""

    event: Any
    arrival: float


@dataclass
class _Stats:
    received: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    last_rejection: str = ""
    format_changes: int = 0
    gaps: int = 0
    longest_gap_s: float = 0.0
    dropped_s: float = 0.0
    audio_s: float = 0.0
    windows: int = 0
    model_reloads: int = 0
    model_reload_failures: int = 0
    model_error: str = ""


def load_engine(model_path: str, profile: str):
    """The runtime Engine for a model (lazy import: the runtime pulls onnxruntime)."""
    from physioser.runtime import Engine

    return Engine.from_path(model_path or None, profile=profile or None)


def make_streamer(engine, config: NodeConfig):
    from physioser.runtime import Streamer

    return Streamer(
        engine,
        window_s=config.window_s,
        hop_s=config.hop_s,
        vad=config.vad,
        vad_threshold_db=config.vad_threshold_db,
        smoothing=config.smoothing,
    )


class EmotionCore:
    """Decode → resample → bounded queue → Streamer → events, with counters for diagnostics.

    Thread use: `accept`, `set_config` and `set_format` from one thread (the ROS executor),
    `process` from one other thread (the worker); `diagnostics` from any.
    """

    def __init__(
        self,
        config: NodeConfig,
        engine=None,
        *,
        engine_loader: Callable[[str, str], Any] = load_engine,
        streamer_factory: Callable[[Any, NodeConfig], Any] = make_streamer,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = validate_config(config)
        self.msg = audio_type(config.msg_type)
        self._engine_loader = engine_loader
        self._streamer_factory = streamer_factory
        self._clock = clock
        self.engine = engine if engine is not None else engine_loader(config.model_path, config.profile)
        self._model_signature = _file_signature(config.model_path)
        self._settling = None  # a changed model file's signature, waiting to be stable
        self.streamer = self._new_streamer(self.engine, config)
        self._offset_s = 0.0  # stream time consumed by streamers replaced at run time
        self.format = self.config.audio_format()
        self._resampler = _Resampler(self.format.sample_rate)
        self._queue: deque[tuple[np.ndarray, float]] = deque()
        self._queued = 0  # samples in the queue
        self._in_flight = 0  # samples being pushed through the streamer
        self._queue_lock = threading.Lock()
        self._stream_lock = threading.Lock()
        self._last_arrival: float | None = None
        self.stats = _Stats()
        self._latencies: deque[float] = deque(maxlen=config.latency_history)
        self._inference_ms: deque[float] = deque(maxlen=config.latency_history)

    # ---- input ------------------------------------------------------------------------------
    def accept(self, msg: Any, arrival: float | None = None) -> bool:
        """Decode one audio message and queue its samples. Returns False (and counts why) if rejected."""
        arrival = self._clock() if arrival is None else arrival
        self.stats.received += 1
        try:
            decoded = self.msg.decode(msg, self.format)
        except MessageDecodeError as err:
            self._reject(err)
            return False
        except Exception as err:  # noqa: BLE001 - a message of an unexpected shape must not stop the node
            self._reject(MessageDecodeError(self.msg.name, "undecodable", f"{type(err).__name__}: {err}"))
            return False
        if decoded.format.sample_rate != self.format.sample_rate or decoded.format.channels != self.format.channels:
            self._switch_format(decoded.format)
        if self._last_arrival is not None and arrival - self._last_arrival > self.config.gap_s:
            self.stats.gaps += 1
            self.stats.longest_gap_s = max(self.stats.longest_gap_s, arrival - self._last_arrival)
        self._last_arrival = arrival
        self.stats.accepted += 1
        self.stats.audio_s += decoded.samples.size / decoded.format.sample_rate
        self._enqueue(self._resampler(decoded.samples), arrival)
        return True

    def set_format(self, fmt: AudioFormat) -> None:
        """A format declared on the `audio_info` topic (already decoded and checked)."""
        if fmt != self.format:
            self._switch_format(fmt)

    def reject(self, err: MessageDecodeError) -> None:
        """Count a message that failed before `accept` (e.g. a bad AudioInfo)."""
        self.stats.received += 1
        self._reject(err)

    def _reject(self, err: MessageDecodeError) -> None:
        self.stats.rejected[err.reason] += 1
        self.stats.last_rejection = str(err)

    def _switch_format(self, fmt: AudioFormat) -> None:
        """The declared rate/channels changed mid-stream: flush the old resampler, start a new one."""
        self.stats.format_changes += 1
        tail = self._resampler(np.zeros(0, np.float32), last=True)
        if tail.size:
            self._enqueue(tail, self._last_arrival if self._last_arrival is not None else self._clock())
        self.format = fmt
        self._resampler = _Resampler(fmt.sample_rate)

    def _enqueue(self, samples: np.ndarray, arrival: float) -> None:
        if samples.size == 0:
            return
        limit = int(self.config.max_backlog_s * SAMPLE_RATE)
        with self._queue_lock:
            self._queue.append((samples, arrival))
            self._queued += samples.size
            while self._queued > limit and len(self._queue) > 1:
                old, _ = self._queue.popleft()
                self._queued -= old.size
                self.stats.dropped_s += old.size / SAMPLE_RATE

    # ---- processing --------------------------------------------------------------------------
    def process(self) -> Iterator[TimedEvent]:
        """Push the queued audio through the streamer, yielding each event as soon as it exists."""
        while True:
            with self._queue_lock:
                if not self._queue:
                    return
                samples, arrival = self._queue.popleft()
                self._queued -= samples.size
                self._in_flight = samples.size
            try:
                with self._stream_lock:
                    events = self.streamer.push(samples)
                    offset = self._offset_s
            finally:
                with self._queue_lock:
                    self._in_flight = 0
            for event in events:
                if offset:
                    event = replace(event, start_s=event.start_s + offset, end_s=event.end_s + offset)
                self.stats.windows += 1
                self._inference_ms.append(float(event.latency_ms))
                yield TimedEvent(event, arrival)

    def record_latency(self, seconds: float) -> None:
        """Arrival of the window's last message → its emotion message published."""
        self._latencies.append(seconds * 1000.0)

    # ---- parameters and model ----------------------------------------------------------------
    def check_config(self, changes: dict[str, Any]) -> NodeConfig:
        """Validate parameter changes without applying them; raise ValueError saying what is wrong."""
        unknown = set(changes) - set(NodeConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        fixed = {k for k in FIXED_KEYS & set(changes) if changes[k] != getattr(self.config, k)}
        if fixed:
            raise ValueError(f"{sorted(fixed)} cannot change at run time; restart the node")
        return validate_config(replace(self.config, **changes))

    def set_config(self, changes: dict[str, Any]) -> None:
        """Apply parameter changes; if any is invalid (or a new model fails to load), raise and change nothing."""
        new = self.check_config(changes)
        changed = {k for k in changes if getattr(new, k) != getattr(self.config, k)}
        engine, streamer = self.engine, None
        if changed & ENGINE_KEYS:
            engine = self._engine_loader(new.model_path, new.profile)
        if engine is not self.engine or changed & STREAMER_KEYS:
            streamer = self._new_streamer(engine, new)  # the runtime validates window/hop/VAD/smoothing
        self.config = new
        if streamer is not None:
            self._replace_engine(engine, streamer)
        if changed & ENGINE_KEYS:
            self._model_signature = _file_signature(new.model_path)
        if changed & FORMAT_KEYS:
            self.set_format(new.audio_format())
        if "latency_history" in changed:
            self._latencies = deque(self._latencies, maxlen=new.latency_history)
            self._inference_ms = deque(self._inference_ms, maxlen=new.latency_history)

    def _new_streamer(self, engine, config: NodeConfig):
        """A streamer over `engine`, after one warm-up inference on a silent window (the first run of
        an onnxruntime session allocates, and would otherwise delay the first real window)."""
        streamer = self._streamer_factory(engine, config)
        engine.infer(np.zeros((1, int(round(config.window_s * SAMPLE_RATE))), np.float32))
        return streamer

    def _replace_engine(self, engine, streamer) -> None:
        """Swap engine and streamer; stream time goes on from where the old streamer was."""
        with self._stream_lock:
            self._offset_s += self.streamer.time_s
            self.engine, self.streamer = engine, streamer

    def check_model_file(self) -> bool | None:
        """Call periodically: reload the model once its file has changed on disk and then stayed the
        same for one call (so a file being written is not read half-way). True: reloaded; False: the
        new file is broken (the old model stays, the error is reported); None: nothing to do yet."""
        signature = _file_signature(self.config.model_path)
        if signature == self._model_signature:
            self._settling = None
            return None
        if signature != self._settling:
            self._settling = signature  # changed: wait one period for it to settle
            return None
        self._model_signature = signature  # try each version of the file once
        try:
            engine = self._engine_loader(self.config.model_path, self.config.profile)
            streamer = self._new_streamer(engine, self.config)
        except Exception as err:  # noqa: BLE001 - any failure to load must leave the node running
            self.stats.model_reload_failures += 1
            self.stats.model_error = f"{self.config.model_path}: {type(err).__name__}: {err}; keeping the previous model"
            return False
        self._replace_engine(engine, streamer)
        self.stats.model_reloads += 1
        self.stats.model_error = ""
        return True

    # ---- outputs ----------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, Any]:
        """Counters and latency statistics, JSON-ready."""
        s = self.stats
        with self._queue_lock:
            backlog = (self._queued + self._in_flight) / SAMPLE_RATE
        return {
            "messages_received": s.received,
            "messages_accepted": s.accepted,
            "messages_rejected": sum(s.rejected.values()),
            "rejected_by_reason": dict(sorted(s.rejected.items())),
            "last_rejection": s.last_rejection,
            "format_changes": s.format_changes,
            "sample_rate": self.format.sample_rate,
            "channels": self.format.channels,
            "gaps": s.gaps,
            "longest_gap_s": round(s.longest_gap_s, 3),
            "dropped_audio_s": round(s.dropped_s, 3),
            "backlog_s": round(backlog, 3),
            "audio_received_s": round(s.audio_s, 3),
            "windows_processed": s.windows,
            "latency_ms": _summary(self._latencies),
            "inference_ms": _summary(self._inference_ms),
            "model_path": self.config.model_path,
            "model_reloads": s.model_reloads,
            "model_reload_failures": s.model_reload_failures,
            "model_error": s.model_error,
        }


def _file_signature(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _summary(values: deque) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values)
    return {
        "count": int(arr.size),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "max": round(float(arr.max()), 3),
    }


def event_record(event: Any, latency_ms: float | None = None) -> dict[str, Any]:
    """The std_msgs JSON form of an event: label, confidence, probabilities, valence, arousal,
    window start/end (s from the start of the stream), inference latency and node latency."""
    record = {
        "label": event.label,
        "confidence": float(event.confidence),
        "probabilities": {k: float(v) for k, v in event.probs.items()},
        "valence": float(event.valence),
        "arousal": float(event.arousal),
        "window_start_s": float(event.start_s),
        "window_end_s": float(event.end_s),
        "inference_latency_ms": float(event.latency_ms),
    }
    if latency_ms is not None:
        record["latency_ms"] = float(latency_ms)
    return record


def event_json(event: Any, latency_ms: float | None = None) -> str:
    return json.dumps(event_record(event, latency_ms), allow_nan=False)


def hri_expression(label: str) -> str:
    return HRI_EXPRESSIONS.get(label, label)


__all__ = [
    "EmotionCore",
    "NodeConfig",
    "TimedEvent",
    "event_json",
    "event_record",
    "hri_expression",
    "validate_config",
]
