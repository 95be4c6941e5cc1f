"""The emotion node's logic as a plain class: no ROS needed, shared by the live node and `ros replay`.

Flow: `accept(msg, arrival)` decodes a message (counting rejections by reason), follows the declared
format (each message's own layout or AudioInfo applies to that message only), resamples to 16 kHz
with a streaming resampler and queues the samples (bounded: if inference falls behind, the oldest
audio is dropped, even part of one long message, and counted). A new publisher, a gap on the topic
or dropped audio starts a new stream: the old stream's tail is analysed, then the Streamer starts
afresh, so no window mixes audio from before and after the break. `process()` drains the queue
through the runtime `Streamer` and returns the emotion events, each with the arrival time of the
message whose samples closed its window and the window's end on the audio's clock (`stamp_ns`:
from the audio messages' header stamps where they have one, a stamp marking a message's first
sample; else from the time the message holding the window's last sample was received). Windows the
speech gate finds without speech give no event: the core reports "no speech" as a change of state
(`on_speech(False)`, and `on_speech(True)` when speech comes back), after the events it follows. Rejections, drops and new streams are reported through a
rate-limited log (at most one line per kind of problem every `LOG_PERIOD_S`). The ROS wiring (`ros/physioser_ros/node.py`) calls `accept` from the
subscription callback and `process` from a worker thread; replay calls both in turn.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soxr

from physioser import SAMPLE_RATE
from physioser.ros.messages import AudioFormat, MessageDecodeError, audio_type, check_format
from physioser.ros.parameters import BY_NAME

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


def _default(name: str) -> Any:
    return BY_NAME[name].default


@dataclass(frozen=True)
class NodeConfig:
    """The core's share of the node's parameters (names, defaults and ranges: physioser.ros.parameters)."""

    model_path: str = _default("model_path")
    profile: str = _default("profile")
    msg_type: str = _default("msg_type")
    sample_rate: int = _default("sample_rate")
    channels: int = _default("channels")
    sample_format: str = _default("sample_format")
    window_s: float = _default("window_s")
    hop_s: float = _default("hop_s")
    vad: str = _default("vad")
    vad_threshold_db: float = _default("vad_threshold_db")
    adapt: bool = _default("adapt")
    adapt_unnamed: bool = _default("adapt_unnamed")
    voice_encoder: bool = _default("voice_encoder")
    smoothing: float = _default("smoothing")
    gap_s: float = _default("gap_s")
    max_backlog_s: float = _default("max_backlog_s")
    latency_history: int = _default("latency_history")
    allow_profile_paths: bool = _default("allow_profile_paths")

    def audio_format(self) -> AudioFormat:
        return AudioFormat(int(self.sample_rate), int(self.channels), self.sample_format)


# Parameters that rebuild the streamer, the resampler, or the engine when they change.
STREAMER_KEYS = {"window_s", "hop_s", "vad", "vad_threshold_db", "adapt", "adapt_unnamed", "voice_encoder", "smoothing"}
FORMAT_KEYS = {"sample_rate", "channels", "sample_format"}
ENGINE_KEYS = {"model_path", "profile"}
# The subscription's type, and whether `profile` may name a file (the operator's choice at launch):
# both need a restart.
FIXED_KEYS = {"msg_type", "allow_profile_paths"}
LOG_PERIOD_S = 5.0  # at most one log line per kind of problem in this many seconds


def validate_config(config: NodeConfig) -> NodeConfig:
    """Return `config` if the values are usable, else raise ValueError naming the parameter: the
    ranges and choices of the parameter table, then what relates parameters. The runtime Streamer
    checks window, hop and model together when it is built."""
    for f in fields(NodeConfig):
        BY_NAME[f.name].check(getattr(config, f.name))
    audio_type(config.msg_type)
    check_format(config.audio_format(), "parameters")
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
    """An emotion event, the arrival time (time.monotonic) of the message that closed its window,
    the window's end on the audio clock (ns), the audio's frame id and the speaker it is attributed to."""

    event: Any
    arrival: float
    stamp_ns: int
    frame_id: str = ""
    speaker_id: str = ""


@dataclass
class _Stats:
    received: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    last_rejection: str = ""
    format_changes: int = 0
    gaps: int = 0
    longest_gap_s: float = 0.0
    publisher_changes: int = 0
    streams: int = 1
    dropped_s: float = 0.0
    wrong_type_publishers: int = 0
    audio_s: float = 0.0
    windows: int = 0
    model_reloads: int = 0
    model_reload_failures: int = 0
    model_error: str = ""


def load_engine(model_path: str, profile: str, allow_profile_path: bool = False):
    """The runtime Engine for a model (lazy import: the runtime pulls onnxruntime). `profile` is an
    installed profile's name; a file path only with `allow_profile_path`."""
    from physioser.runtime import Engine

    return Engine.from_path(model_path or None, profile=profile or None, allow_profile_path=allow_profile_path)


