"""Streaming emotion estimates from a live 16 kHz mono signal.

``Streamer.push(chunk)`` accepts chunks of any size. Samples go into a ring buffer of one window;
window *k* covers samples ``[k·hop, k·hop + window)`` of the stream, so the schedule depends only
on sample counts and chunking never changes which windows are analysed (chunks of 1, 160, 320
or 16000 samples give the same events). Each complete window passes a voice-activity gate
(:mod:`physioser.runtime.gate`: silero-vad where installed, else energy with spectral cues): a
window holding at least ``min_speech_s`` of speech frames is voiced. Voiced windows are queued and
inferred in batches of up to ``batch`` (all windows completed by one push are inferred before it
returns). Class probabilities are smoothed with an exponential moving average over consecutive
voiced windows (reset by an unvoiced window), and each voiced window yields one
:class:`EmotionEvent`; a window without speech yields none, and ``last_window_voiced`` False says
"no speech" for it (``in_speech`` says whether the gate's tracker has an utterance under way).

End of utterance: when the gate's tracker sees an utterance end (``min_silence_s`` without speech) or
``flush()`` ends the stream, and no voiced window reached the utterance's last speech sample (nor will
the next scheduled one), one more window ending there is analysed (the utterance and ``min_speech_s`` before it, between the model's
minimum and one window): every utterance, even one shorter than a window, gets an estimate (``final=True``).
Memory is bounded: a ring buffer of one window plus one hop and the offset delay, plus at most
``batch`` queued windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from physioser import SAMPLE_RATE
from physioser.runtime.adaptation import FEATURE_THRESHOLD, STREAM_TAU, SpeakerAdaptation, VoiceIds, output_evidence
from physioser.runtime.engine import Engine, EngineError, check_peak
from physioser.runtime.gate import FRAME, FrameBuffer, SpeechGateError, SpeechTracker, Utterance, make_detector, resolve_gate

MAX_WINDOW_S = 60.0
"""The longest analysis window (as for hardware profiles): the ring buffer holds one window."""


@dataclass
class EmotionEvent:
    """One emotion estimate for the window ``[start_s, end_s)`` of the stream."""

    label: str
    confidence: float
    probs: dict[str, float]
    valence: float
    arousal: float
    start_s: float
    end_s: float
    latency_ms: float = field(compare=False)  # wall time from the window's last sample arriving to this event
    final: bool = False  # the window analysed at the end of an utterance (or of the stream)

    def to_dict(self) -> dict:
        return asdict(self)


class Streamer:
    """Sliding-window streaming over an :class:`Engine` (see module docstring).

    Parameters: ``window_s``/``hop_s`` (default: the model's, from its metadata); ``vad`` ``"auto"`` | ``"silero"`` |
    ``"energy"`` | ``"none"`` (see :data:`physioser.runtime.gate.GATES`); ``vad_threshold_db`` the
    level below which the energy gate (and silero's voicing cue) hear no speech; ``smoothing`` the EMA weight of the past
    (0 = no smoothing); ``batch`` the largest number of windows inferred in one call;
    ``sample_rate`` of the pushed audio (must equal the model's).

    Speaker adaptation (speaker-adaptive models; on by default, ``adapt=False`` turns it off): each
    voiced window is inferred with its speaker's running offset and then adds its evidence (``features``,
    ``speaker_features`` and ``speaker_probs``, all without the offset) to that speaker's state (weight
    hop/window: overlapping windows count once per stretch of speech), shrunk by ``adapt_tau``
    utterance weights (:data:`~physioser.runtime.adaptation.STREAM_TAU`), see :mod:`physioser.runtime.adaptation`.
    ``adapt_reference`` measures the offsets against the model's training speakers nearest to the speaker
    (``engine.speaker_reference``, where the model carries one) as whole-file adaptation does; off by
    default: on three draws of the shipped recipe's held-out speakers it is level with the default
    rule in the stream (ahead on clean speech and in fan noise, behind in babble; docs/adaptation.md). Adapted windows are inferred one at a time, so that each one's offset includes the windows before it. The speaker is the one named by
    :meth:`set_speaker`; while none is named (``None``, the default) windows are inferred strictly,
    unless ``adapt_unnamed``: then the stream names voices itself (:class:`~physioser.runtime.adaptation.VoiceIds`,
    cosine ``voice_threshold``) from ``voice_embedding(samples) -> vector`` of each window where one is
    given, else from the bundle's speaker encoder where it has one and ``voice_encoder`` (``engine.voice_encoder()``,
    threshold from its metadata), else from the model's own statistics (threshold
    :data:`~physioser.runtime.adaptation.FEATURE_THRESHOLD`). Measured on held-out speakers, adapting to
    voices named this way costs UA where a named speaker's adaptation does not (docs/adaptation.md). At most ``max_speakers`` are kept (least
    recently heard evicted); :meth:`reset_adaptation` forgets them; nothing is saved unless
    ``streamer.adaptation.save(path)`` is called.
    """

    def __init__(self, engine: Engine, window_s: float | None = None, hop_s: float | None = None, *, vad: str = "auto",
                 vad_threshold_db: float = -45.0, smoothing: float = 0.5, batch: int = 4, sample_rate: int = SAMPLE_RATE,
                 adapt: bool = True, adapt_tau: float = STREAM_TAU, max_speakers: int = 16, voice_threshold: float | None = None,
                 adapt_unnamed: bool = False, voice_embedding: Callable[[np.ndarray], np.ndarray] | None = None,
                 voice_encoder: bool = True, adapt_reference: bool = False):
        engine.check_sample_rate(sample_rate, "the stream")
        window_s = engine.metadata["window_s"] if window_s is None else window_s
        hop_s = engine.metadata["hop_s"] if hop_s is None else hop_s
        for key, value in (("window_s", window_s), ("hop_s", hop_s), ("smoothing", smoothing), ("vad_threshold_db", vad_threshold_db),
                           ("adapt_tau", adapt_tau)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise EngineError(f"{key} must be a finite number, got {value!r}")
        if not 0 < hop_s <= window_s <= MAX_WINDOW_S:
            raise EngineError(f"need 0 < hop_s <= window_s <= {MAX_WINDOW_S:g} s; got hop_s={hop_s}, window_s={window_s}")
        if adapt_tau < 0:
            raise EngineError(f"adapt_tau must be >= 0, got {adapt_tau}")
        if not 0.0 <= smoothing < 1.0:
            raise EngineError(f"smoothing must be in [0, 1), got {smoothing}")
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise EngineError(f"batch must be an integer >= 1, got {batch!r}")
        self.engine = engine
        self.sample_rate = sample_rate
        self.window = int(round(window_s * sample_rate))
        self.hop = int(round(hop_s * sample_rate))
        if self.hop < 1:
            raise EngineError(f"hop_s={hop_s} is shorter than one sample at {sample_rate} Hz")
        if self.window < engine.min_samples:
            raise EngineError(f"window_s={window_s} is shorter than the model's minimum {engine.min_samples / sample_rate:.2f} s")
        try:
            self.vad = resolve_gate(vad)
        except SpeechGateError as exc:
            raise EngineError(str(exc)) from exc
        if self.vad != "none":
            self._detector = make_detector(self.vad, vad_threshold_db)
            self._tracker = SpeechTracker(self._detector.THRESHOLD)
            self._frames = FrameBuffer()
        self.smoothing = float(smoothing)
        self.batch = int(batch)
        # one window, plus what arrives between an utterance's end and its detection (a hop and the
        # tracker's silence, rounded up to frames)
        self._ring = np.zeros(self.window + self.hop + (self._tracker.min_silence + 2) * FRAME
                              if self.vad != "none" else self.window, dtype=np.float32)
        self._flags = np.zeros(len(self._ring) // FRAME + 1, dtype=bool)  # speech flag per frame (ring)
        self.unvoiced_windows = 0  # scheduled windows the gate found without speech, over all streams
        self.adaptation: SpeakerAdaptation | None = None
        self.voices: VoiceIds | None = None
        if adapt and engine.adaptation_dim:
            settings = engine.metadata["adaptation"]
            self.adaptation = SpeakerAdaptation(engine.adaptation_dim, len(engine.class_names), adapt_tau,
                                                float(settings.get("balance", 0.0)), max_speakers=max_speakers,
                                                reference=engine.speaker_reference if adapt_reference else None)
        self.adapt_unnamed = bool(adapt_unnamed)
        if self.adaptation is not None:
            if self.adapt_unnamed and voice_embedding is None and voice_encoder:
                voice_embedding = engine.voice_encoder()
                if voice_embedding is not None and voice_threshold is None:
                    voice_threshold = voice_embedding.threshold
            self.voices = VoiceIds(FEATURE_THRESHOLD if voice_threshold is None else voice_threshold, max_speakers)
        self.voice_embedding = voice_embedding
        self._speaker: str | None = None  # set_speaker's identity; None: strict, or with adapt_unnamed VoiceIds names the voice
        self._voice: str | None = None  # the voice VoiceIds named last
        self.reset()

    @property
    def unnamed_voices(self) -> str:
        """What a window is inferred with while no speaker is named: ``"strict"`` (no adaptation to
        unnamed voices), ``"model statistics"`` (voices named from the model's own outputs) or the name of
        the speaker encoder that names them (a bundle's: its metadata's, e.g. ``"resemblyzer"``)."""
        if self.voices is None or not self.adapt_unnamed:
            return "strict"
        if self.voice_embedding is None:
            return "model statistics"
        return str(getattr(self.voice_embedding, "name", "speaker encoder"))

    def set_speaker(self, speaker_id: str | None) -> None:
        """The speaker of the audio pushed from now on (e.g. a voice id from the robot's person
        tracker); ``None``: not known (strict windows, or with ``adapt_unnamed`` voices the stream names)."""
        if speaker_id is not None and (not isinstance(speaker_id, str) or not speaker_id):
            raise EngineError(f"speaker_id must be a non-empty string or None, got {speaker_id!r}")
        self._speaker = speaker_id

    @property
    def speaker(self) -> str | None:
        """The speaker whose state the next window uses (the named one, else the last voice heard)."""
        return self._speaker if self._speaker is not None else self._voice

    def reset_adaptation(self, speaker_id: str | None = None) -> None:
        """Forget one speaker's adaptation state, or every speaker's and every voice (``None``)."""
        if self.adaptation is not None:
            self.adaptation.reset(speaker_id)
            if speaker_id is None:
                self.voices.reset()
                self._voice = None

    @classmethod
    def from_profile(cls, engine: Engine, **overrides) -> "Streamer":
        """A streamer with the window, hop, batch and VAD of the engine's hardware profile (window and
        hop: the model's unless the profile sets them)."""
        p = engine.profile
        kwargs = {"window_s": p.window_s, "hop_s": p.hop_s, "batch": p.batch, "vad": p.vad, **overrides}
        return cls(engine, **kwargs)

    def reset(self) -> None:
        """Forget the stream (time restarts at 0)."""
        self._ring[:] = 0.0
        self._flags[:] = False
        if self.vad != "none":
            self._detector.reset()
            self._tracker.reset()
            self._frames.reset()
        self.total = 0  # samples received so far
        self._next_end = self.window  # end sample of the next window
        self._last_end = 0  # end sample of the last analysed window
        self._voiced_end = 0  # end sample of the last voiced window
        self._awaiting: list[Utterance] = []  # ended utterances left to the next scheduled window (see _final_window)
        self._pending: list[tuple[int, int, np.ndarray | None, float, bool]] = []  # (start, end, samples, t_ready, final)
        self._gated = 0  # samples passed to the speech detector
        self._state: np.ndarray | None = None  # smoothed [probabilities..., valence, arousal]
        self.last_window_voiced: bool | None = None
        """Whether the last window scheduled (or analysed at an utterance's end) held speech: False is
        "no speech" (that window gets no event); None before the stream's first window."""

    @property
    def time_s(self) -> float:
        return self.total / self.sample_rate

    @property
    def in_speech(self) -> bool:
        """An utterance is under way (always True without a gate)."""
        return self.vad == "none" or self._tracker.current is not None

    def _window(self, end: int, length: int) -> np.ndarray:
        """The ``length`` samples before stream position ``end`` (within the ring's span) from the ring."""
        idx = (np.arange(end - length, end) % len(self._ring))
        return self._ring[idx]

    def _voiced(self, start: int, end: int) -> bool:
        """At least ``min_speech`` speech frames lie wholly within [start, end)."""
        first, last = -(-start // FRAME), end // FRAME
        frames = np.arange(first, min(last, self._tracker.frames)) % len(self._flags)
        return int(self._flags[frames].sum()) >= self._tracker.min_speech

    def _gate(self, piece_end: int, t_arrival: float) -> None:
        """Run the detector over the frames completed up to ``piece_end``; queue end-of-utterance windows."""
        frames = self._frames(self._window(piece_end, piece_end - self._gated))
        self._gated = piece_end
        if not len(frames):
            return
        first = self._tracker.frames
        flags, ended = self._tracker.update(self._detector(frames))
        self._flags[np.arange(first, first + len(flags)) % len(self._flags)] = flags
        for utt in ended:
            self._final_window(utt, t_arrival, True)

    def _final_window(self, utt, t_ready: float, more: bool) -> None:
        """``more``: the stream goes on (the next scheduled window may still reach the utterance's end)."""
        if self._voiced_end >= utt.end:
            return  # a voiced window reached the end of this utterance
        if more and self._voiced(self._next_end - self.window, utt.end):
            self._awaiting.append(utt)  # the next window will, unless the stream ends first (flush)
            return
        # from a little before the onset (a detector may confirm speech late) to the last speech frame
        length = int(np.clip(utt.end - utt.start + self._tracker.min_speech * FRAME, self.engine.min_samples, self.window))
        length = min(length, utt.end)
        if length < self.engine.min_samples:
            return  # shorter than the model's minimum since the stream began
        self._voiced_end = utt.end
        self.last_window_voiced = True
        self._pending.append((utt.end - length, utt.end, self._window(utt.end, length).copy(), t_ready, True))

    def push(self, chunk: np.ndarray) -> list[EmotionEvent]:
        """Feed samples (float32 mono at ``sample_rate``); returns the events of windows completed."""
        t_arrival = time.perf_counter()
        x = np.asarray(chunk)
        if x.ndim != 1:
            raise EngineError(f"push() takes mono 1-D chunks, got shape {x.shape} (mix channels down first)")
        if x.size == 0:
            return []  # nothing to add (an empty chunk of any dtype); nothing is pending between pushes
        if not np.issubdtype(x.dtype, np.floating):
            raise EngineError(f"push() takes float samples in [-1, 1], got {x.dtype} (convert int16 PCM: x / 32768)")
        with np.errstate(over="ignore"):  # float64 beyond the float32 range becomes Inf, refused just below
            x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise EngineError("chunk contains NaN or Inf (or float64 samples beyond the float32 range)")
        check_peak(x, "chunk samples")
        events: list[EmotionEvent] = []
        pos = 0
        while pos < len(x):
            take = min(len(x) - pos, self._next_end - self.total)
            piece = x[pos : pos + take]
            idx = np.arange(self.total, self.total + take) % len(self._ring)
            self._ring[idx] = piece
            self.total += take
            pos += take
            if self.vad != "none" and (self.total == self._next_end or pos == len(x)):
                self._gate(self.total, t_arrival)
            if self.total == self._next_end:
                self._enqueue(self.total - self.window, self.total, self._window(self.total, self.window), t_arrival)
                self._next_end += self.hop
                if len(self._pending) >= self.batch:
                    events.extend(self._run())
        events.extend(self._run())
        return events

    def flush(self) -> list[EmotionEvent]:
        """End of stream: with a gate, the utterance under way ends and gets its end-of-utterance window
        (if no voiced window reached its end); without one, the tail not covered by a full window is
        analysed (the last ``window`` samples, or the whole stream when shorter but at least the
        model's minimum). Call ``reset()`` before a new stream."""
        if self.vad != "none":
            for utt in [*self._awaiting, *self._tracker.finish()]:
                self._final_window(utt, time.perf_counter(), False)
            self._awaiting = []
        elif self.total > self._last_end and self.total >= self.engine.min_samples:
            length = min(self.window, self.total)
            self._enqueue(self.total - length, self.total, self._window(self.total, length), time.perf_counter(), True)
        return self._run()

    def _enqueue(self, start: int, end: int, samples: np.ndarray, t_ready: float, final: bool = False) -> None:
        self._last_end = end
        self._awaiting = [u for u in self._awaiting if u.end > end]  # this window was the one they waited for
        self.last_window_voiced = self.vad == "none" or self._voiced(start, end)
        if not self.last_window_voiced:
            self.unvoiced_windows += 1
            self._pending.append((start, end, None, t_ready, final))  # unvoiced: resets smoothing, no event
        else:
            self._voiced_end = end
            self._pending.append((start, end, samples.copy(), t_ready, final))

    def _infer_adapted(self, waves: np.ndarray, lens: np.ndarray) -> dict[str, np.ndarray]:
        """One window inferred with its speaker's offset, then its evidence (features, speaker features
        and probabilities without the offset) added to that speaker's running state. With no speaker
        named (``adapt_unnamed``), the voice is named from ``voice_embedding`` of the window's samples
        before it is inferred; without one, from the window's own statistics, which exist only once it
        is inferred, so it is inferred with the offset of the last voice heard. (Inferring such a window
        again with its own voice's offset changed 4-12 of 516 held-out clips per listening condition,
        within 0.008 UA, and took two inferences for every three windows: voices named this way change
        often.)"""
        if self._speaker is None and self.voice_embedding is not None:
            self._voice = self.voices.identify(self.voice_embedding(waves[0, : int(lens[0])]))
        out = self.engine.infer(waves, lens, speaker_offset=self.adaptation.offset(self.speaker)[None])
        if self._speaker is None and self.voice_embedding is None:
            self._voice = self.voices.identify(out["features"][0])
        weight = min(self.hop, int(lens[0])) / self.window
        self.adaptation.update(self.speaker, output_evidence(out)[0], weight)
        return out

    def _run(self) -> list[EmotionEvent]:
        pending, self._pending = self._pending, []
        voiced = [p for p in pending if p[2] is not None]
        probs_by_end: dict[int, np.ndarray] = {}
        va_by_end: dict[int, np.ndarray] = {}
        # Adapted windows run one at a time: each one's offset includes the windows before it, so the
        # events do not depend on how the audio was chunked into pushes.
        adapting = self.adaptation is not None and (self._speaker is not None or self.adapt_unnamed)
        step = 1 if adapting else self.batch
        for i in range(0, len(voiced), step):
            group = voiced[i : i + step]
            longest = max(len(g[2]) for g in group)
            waves = np.zeros((len(group), longest), dtype=np.float32)
            for row, g in enumerate(group):
                waves[row, : len(g[2])] = g[2]
            lens = np.array([len(g[2]) for g in group], dtype=np.int64)
            out = self._infer_adapted(waves, lens) if adapting else self.engine.infer(waves, lens)
            for row, g in enumerate(group):
                probs_by_end[g[1]] = out["probs"][row].astype(np.float64)
                va_by_end[g[1]] = np.array([out["valence"][row], out["arousal"][row]], dtype=np.float64)
        events = []
        names = self.engine.class_names
        for start, end, samples, t_ready, final in pending:
            if samples is None:
                self._state = None
                continue
            x = np.concatenate([probs_by_end[end], va_by_end[end]])
            self._state = x if self._state is None else self.smoothing * self._state + (1 - self.smoothing) * x
            s, (valence, arousal) = self._state[:-2], self._state[-2:]
            k = int(np.argmax(s))
            events.append(EmotionEvent(
                label=names[k], confidence=float(s[k]), probs={n: float(v) for n, v in zip(names, s)},
                valence=float(valence), arousal=float(arousal), start_s=start / self.sample_rate, end_s=end / self.sample_rate,
                latency_ms=(time.perf_counter() - t_ready) * 1e3, final=final,
            ))
        return events
