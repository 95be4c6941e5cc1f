"""Streaming emotion estimates from a live 16 kHz mono signal.

``Streamer.push(chunk)`` accepts chunks of any size. Samples go into a ring buffer of one window;
window *k* covers samples ``[k·hop, k·hop + window)`` of the stream, so the schedule depends only
on sample counts and chunking never changes which windows are analysed (chunks of 1, 160, 320
or 16000 samples give the same events). Each complete window passes a voice-activity gate
(energy by default, silero-vad optional); voiced windows are queued and inferred in batches of up
to ``batch`` (all windows completed by one push are inferred before it returns). Class
probabilities are smoothed with an exponential moving average over consecutive voiced windows
(reset by an unvoiced window), and each voiced window yields one :class:`EmotionEvent`.
Memory is bounded: one window of ring buffer plus at most ``batch`` queued windows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from physioser import SAMPLE_RATE
from physioser.runtime.engine import Engine, EngineError, check_peak

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

    def to_dict(self) -> dict:
        return asdict(self)


class EnergyGate:
    """Voiced if at least ``min_voiced`` of the window's 20 ms frames exceed ``threshold_db`` dBFS (RMS)."""

    def __init__(self, sample_rate: int, threshold_db: float = -45.0, min_voiced: float = 0.2):
        self.frame = sample_rate // 50
        self.threshold = 10.0 ** (threshold_db / 20.0)
        self.min_voiced = min_voiced

    def __call__(self, window: np.ndarray) -> bool:
        n = len(window) // self.frame
        if n == 0:
            return False
        frames = window[: n * self.frame].reshape(n, self.frame).astype(np.float64)
        rms = np.sqrt((frames**2).mean(axis=1))
        return bool((rms > self.threshold).mean() >= self.min_voiced)


class SileroGate:
    """Voiced if silero-vad finds at least ``min_speech_s`` of speech in the window (optional `vad` extra)."""

    def __init__(self, sample_rate: int, threshold: float = 0.5, min_speech_s: float = 0.25):
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad
        except ImportError as exc:
            raise EngineError("vad='silero' needs the silero-vad package (pip install 'physioser[vad]')") from exc
        self._model = load_silero_vad(onnx=True)
        self._timestamps = get_speech_timestamps
        self.sample_rate, self.threshold = sample_rate, threshold
        self.min_samples = int(min_speech_s * sample_rate)

    def __call__(self, window: np.ndarray) -> bool:
        import torch

        self._model.reset_states()
        spans = self._timestamps(torch.from_numpy(np.ascontiguousarray(window)), self._model,
                                 sampling_rate=self.sample_rate, threshold=self.threshold)
        return sum(s["end"] - s["start"] for s in spans) >= self.min_samples


class Streamer:
    """Sliding-window streaming over an :class:`Engine` (see module docstring).

    Parameters: ``window_s``/``hop_s`` (default: the model's, from its metadata); ``vad`` ``"energy"`` | ``"silero"`` |
    ``"none"``; ``vad_threshold_db`` for the energy gate; ``smoothing`` the EMA weight of the past
    (0 = no smoothing); ``batch`` the largest number of windows inferred in one call;
    ``sample_rate`` of the pushed audio (must equal the model's).
    """

    def __init__(self, engine: Engine, window_s: float | None = None, hop_s: float | None = None, *, vad: str = "energy",
                 vad_threshold_db: float = -45.0, smoothing: float = 0.5, batch: int = 4, sample_rate: int = SAMPLE_RATE):
        engine.check_sample_rate(sample_rate, "the stream")
        window_s = engine.metadata["window_s"] if window_s is None else window_s
        hop_s = engine.metadata["hop_s"] if hop_s is None else hop_s
        for key, value in (("window_s", window_s), ("hop_s", hop_s), ("smoothing", smoothing), ("vad_threshold_db", vad_threshold_db)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise EngineError(f"{key} must be a finite number, got {value!r}")
        if not 0 < hop_s <= window_s <= MAX_WINDOW_S:
            raise EngineError(f"need 0 < hop_s <= window_s <= {MAX_WINDOW_S:g} s; got hop_s={hop_s}, window_s={window_s}")
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
        if vad == "energy":
            self.gate = EnergyGate(sample_rate, vad_threshold_db)
        elif vad == "silero":
            self.gate = SileroGate(sample_rate)
        elif vad == "none":
            self.gate = None
        else:
            raise EngineError(f"vad must be 'energy', 'silero' or 'none', got {vad!r}")
        self.smoothing = float(smoothing)
        self.batch = int(batch)
        self._ring = np.zeros(self.window, dtype=np.float32)
        self.reset()

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
        self.total = 0  # samples received so far
        self._next_end = self.window  # end sample of the next window
        self._last_end = 0  # end sample of the last analysed window
        self._pending: list[tuple[int, int, np.ndarray, float]] = []  # (start, end, samples, t_ready)
        self._state: np.ndarray | None = None  # smoothed [probabilities..., valence, arousal]

    @property
    def time_s(self) -> float:
        return self.total / self.sample_rate

    def _window(self, end: int, length: int) -> np.ndarray:
        """The last ``length`` samples up to stream position ``end`` (== self.total) from the ring."""
        idx = (np.arange(end - length, end) % self.window)
        return self._ring[idx]

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
            idx = np.arange(self.total, self.total + take) % self.window
            self._ring[idx] = piece
            self.total += take
            pos += take
            if self.total == self._next_end:
                self._enqueue(self.total - self.window, self.total, self._window(self.total, self.window), t_arrival)
                self._next_end += self.hop
                if len(self._pending) >= self.batch:
                    events.extend(self._run())
        events.extend(self._run())
        return events

    def flush(self) -> list[EmotionEvent]:
        """End of stream: analyse the tail not covered by a full window (the last ``window`` samples,
        or the whole stream when it is shorter than a window but at least the model's minimum)."""
        if self.total > self._last_end and self.total >= self.engine.min_samples:
            length = min(self.window, self.total)
            self._enqueue(self.total - length, self.total, self._window(self.total, length), time.perf_counter())
        return self._run()

    def _enqueue(self, start: int, end: int, samples: np.ndarray, t_ready: float) -> None:
        self._last_end = end
        if self.gate is not None and not self.gate(samples):
            self._pending.append((start, end, None, t_ready))  # unvoiced: resets smoothing, no event
        else:
            self._pending.append((start, end, samples.copy(), t_ready))

    def _run(self) -> list[EmotionEvent]:
        pending, self._pending = self._pending, []
        voiced = [p for p in pending if p[2] is not None]
        probs_by_end: dict[int, np.ndarray] = {}
        va_by_end: dict[int, np.ndarray] = {}
        for i in range(0, len(voiced), self.batch):
            group = voiced[i : i + self.batch]
            longest = max(len(g[2]) for g in group)
            waves = np.zeros((len(group), longest), dtype=np.float32)
            for row, g in enumerate(group):
                waves[row, : len(g[2])] = g[2]
            lens = np.array([len(g[2]) for g in group], dtype=np.int64)
            out = self.engine.infer(waves, lens)
            for row, g in enumerate(group):
                probs_by_end[g[1]] = out["probs"][row].astype(np.float64)
                va_by_end[g[1]] = np.array([out["valence"][row], out["arousal"][row]], dtype=np.float64)
        events = []
        names = self.engine.class_names
        for start, end, samples, t_ready in pending:
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
                latency_ms=(time.perf_counter() - t_ready) * 1e3,
            ))
        return events