class RateLimitedLog:
    """Passes a line to `emit` at most once per `period_s` for each key; the lines held back in
    between are counted and the count goes with the next line of that key."""

    def __init__(self, emit: Callable[[str], None] | None, clock: Callable[[], float], period_s: float = LOG_PERIOD_S):
        self._emit = emit
        self._clock = clock
        self.period_s = period_s
        self._last: dict[Any, float] = {}
        self._held: Counter = Counter()

    def __call__(self, key: Any, text: str) -> None:
        if self._emit is None:
            return
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            self._held[key] += 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        self._emit(text + (f" (and {held} more like it in the last {now - last:.0f} s)" if held else ""))


def make_streamer(engine, config: NodeConfig):
    from physioser.runtime import Streamer

    return Streamer(
        engine,
        window_s=config.window_s or None,  # 0: the model's window and hop
        hop_s=config.hop_s or None,
        vad=config.vad,
        vad_threshold_db=config.vad_threshold_db,
        smoothing=config.smoothing,
        adapt=config.adapt,
        adapt_unnamed=config.adapt_unnamed,
        voice_encoder=config.voice_encoder,
    )


class EmotionCore:
    """Decode → resample → bounded queue → Streamer → events, with counters for diagnostics.

    Thread use: `accept`, `set_config` and `set_format` from one thread (the ROS executor),
    `process` from one other thread (the worker); `diagnostics` from any. `log`, if given, receives
    the rate-limited report lines (rejections with their reason, dropped audio, new streams).
    `on_speech`, if given, is called from `process`/`end_stream` with the new state whenever
    `speaking` changes: True once a window holds speech, False once a window holds none or the
    stream ends (a gap, a new publisher, `end_stream`) — always after the events that precede it.
    """

    def __init__(
        self,
        config: NodeConfig,
        engine=None,
        *,
        engine_loader: Callable[[str, str, bool], Any] = load_engine,
        streamer_factory: Callable[[Any, NodeConfig], Any] = make_streamer,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        log: Callable[[str], None] | None = None,
        on_speech: Callable[[bool], None] | None = None,
    ):
        self.config = validate_config(config)
        self.msg = audio_type(config.msg_type)
        self._engine_loader = engine_loader
        self._streamer_factory = streamer_factory
        self._clock = clock
        self._wall_clock_ns = wall_clock_ns
        self.engine = engine if engine is not None else engine_loader(config.model_path, config.profile, config.allow_profile_paths)
        self._model_signature = _file_signature(config.model_path)
        self._settling = None  # a changed model file's signature, waiting to be stable
        self.speaker_id = ""  # who speaks, as the robot says (set_speaker); "" = not told
        self.streamer = self._new_streamer(self.engine, config)
        self._offset_s = 0.0  # stream time consumed by streamers replaced or restarted at run time
        self.format = self.config.audio_format()  # declared (parameters, audio_info), never by one message
        self._channels = self.format.channels  # of the last accepted message
        self._resampler = _Resampler(self.format.sample_rate)
        # (samples at 16 kHz, arrival, the audio-clock stamp of their end in ns, samples skipped
        # before them if they start a new stream, else None)
        self._queue: deque[tuple[np.ndarray, float, int, int | None]] = deque()
        self._queued = 0  # samples in the queue
        self._held_restart: int | None = None  # a restart waiting for the first samples of its stream
        self._in_flight = 0  # samples being pushed through the streamer
        self._queue_lock = threading.Lock()
        self._stream_lock = threading.Lock()
        self._last_arrival: float | None = None
        self._last_end_ns = 0  # audio-clock stamp of the end of the last message accepted
        self._pushed_end_ns = 0  # ... of the last samples pushed through the streamer
        self.frame_id = ""
        self._last_sent: float | None = None  # publisher time of the last message, if known
        self._source: Any = None  # the publisher of the last message, if known
        self._log = RateLimitedLog(log, clock)
        self._on_speech = on_speech
        self.speaking: bool | None = None  # the speech state last reported (None: no window yet)
        self.stats = _Stats()
        self._latencies: deque[float] = deque(maxlen=config.latency_history)
        self._inference_ms: deque[float] = deque(maxlen=config.latency_history)

    # ---- input ------------------------------------------------------------------------------
    def accept(self, msg: Any, arrival: float | None = None, *, source: Any = None, sent: float | None = None,
               received_ns: int | None = None) -> bool:
        """Decode one audio message and queue its samples. Returns False (and counts why) if rejected.

        `arrival`: when it arrived (the clock's time); `source`: an identity of its publisher, if known
        (a change starts a new stream); `sent`: when the publisher sent it, in seconds, if known (gaps
        are measured on it, so a busy executor delivering late does not look like a gap);
        `received_ns`: the ROS clock when it was received, which stamps the audio of messages without
        a header stamp (default: the wall clock now)."""
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
        rate = decoded.format.sample_rate
        new_stream = self._starts_new_stream(source, arrival if sent is None else sent, decoded.samples.size / rate)
        if new_stream or rate != self._resampler.rate:
            self._flush_resampler()
            if rate != self._resampler.rate:
                self.stats.format_changes += 1
            self._resampler = _Resampler(rate)
        self._channels = decoded.format.channels
        self._last_arrival = arrival
        self.stats.accepted += 1
        self.stats.audio_s += decoded.samples.size / rate
        start_ns = header_stamp_ns(msg)
        if start_ns is None:
            end_ns = self._wall_clock_ns() if received_ns is None else int(received_ns)
        else:
            end_ns = start_ns + round(decoded.samples.size * 1e9 / rate)
            self.frame_id = str(msg.header.frame_id)
        self._last_end_ns = end_ns
        self._enqueue(self._resampler(decoded.samples), arrival, end_ns, 0 if new_stream else None)
        return True

    def set_speaker(self, speaker_id: str | None) -> None:
        """The speaker of the audio from now on, as the robot says (a voice or person id); None or ""
        when the robot does not know: then the windows are strict, or with ``adapt_unnamed`` the Streamer
        names voices itself (by the bundle's speaker encoder where it has one, else the model's statistics).
        The Streamer's speaker adaptation is keyed on it; estimates carry it."""
        self.speaker_id = speaker_id or ""
        with self._stream_lock:
            self.streamer.set_speaker(speaker_id or None)

    def _starts_new_stream(self, source: Any, sent: float, duration_s: float) -> bool:
        """A different publisher than the last message's, or a gap (silence on the topic longer than
        `gap_s` between the end of one message's audio and the next: time between sends less the
        new message's duration)."""
        new_source = source is not None and self._source is not None and source != self._source
        gap = 0.0 if self._last_sent is None else sent - self._last_sent - duration_s
        self._last_sent = sent
        if source is not None:
            self._source = source
        if new_source:
            self.stats.publisher_changes += 1
        if gap > self.config.gap_s:
            self.stats.gaps += 1
            self.stats.longest_gap_s = max(self.stats.longest_gap_s, gap)
        if not (new_source or gap > self.config.gap_s):
            return False
        self.stats.streams += 1
        why = "a new publisher" if new_source else f"a gap of {gap:.1f} s"
        self._log("new_stream", f"{self.msg.name}: {why} on the audio topic: starting a new stream")
        return True

    def set_format(self, fmt: AudioFormat) -> None:
        """A format declared on the `audio_info` topic or by parameters (already decoded and checked);
        the resampler follows at the first message in the new rate."""
        self.format = fmt

    def check_publishers(self, types: list[tuple[str, str]]) -> int:
        """Given (publisher node, ROS type) of the publishers on the audio topic (from the ROS graph),
        report those whose type is not the subscribed one: their messages never arrive. Returns their number."""
        wrong = [(node, t) for node, t in types if t.replace("/msg/", "/") != self.msg.name]
        self.stats.wrong_type_publishers = len(wrong)
        for node, t in wrong:
            try:
                hint = f"set msg_type:={audio_type(t).name} and restart, or publish {self.msg.name}"
            except ValueError:
                hint = f"it is not an audio type physioser reads; publish {self.msg.name}"
            self._log(("wrong_type", node, t), f"publisher {node} sends {t} on the audio topic, but this node "
                      f"subscribes to {self.msg.name}: none of its messages arrive ({hint})")
        return len(wrong)

    def reject(self, err: MessageDecodeError) -> None:
        """Count a message that failed before `accept` (e.g. a bad AudioInfo)."""
        self.stats.received += 1
        self._reject(err)

    def _reject(self, err: MessageDecodeError) -> None:
        self.stats.rejected[err.reason] += 1
        self.stats.last_rejection = str(err)
        self._log(("rejected", err.reason), f"message rejected: {err}")

    def _flush_resampler(self) -> None:
        """The input rate changes or a new stream starts: the old resampler's tail belongs before it."""
        tail = self._resampler(np.zeros(0, np.float32), last=True)
        if tail.size:
            self._enqueue(tail, self._last_arrival if self._last_arrival is not None else self._clock(), self._last_end_ns, None)

    def _enqueue(self, samples: np.ndarray, arrival: float, end_ns: int, restart: int | None) -> None:
        """Queue samples (`restart`: they start a new stream); keep at most `max_backlog_s` queued,
        dropping the oldest audio first, even part of one message. What follows dropped audio starts
        a new stream (the Streamer must not join audio from both sides of the hole)."""
        if self._held_restart is not None:  # a new stream whose first message resampled to nothing
            restart, self._held_restart = self._held_restart + (restart or 0), None
        if samples.size == 0:
            self._held_restart = restart
            return
        limit = int(self.config.max_backlog_s * SAMPLE_RATE)
        dropped = 0
        with self._queue_lock:
            self._queue.append((samples, arrival, end_ns, restart))
            self._queued += samples.size
            while self._queued > limit:
                head, head_arrival, head_end_ns, head_restart = self._queue.popleft()
                cut = min(head.size, self._queued - limit)
                self._queued -= cut
                dropped += cut
                skipped = (head_restart or 0) + cut
                if cut < head.size:  # the start is cut: the end, and its stamp, stay
                    self._queue.appendleft((head[cut:], head_arrival, head_end_ns, skipped))
                elif self._queue:
                    nxt, nxt_arrival, nxt_end_ns, nxt_restart = self._queue.popleft()
                    self._queue.appendleft((nxt, nxt_arrival, nxt_end_ns, skipped + (nxt_restart or 0)))
        if dropped:
            self.stats.dropped_s += dropped / SAMPLE_RATE
            self._log("dropped", f"inference is behind: dropped the oldest {dropped / SAMPLE_RATE:.2f} s of audio "
                      f"(max_backlog_s={self.config.max_backlog_s:g}); the rest starts a new stream")

    # ---- processing --------------------------------------------------------------------------
    def process(self) -> Iterator[TimedEvent]:
        """Push the queued audio through the streamer, yielding each event as soon as it exists.

        A window ends inside the samples whose push completed it (or, for a stream's tail, at the end
        of the last samples pushed), so its stamp is their end stamp less the samples that follow the
        window's end."""
        while True:
            with self._queue_lock:
                if not self._queue:
                    return
                samples, arrival, end_ns, restart = self._queue.popleft()
                self._queued -= samples.size
                self._in_flight = samples.size
            try:
                with self._stream_lock:
                    tail = [] if restart is None else self._restart_stream(restart)
                    timed = self._stamped(self.streamer.push(samples), end_ns)
                    voiced = self.streamer.last_window_voiced
                    self._pushed_end_ns = end_ns
            finally:
                with self._queue_lock:
                    self._in_flight = 0
            yield from self._timed(tail, arrival)
            if restart is not None:
                self._report_speech(False)  # the old stream ended
            yield from self._timed(timed, arrival)
            self._report_speech(voiced)

    def _report_speech(self, voiced: bool | None) -> None:
        """Report a change of the speech state (None: no window yet, nothing to report)."""
        if voiced is None or voiced == self.speaking:
            return
        self.speaking = voiced
        if self._on_speech is not None:
            self._on_speech(voiced)

    def _timed(self, timed: list[tuple[Any, float, int]], arrival: float) -> Iterator[TimedEvent]:
        """Events in stream time (shifted by their stream's offset), stamped, counted."""
        for event, offset, stamp_ns in timed:
            if offset:
                event = replace(event, start_s=event.start_s + offset, end_s=event.end_s + offset)
            self.stats.windows += 1
            self._inference_ms.append(float(event.latency_ms))
            yield TimedEvent(event, arrival, stamp_ns, self.frame_id, self.speaker_id or (self.streamer.speaker or ""))

    def end_stream(self) -> Iterator[TimedEvent]:
        """The audio has ended (end of a recording, node deactivated): process what is queued, then
        analyse the utterance under way (its end-of-utterance window) and start a fresh stream."""
        yield from self.process()
        with self._stream_lock:
            timed = self._restart_stream(0)
        yield from self._timed(timed, self._last_arrival if self._last_arrival is not None else self._clock())
        self._report_speech(False)

    def _stamped(self, events: list, end_ns: int) -> list[tuple[Any, float, int]]:
        """(event, stream offset, stamp) for events of the current streamer whose pushed audio ends at `end_ns`."""
        total = self.streamer.total
        return [(e, self._offset_s, end_ns - round((total - int(round(e.end_s * SAMPLE_RATE))) * 1e9 / SAMPLE_RATE))
                for e in events]

    def _restart_stream(self, skipped: int) -> list[tuple[Any, float, int]]:
        """End the current stream (its tail window, if any, is analysed) and start a fresh one;
        stream time goes on, counting `skipped` samples of dropped audio."""
        tail = self._stamped(self.streamer.flush(), self._pushed_end_ns)
        self._offset_s += self.streamer.time_s + skipped / SAMPLE_RATE
        self.streamer.reset()
        return tail

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
            engine = self._engine_loader(new.model_path, new.profile, new.allow_profile_paths)
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
        if config.max_backlog_s * SAMPLE_RATE < streamer.window:
            raise ValueError(f"max_backlog_s {config.max_backlog_s:g} must be at least the window "
                             f"({streamer.window / SAMPLE_RATE:g} s)")
        engine.infer(np.zeros((1, streamer.window), np.float32))
        streamer.set_speaker(self.speaker_id or None)  # a replacement keeps the robot's speaker
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
            engine = self._engine_loader(self.config.model_path, self.config.profile, self.config.allow_profile_paths)
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
            "sample_rate": self._resampler.rate,
            "channels": self._channels,
            "gaps": s.gaps,
            "longest_gap_s": round(s.longest_gap_s, 3),
            "publisher_changes": s.publisher_changes,
            "streams": s.streams,
            "wrong_type_publishers": s.wrong_type_publishers,
            "dropped_audio_s": round(s.dropped_s, 3),
            "backlog_s": round(backlog, 3),
            "audio_received_s": round(s.audio_s, 3),
            "windows_processed": s.windows,
            "speech": self.streamer.in_speech,  # False: no speech now (no emotion is being estimated)
            "unnamed_voices": self.streamer.unnamed_voices,
            "windows_without_speech": self.streamer.unvoiced_windows,
            "latency_ms": _summary(self._latencies),
            "inference_ms": _summary(self._inference_ms),
            "model_path": self.config.model_path,
            "model_reloads": s.model_reloads,
            "model_reload_failures": s.model_reload_failures,
            "model_error": s.model_error,
        }


def header_stamp_ns(msg: Any) -> int | None:
    """A message's header stamp in ns (rclpy or rosbags message); None without a header or when the
    stamp is zero (a driver that does not stamp)."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return ns or None


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
        "end_of_utterance": bool(event.final),
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
