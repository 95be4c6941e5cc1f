"""Soak test of the ROS message path (EmotionCore: decode, resample, queue, Streamer, Engine) -> eval/bench/soak.json.

``python -m physioser.bench.soak --hours 2`` pushes hours of audio through the ROS node's logic
(:class:`~physioser.ros.core.EmotionCore`, exactly as the live node and ``ros replay`` use it) as
fast as the machine allows. The audio travels as real message bytes: ``std_msgs/Int16MultiArray``
serialised to CDR with ``rosbags`` and deserialised again, in messages of random size (1 sample
to 3 s), some with a ``[frames, 2]`` stereo layout, at declared rates of 8, 16, 44.1 or 48 kHz (an
``audio_info`` change before the segment), from publishers that change now and then and with
gaps on the topic. Before 5 % of the messages a malformed one is sent: CDR bytes cut short, a
String's bytes, a layout that does not match the data, a data offset beyond it, three layout
dimensions, zero channels, no samples. It checks, throughout:

- every malformed message is refused (counted by reason) and leaves the stream untouched;
- no event is lost, duplicated or changed: a "clean run" replays the same valid audio, one
  piece per segment, through a second Streamer on the same Engine with the same resampling and
  the same stream restarts (new publisher or gap: the old stream's tail is analysed, then a
  fresh stream), and the two event sequences must match one to one: same windows (to the
  sample), same labels, probabilities/valence/arousal within ``--tolerance``; window ends
  strictly increase; events + windows the speech gate closed = the windows the schedule defines;
- memory stays flat: resident set size (``/proc/self/status`` VmRSS) and Python allocations
  (``tracemalloc``) sampled every ``--sample-every`` seconds of audio; the slope of RSS against
  audio time is fitted after the first tenth of the run (warm-up).

The audio is generated segment by segment from ``(seed, segment index)``, so nothing of it is
kept: memory cannot grow with the length of the run because of the test itself. Speech comes
from the source-filter synthesiser of ``physioser demo`` and, where ``--clips`` names a folder
of audio files (default: ``../shared/corpora/RAVDESS`` when present), from real recordings.
The queue never overflows here (the soak drains it after every message); dropping audio when
inference falls behind is tested in ``tests/test_ros_core.py``.

The run stops by itself after ``--hours`` of audio or ``--max-wall-hours`` of wall time,
whichever comes first (the JSON says which). ``--model``: an ``.onnx`` graph, a model
directory or ``default`` (the shipped model; its sha256 is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from collections import Counter, deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soxr

import physioser
from physioser.paths import portable
from physioser.ros.core import EmotionCore, NodeConfig
from physioser.ros.messages import AudioFormat, MessageDecodeError, typestore

OUT = Path(__file__).resolve().parents[2] / "eval" / "bench" / "soak.json"
DEFAULT_CLIPS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "RAVDESS"
SR = physioser.SAMPLE_RATE
MSG = "std_msgs/Int16MultiArray"
ROS_MSG = "std_msgs/msg/Int16MultiArray"
RATES = (16000, 16000, 16000, 8000, 44100, 48000)  # declared input rate of a segment, drawn uniformly


# ----------------------------------------------------------------------------------- messages

class Wire:
    """Int16MultiArray messages as CDR bytes (rosbags), and back."""

    def __init__(self):
        self.store = typestore("std_msgs")
        self.T = self.store.types

    def message(self, data: np.ndarray, dims: list[tuple[str, int, int]] = (), offset: int = 0):
        T = self.T
        layout = T["std_msgs/msg/MultiArrayLayout"](
            dim=[T["std_msgs/msg/MultiArrayDimension"](label=a, size=b, stride=c) for a, b, c in dims], data_offset=offset)
        return T[ROS_MSG](layout=layout, data=np.ascontiguousarray(data, dtype=np.int16))

    def encode(self, pcm: np.ndarray, channels: int = 1) -> bytes:
        """Interleaved int16 samples; with 2 channels a [frames, 2] layout."""
        frames = len(pcm) // channels
        dims = [("frames", frames, frames * channels), ("channels", channels, channels)] if channels > 1 else []
        return bytes(self.store.serialize_cdr(self.message(pcm, dims), ROS_MSG))

    def decode(self, raw: bytes):
        return self.store.deserialize_cdr(raw, ROS_MSG)


def _pcm(r: np.random.Generator, n: int) -> np.ndarray:
    return (r.standard_normal(n) * 2000).astype(np.int16)


# Malformed messages (bytes on the wire) and the rejection reason each must get.
MALFORMED: dict[str, tuple[str, Callable[[Wire, np.random.Generator], bytes]]] = {
    "cut_cdr": ("corrupt_cdr", lambda w, r: (b := w.encode(_pcm(r, 400)))[: int(r.integers(0, len(b)))]),
    "string_bytes": ("corrupt_cdr", lambda w, r: bytes(w.store.serialize_cdr(w.T["std_msgs/msg/String"](data="hello"), "std_msgs/msg/String"))),
    "layout_mismatch": ("bad_layout", lambda w, r: bytes(w.store.serialize_cdr(w.message(_pcm(r, 300), [("frames", 200, 400), ("channels", 2, 2)]), ROS_MSG))),
    "offset_beyond_data": ("bad_layout", lambda w, r: bytes(w.store.serialize_cdr(w.message(_pcm(r, 300), offset=301), ROS_MSG))),
    "three_dims": ("bad_layout", lambda w, r: bytes(w.store.serialize_cdr(w.message(_pcm(r, 8), [("a", 2, 8), ("b", 2, 4), ("c", 2, 2)]), ROS_MSG))),
    "zero_channels": ("bad_channels", lambda w, r: bytes(w.store.serialize_cdr(w.message(_pcm(r, 0), [("frames", 5, 0), ("channels", 0, 0)]), ROS_MSG))),
    "empty": ("empty", lambda w, r: w.encode(np.zeros(0, np.int16))),
}


def _clip_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac"))


class Segments:
    """Valid audio, segment by segment, reproducible from ``(seed, index)``."""

    def __init__(self, seed: int, clips: list[Path], max_clips: int = 48):
        from physioser.audio import load_audio

        self.seed = seed
        rng = np.random.default_rng(seed)
        chosen = [clips[i] for i in sorted(rng.choice(len(clips), size=min(max_clips, len(clips)), replace=False))] if clips else []
        self.clips = [load_audio(p) for p in chosen]
        self.clip_names = [str(p) for p in chosen]
        kinds = ["synth", "silence", "quiet_noise", "loud_noise", "clipped_synth"] + (["clip", "clip", "clipped_clip"] if self.clips else [])
        weights = {"synth": 3, "silence": 1, "quiet_noise": 1, "loud_noise": 1, "clipped_synth": 0.5, "clip": 2, "clipped_clip": 0.5}
        self.kinds = kinds
        p = np.array([weights[k] for k in kinds], dtype=float)
        self.p = p / p.sum()

    def __call__(self, index: int) -> tuple[str, np.ndarray]:
        from physioser.synthesis import synth_utterance

        r = np.random.default_rng([self.seed, index])
        kind = str(r.choice(self.kinds, p=self.p))
        if kind in ("synth", "clipped_synth"):
            x = synth_utterance(float(r.uniform(1.0, 8.0)), SR, seed=int(r.integers(1 << 30))) * float(r.uniform(0.2, 3.0))
        elif kind in ("clip", "clipped_clip"):
            x = self.clips[int(r.integers(len(self.clips)))] * float(r.uniform(0.3, 2.0))
        elif kind == "silence":
            x = np.zeros(int(r.uniform(0.1, 6.0) * SR), np.float32)
        elif kind == "quiet_noise":
            x = (10 ** (-70 / 20) * r.standard_normal(int(r.uniform(0.1, 6.0) * SR))).astype(np.float32)
        else:
            x = (10 ** (-20 / 20) * r.standard_normal(int(r.uniform(0.5, 4.0) * SR))).astype(np.float32)
        if kind.startswith("clipped"):
            x = np.clip(x * 4.0, -1.0, 1.0)
        return kind, np.ascontiguousarray(x, dtype=np.float32)


def chunks(x: np.ndarray, r: np.random.Generator, max_chunk: int) -> Iterator[np.ndarray]:
    """``x`` in chunks of log-uniform random size (1 .. max_chunk samples), with empty chunks now and then."""
    pos = 0
    while pos < len(x):
        if r.random() < 0.02:
            yield x[pos:pos]
        size = int(np.exp(r.uniform(0.0, np.log(max_chunk))))
        yield x[pos : pos + size]
        pos += size


# ----------------------------------------------------------------------------------- memory

def rss_mb() -> float:
    """Resident set size of this process (Linux /proc; ru_maxrss elsewhere, which is the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _slope_per_hour(t_s: list[float], y: list[float]) -> float:
    if len(t_s) < 3:
        return 0.0
    t = np.asarray(t_s) / 3600.0
    return float(np.polyfit(t, np.asarray(y), 1)[0])


# ----------------------------------------------------------------------------------- comparison

def _same(a, b, tol: float) -> tuple[bool, float, str]:
    """Compare a soak event with its clean-run twin: (equal?, max abs diff of probs/VA, why not)."""
    if (round(a.start_s * SR), round(a.end_s * SR)) != (round(b.start_s * SR), round(b.end_s * SR)):
        return False, float("inf"), f"window {a.start_s:.3f}-{a.end_s:.3f} s vs clean {b.start_s:.3f}-{b.end_s:.3f} s"
    diff = max(max(abs(a.probs[k] - b.probs[k]) for k in a.probs), abs(a.valence - b.valence), abs(a.arousal - b.arousal))
    if diff > tol:
        return False, diff, f"window ending {a.end_s:.3f} s: values differ by {diff:.2e} (> {tol:g})"
    if a.label != b.label:
        top = sorted(b.probs.values())[-2:]
        if top[1] - top[0] > 2 * tol:  # not a tie within rounding
            return False, diff, f"window ending {a.end_s:.3f} s: label {a.label} vs clean {b.label}"
    return True, diff, ""


class CleanRun:
    """The reference: the same valid audio, one piece per segment, through the same resampling and
    stream restarts into a second Streamer (mirrors EmotionCore's rules; see the module docstring)."""

    def __init__(self, streamer, window: int, min_samples: int):
        self.streamer = streamer
        self.window, self.min_samples = window, min_samples
        self.rate = SR
        self.resampler = None
        self.offset_s = 0.0
        self.windows = 0  # windows the schedule defines for the streams ended so far
        self.streams = 1

    def _push(self, x: np.ndarray) -> list:
        return [self._shift(e) for e in self.streamer.push(x)] if x.size else []

    def _shift(self, e):
        return replace(e, start_s=e.start_s + self.offset_s, end_s=e.end_s + self.offset_s) if self.offset_s else e

    def segment(self, samples: np.ndarray, rate: int, new_stream: bool) -> list:
        events = []
        if new_stream or rate != self.rate:
            if self.resampler is not None:
                events += self._push(self.resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self.rate = rate
            self.resampler = None if rate == SR else soxr.ResampleStream(rate, SR, 1, dtype="float32")
        if new_stream:
            events += [self._shift(e) for e in self.streamer.flush()]
            self.windows += self.schedule(flushed=True)
            self.offset_s += self.streamer.time_s
            self.streamer.reset()
            self.streams += 1
        return events + self._push(samples if self.resampler is None else self.resampler.resample_chunk(samples))

    def schedule(self, flushed: bool) -> int:
        """Windows of the current stream: the hop grid, plus the tail window an ungated flush analyses
        (a gated one analyses end-of-utterance windows, counted apart)."""
        s = self.streamer
        grid = (s.total - s.window) // s.hop + 1 if s.total >= s.window else 0
        last = s.window + (grid - 1) * s.hop if grid else 0
        return grid + int(flushed and s.vad == "none" and s.total > last and s.total >= self.min_samples)


def run_soak(
    engine,
    *,
    audio_s: float,
    seed: int = 0,
    max_wall_s: float | None = None,
    clips: list[Path] | None = None,
    max_chunk_s: float = 3.0,
    malformed_rate: float = 0.05,
    stereo_rate: float = 0.1,
    new_publisher_rate: float = 0.05,
    gap_rate: float = 0.03,
    tolerance: float = 1e-5,
    sample_every_s: float = 60.0,
    config: NodeConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the soak (see module docstring) and return its figures; ``result["passed"]`` sums it up."""
    from tqdm import tqdm

    from physioser.ros.core import make_streamer

    # the energy gate by default: the synthesised vowels are speech to it, not to silero-vad
    config = replace(config or NodeConfig(vad="energy"), msg_type=MSG)
    core = EmotionCore(config, engine)
    clean = CleanRun(make_streamer(engine, config), core.streamer.window, engine.min_samples)
    wire = Wire()
    segments = Segments(seed, clips or [])
    r = np.random.default_rng([seed, 1 << 20])

    pending_soak: deque = deque()
    pending_clean: deque = deque()
    failures: list[str] = []
    stats: Counter = Counter()
    malformed: Counter = Counter()
    kinds: Counter = Counter()
    rates: Counter = Counter()
    # event latencies in a fixed histogram (0.01 ms .. 100 s, 1 % bins): constant memory however long the run
    lat_edges = np.geomspace(1e-2, 1e5, 1621)
    lat_counts = np.zeros(len(lat_edges) + 1, dtype=np.int64)
    lat_max = 0.0
    max_diff = 0.0
    last_end = -1
    label_ties = 0

    def fail(text: str) -> None:
        if len(failures) < 20:
            failures.append(text)

    def compare() -> None:
        nonlocal max_diff, last_end, label_ties
        while pending_soak and pending_clean:
            a, b = pending_soak.popleft(), pending_clean.popleft()
            ok, diff, why = _same(a, b, tolerance)
            if diff != float("inf"):
                max_diff = max(max_diff, diff)
            if not ok:
                stats["mismatched_events"] += 1
                fail(why)
            elif a.label != b.label:
                label_ties += 1
            end = round(a.end_s * SR)
            if end <= last_end:
                stats["duplicated_or_reordered"] += 1
                fail(f"window ending {a.end_s:.3f} s repeated or out of order")
            last_end = end
            stats["events_compared"] += 1
            stats["end_of_utterance"] += a.final  # analysed on top of the schedule

    def drain() -> None:
        nonlocal lat_max
        events = [t.event for t in core.process()]
        if events:
            lat = np.fromiter((e.latency_ms for e in events), dtype=np.float64, count=len(events))
            np.add.at(lat_counts, np.searchsorted(lat_edges, lat), 1)
            lat_max = max(lat_max, float(lat.max()))
        pending_soak.extend(events)

    # warm-up: the first segment imports the synthesiser (scipy.signal); the baseline is taken after it
    from physioser.synthesis import synth_utterance

    synth_utterance(0.5)
    tracemalloc.start()
    t0 = time.perf_counter()
    memory: list[dict[str, float]] = []
    sent_s = 0.0  # the publishers' clock: advances with the audio sent, jumps at gaps
    source = 0
    rate = SR

    def sample() -> None:
        cur, peak = tracemalloc.get_traced_memory()
        memory.append({"audio_s": round(stats["audio_samples"] / SR, 1), "wall_s": round(time.perf_counter() - t0, 1),
                       "rss_mb": round(rss_mb(), 2), "tracemalloc_mb": round(cur / 2**20, 3),
                       "tracemalloc_peak_mb": round(peak / 2**20, 3)})

    sample()
    next_sample = sample_every_s
    stopped = "audio"
    bar = tqdm(total=round(audio_s), unit="audio s", desc="soak", disable=not progress, mininterval=2.0)
    index = 0
    while stats["audio_samples"] < audio_s * SR:
        if max_wall_s is not None and time.perf_counter() - t0 > max_wall_s:
            stopped = "wall_time"
            break
        kind, x = segments(index)
        index += 1
        kinds[kind] += 1
        new_stream = False
        if index > 1 and r.random() < new_publisher_rate:
            source += 1
            stats["new_publishers"] += 1
            new_stream = True
        if index > 1 and r.random() < gap_rate:
            sent_s += config.gap_s + float(r.uniform(0.5, 5.0))
            stats["gaps"] += 1
            new_stream = True
        new_rate = int(r.choice(RATES))
        if new_rate != rate:  # as an audio_info message would declare it
            rate = new_rate
            core.set_format(AudioFormat(rate, 1, "S16LE"))
        rates[rate] += 1
        channels = 2 if r.random() < stereo_rate else 1
        stats["stereo_segments"] += channels == 2
        sent = x if rate == SR else soxr.resample(x, SR, rate).astype(np.float32)
        pcm = np.clip(np.round(sent.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
        for piece in chunks(pcm, r, max(2, int(max_chunk_s * rate))):
            if r.random() < malformed_rate:
                name = str(r.choice(sorted(MALFORMED)))
                reason, build = MALFORMED[name]
                before = dict(core.stats.rejected)
                if _deliver(core, wire, build(wire, r), sent_s, source):
                    stats["malformed_accepted"] += 1
                    fail(f"malformed message {name} was accepted")
                elif core.stats.rejected[reason] != before.get(reason, 0) + 1:
                    stats["malformed_wrong_reason"] += 1
                    fail(f"malformed message {name}: expected reason {reason}, counted {dict(core.stats.rejected)}")
                malformed[name] += 1
            raw = wire.encode(np.repeat(piece, channels) if channels > 1 else piece, channels)
            sent_s += len(piece) / rate
            stats["messages"] += 1
            stats["empty_messages"] += piece.size == 0
            accepted = _deliver(core, wire, raw, sent_s, source)
            if accepted != (piece.size > 0):
                fail(f"a valid message of {piece.size} samples was {'accepted' if accepted else 'rejected'}: {core.stats.last_rejection}")
            drain()
        pending_clean.extend(clean.segment(pcm.astype(np.float32) / np.float32(32768.0), rate, new_stream))
        stats["audio_samples"] += len(x)
        compare()
        bar.update(round(stats["audio_samples"] / SR) - bar.n)
        if stats["audio_samples"] / SR >= next_sample:
            sample()
            next_sample += sample_every_s
    compare()
    bar.close()
    sample()
    wall = time.perf_counter() - t0
    tracemalloc.stop()

    if pending_clean or pending_soak:  # events one run produced and the other did not
        failures.append(f"{len(pending_clean)} clean-run events missing from the soak run, {len(pending_soak)} extra")
    diag = core.diagnostics()
    if diag["streams"] != clean.streams:
        failures.append(f"the core started {diag['streams']} streams, the clean run {clean.streams}")
    # independent count: the windows the schedule defines, each either an event or gated out as unvoiced
    expected_windows = clean.windows + clean.schedule(flushed=False)
    produced = stats["events_compared"] + len(pending_soak) - stats["end_of_utterance"] - sum(e.final for e in pending_soak)
    unvoiced = core.streamer.unvoiced_windows
    if produced + unvoiced != expected_windows:
        failures.append(f"{expected_windows} windows in the schedule but {produced} events + {unvoiced} unvoiced windows")
    if diag["messages_rejected"] != sum(malformed.values()) + stats["empty_messages"]:
        failures.append(f"{diag['messages_rejected']} messages rejected, {sum(malformed.values())} malformed + "
                        f"{stats['empty_messages']} empty sent")
    if diag["dropped_audio_s"]:
        failures.append(f"{diag['dropped_audio_s']} s of audio dropped (the soak drains the queue after every message)")
    warm = [m for m in memory if m["audio_s"] >= 0.1 * memory[-1]["audio_s"]] or memory
    rss = [m["rss_mb"] for m in memory]
    py = [m["tracemalloc_mb"] for m in memory]
    mem = {
        "samples": len(memory),
        "rss_mb_start": rss[0],
        "rss_mb_after_warmup": warm[0]["rss_mb"],
        "rss_mb_end": rss[-1],
        "rss_mb_max": max(rss),
        "rss_slope_mb_per_audio_hour_after_warmup": round(_slope_per_hour([m["audio_s"] for m in warm], [m["rss_mb"] for m in warm]), 3),
        "tracemalloc_mb_start": py[0],
        "tracemalloc_mb_after_warmup": warm[0]["tracemalloc_mb"],
        "tracemalloc_mb_end": py[-1],
        "tracemalloc_mb_max": max(py),
        "tracemalloc_peak_mb": max(m["tracemalloc_peak_mb"] for m in memory),
        "series": memory,
    }
    growth = mem["rss_mb_end"] - mem["rss_mb_after_warmup"]
    py_growth = mem["tracemalloc_mb_end"] - mem["tracemalloc_mb_after_warmup"]
    flat = growth < 16.0 and py_growth < 1.0
    if not flat:
        failures.append(f"memory grew: RSS +{growth:.1f} MB after warm-up, Python allocations +{py_growth:.2f} MB")

    def lat_percentile(q: float) -> float:
        total = int(lat_counts.sum())
        if not total:
            return 0.0
        k = int(np.searchsorted(np.cumsum(lat_counts), q / 100.0 * total))
        return float(lat_edges[min(k, len(lat_edges) - 1)])  # upper edge of the bin: within 1 %

    result = {
        "stopped_by": stopped,
        "audio_s": round(stats["audio_samples"] / SR, 1),
        "wall_s": round(wall, 1),
        "audio_per_wall": round(stats["audio_samples"] / SR / wall, 1) if wall else None,
        "segments": index,
        "segment_kinds": dict(sorted(kinds.items())),
        "segment_rates_hz": {str(k): v for k, v in sorted(rates.items())},
        "stereo_segments": stats["stereo_segments"],
        "new_publishers": stats["new_publishers"],
        "gaps": stats["gaps"],
        "messages": stats["messages"],
        "empty_messages": stats["empty_messages"],
        "malformed_messages": dict(sorted(malformed.items())),
        "malformed_total": sum(malformed.values()),
        "malformed_accepted": stats["malformed_accepted"],
        "malformed_wrong_reason": stats["malformed_wrong_reason"],
        "node_diagnostics": {k: v for k, v in diag.items() if k not in ("latency_ms", "model_path")},
        "events": stats["events_compared"],
        "events_end_of_utterance": stats["end_of_utterance"],
        "windows_in_schedule": expected_windows,
        "windows_unvoiced": unvoiced,
        "events_clean_run_unmatched": len(pending_clean),
        "events_soak_unmatched": len(pending_soak),
        "events_mismatched": stats["mismatched_events"],
        "events_duplicated_or_reordered": stats["duplicated_or_reordered"],
        "label_ties_within_tolerance": label_ties,
        "max_abs_diff_vs_clean": max_diff,
        "tolerance": tolerance,
        "event_latency_ms": {"p50": round(lat_percentile(50), 3), "p99": round(lat_percentile(99), 3), "max": round(lat_max, 3),
                             "note": "inference latency of each event (window ready -> event); p50/p99 within 1 % (histogram)"},
        "node_config": {k: v for k, v in vars(config).items() if k != "model_path"},
        "memory": mem,
        "memory_flat": flat,
        "clips": segments.clip_names,
        "failures": failures,
    }
    result["passed"] = not failures
    return result


def _deliver(core: EmotionCore, wire: Wire, raw: bytes, sent_s: float, source: int) -> bool:
    """Deserialise CDR bytes as the node's subscription would and hand the message to the core."""
    try:
        msg = wire.decode(raw)
    except Exception as err:  # noqa: BLE001 - corrupt bytes are counted like a bad message, as `ros replay` does
        core.reject(MessageDecodeError(MSG, "corrupt_cdr", f"cannot deserialise a message: {type(err).__name__}"))
        return False
    return core.accept(msg, sent_s, source=source, sent=sent_s)


# ----------------------------------------------------------------------------------- command

def _model(model: str, threads: int) -> tuple[Any, dict[str, Any]]:
    """The Engine (1 onnxruntime thread by default) and what identifies the model: sha256 of its files."""
    from physioser.export import open_engine
    from physioser.paths import default_model_dir
    from physioser.runtime import load_profile
    from physioser.runtime.integrity import sha256_file

    profile = replace(load_profile(None), intra_op_threads=threads, inter_op_threads=1)
    engine = open_engine(None if model == "default" else model, profile)  # builds the default bundle if needed
    source = Path(engine.source)
    graphs = sorted(source.glob("*.onnx")) if source.is_dir() else [source]
    info: dict[str, Any] = {"model": model, "graph_sha256": {g.name: sha256_file(g) for g in graphs}}
    folder = default_model_dir() if model == "default" else Path(model)
    for name in ("model.safetensors", "config.yaml"):
        if folder.is_dir() and (folder / name).is_file():
            info[f"{name}_sha256"] = sha256_file(folder / name)
    return engine, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m physioser.bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=2.0, help="hours of audio to push (default 2)")
    ap.add_argument("--max-wall-hours", type=float, default=3.0, help="stop after this much wall time anyway")
    ap.add_argument("--model", default="default", help=".onnx, model directory or 'default'")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clips", default=str(DEFAULT_CLIPS), help="folder of real recordings mixed in ('' for none)")
    ap.add_argument("--sample-every", type=float, default=60.0, help="memory sample period, seconds of audio")
    ap.add_argument("--tolerance", type=float, default=1e-5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    engine, model_info = _model(args.model, args.threads)
    clips = _clip_files(Path(args.clips)) if args.clips else []
    result = run_soak(engine, audio_s=args.hours * 3600.0, seed=args.seed, max_wall_s=args.max_wall_hours * 3600.0,
                      clips=clips, tolerance=args.tolerance, sample_every_s=args.sample_every)
    report = {
        "command": "python -m physioser.bench.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "model": {**model_info, "source": portable(engine.source), "backend": engine.backend, "providers": engine.providers,
                  "backbone": engine.metadata.get("backbone"), "class_names": engine.class_names, "threads": args.threads},
        **result,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    m = result["memory"]
    print(f"soak {'PASSED' if result['passed'] else 'FAILED'}: {result['audio_s'] / 3600:.2f} h of audio in {result['wall_s']:.0f} s; "
          f"{result['messages']} messages, {result['malformed_total']} malformed; {result['events']} events matched the clean "
          f"run (max diff {result['max_abs_diff_vs_clean']:.1e}); RSS {m['rss_mb_after_warmup']:.1f} -> {m['rss_mb_end']:.1f} MB "
          f"(max {m['rss_mb_max']:.1f}); tracemalloc {m['tracemalloc_mb_after_warmup']:.2f} -> {m['tracemalloc_mb_end']:.2f} MB -> {out}")
    for failure in result["failures"]:
        print("  " + failure)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
