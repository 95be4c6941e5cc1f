"""Soak test of the streaming path (Streamer + Engine) -> eval/bench/soak.json.

``python -m physioser.bench.soak --hours 2`` pushes hours of audio through a
:class:`~physioser.runtime.Streamer` as fast as the machine allows, in chunks of random size
(1 sample to 3 s, empty chunks too), with silences, near-silent noise, loud noise, clipped speech,
wall-clock pauses ("gaps") and malformed chunks (NaN, Inf, int16, stereo, float64 beyond the
float32 range, complex, strings, 0-d, None) mixed in. It checks, throughout:

- every malformed chunk is refused with an ``EngineError`` and leaves the stream untouched
  (stream position unchanged, so the window schedule of the valid audio does not shift);
- no event is lost or duplicated: a second Streamer on the same Engine is fed the same valid
  audio in one chunk per segment (the "clean run"), and the two event sequences must match one
  to one: same windows (start/end to the sample), same labels, probabilities/valence/arousal
  within ``--tolerance`` (windows batched differently differ only by float rounding), and the
  window ends advance on the hop grid without repeats;
- memory stays flat: resident set size (``/proc/self/status`` VmRSS) and Python allocations
  (``tracemalloc``) sampled every ``--sample-every`` seconds of audio; the slope of RSS against
  audio time is fitted after the first tenth of the run (warm-up).

The audio is generated segment by segment from ``(seed, segment index)``, so nothing of it is
kept: memory cannot grow with the length of the run because of the test itself. Speech comes
from the source-filter synthesiser of ``physioser demo`` and, where ``--clips`` names a folder
of audio files (default: ``../shared/corpora/RAVDESS`` when present), from real recordings.

The run stops by itself after ``--hours`` of audio or ``--max-wall-hours`` of wall time,
whichever comes first (the JSON says which). ``--model``: an ``.onnx`` graph, a model
directory, ``default`` (the shipped model) or ``random`` (the default PhysioSER architecture
with random weights: the real compute and memory path when no trained model exists yet).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import physioser
from physioser.runtime import Engine, EngineError, Streamer, load_profile

OUT = Path(__file__).resolve().parents[2] / "eval" / "bench" / "soak.json"
DEFAULT_CLIPS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "RAVDESS"
SR = physioser.SAMPLE_RATE


# ----------------------------------------------------------------------------------- the stream

MALFORMED: dict[str, Callable[[np.random.Generator], Any]] = {
    "nan": lambda r: np.insert(0.1 * r.standard_normal(800), int(r.integers(801)), np.nan).astype(np.float32),
    "inf": lambda r: np.concatenate([0.1 * r.standard_normal(400), [np.inf]]).astype(np.float32),
    "int16_pcm": lambda r: (r.standard_normal(800) * 3000).astype(np.int16),
    "stereo": lambda r: (0.1 * r.standard_normal((800, 2))).astype(np.float32),
    "float64_overflow": lambda r: np.array([0.1, 1e300, -0.2]),
    "complex": lambda r: (r.standard_normal(160) + 1j).astype(np.complex64),
    "strings": lambda r: np.array(["0.1", "0.2"]),
    "scalar": lambda r: np.float32(0.5),
    "none": lambda r: None,
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


def run_soak(
    engine: Engine,
    *,
    audio_s: float,
    seed: int = 0,
    max_wall_s: float | None = None,
    clips: list[Path] | None = None,
    max_chunk_s: float = 3.0,
    malformed_rate: float = 0.05,
    pause_rate: float = 0.01,
    tolerance: float = 1e-5,
    sample_every_s: float = 60.0,
    streamer_kwargs: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the soak (see module docstring) and return its figures; ``result["passed"]`` sums it up."""
    from tqdm import tqdm

    kwargs = {"window_s": engine.profile.window_s, "hop_s": engine.profile.hop_s, "batch": engine.profile.batch,
              "vad": engine.profile.vad, **(streamer_kwargs or {})}
    soak, clean = Streamer(engine, **kwargs), Streamer(engine, **kwargs)
    gate_calls: Counter = Counter()
    if soak.gate is not None:  # count the gate's verdicts: every window is either an event or unvoiced
        gate = soak.gate

        def counting_gate(window: np.ndarray) -> bool:
            voiced = gate(window)
            gate_calls[voiced] += 1
            return voiced

        soak.gate = counting_gate
    segments = Segments(seed, clips or [])
    r = np.random.default_rng([seed, 1 << 20])
    max_chunk = max(2, int(max_chunk_s * SR))

    pending_soak: deque = deque()
    pending_clean: deque = deque()
    failures: list[str] = []
    stats: Counter = Counter()
    malformed: Counter = Counter()
    kinds: Counter = Counter()
    # event latencies in a fixed histogram (0.01 ms .. 100 s, 1 % bins): constant memory however long the run
    lat_edges = np.geomspace(1e-2, 1e5, 1621)
    lat_counts = np.zeros(len(lat_edges) + 1, dtype=np.int64)
    lat_max = 0.0
    max_diff = 0.0
    last_end = -1
    label_ties = 0

    def compare() -> None:
        nonlocal max_diff, last_end, label_ties
        while pending_soak and pending_clean:
            a, b = pending_soak.popleft(), pending_clean.popleft()
            ok, diff, why = _same(a, b, tolerance)
            if diff != float("inf"):
                max_diff = max(max_diff, diff)
            if not ok:
                stats["mismatched_events"] += 1
                if len(failures) < 20:
                    failures.append(why)
            elif a.label != b.label:
                label_ties += 1
            end = round(a.end_s * SR)
            if end <= last_end:
                stats["duplicated_or_reordered"] += 1
                if len(failures) < 20:
                    failures.append(f"window ending {a.end_s:.3f} s repeated or out of order")
            if end < soak.window or (end - soak.window) % soak.hop:
                stats["off_grid"] += 1  # only the flushed tail window may be off the hop grid
            last_end = end
            stats["events_compared"] += 1

    # warm-up: the first inference allocates the session's buffers and the first segment imports the
    # synthesiser (scipy.signal); the baseline is taken after both
    from physioser.synthesis import synth_utterance

    engine.infer(np.zeros((kwargs["batch"], soak.window), np.float32) + 0.01)
    synth_utterance(0.5)
    tracemalloc.start()
    t0 = time.perf_counter()
    memory: list[dict[str, float]] = []

    def sample() -> None:
        cur, peak = tracemalloc.get_traced_memory()
        memory.append({"audio_s": round(soak.time_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
                       "rss_mb": round(rss_mb(), 2), "tracemalloc_mb": round(cur / 2**20, 3),
                       "tracemalloc_peak_mb": round(peak / 2**20, 3)})

    sample()
    next_sample = sample_every_s
    stopped = "audio"
    bar = tqdm(total=round(audio_s), unit="audio s", desc="soak", disable=not progress, mininterval=2.0)
    index = 0
    while soak.total < audio_s * SR:
        if max_wall_s is not None and time.perf_counter() - t0 > max_wall_s:
            stopped = "wall_time"
            break
        kind, x = segments(index)
        index += 1
        kinds[kind] += 1
        for piece in chunks(x, r, max_chunk):
            if r.random() < malformed_rate:
                name = str(r.choice(sorted(MALFORMED)))
                bad = MALFORMED[name](r)
                before = soak.total
                try:
                    soak.push(bad)
                except EngineError:
                    malformed[name] += 1
                except Exception as exc:  # noqa: BLE001 - anything but EngineError is a finding
                    stats["malformed_wrong_error"] += 1
                    failures.append(f"malformed chunk {name}: {type(exc).__name__}: {exc}")
                else:
                    stats["malformed_accepted"] += 1
                    failures.append(f"malformed chunk {name} was accepted")
                if soak.total != before:
                    stats["malformed_shifted_stream"] += 1
                    failures.append(f"malformed chunk {name} moved the stream from {before} to {soak.total} samples")
            if r.random() < pause_rate:
                time.sleep(float(r.uniform(0.0, 0.005)))
                stats["pauses"] += 1
            stats["valid_chunks"] += 1
            stats["empty_chunks"] += int(piece.size == 0)
            events = soak.push(piece)
            if events:
                lat = np.fromiter((e.latency_ms for e in events), dtype=np.float64, count=len(events))
                np.add.at(lat_counts, np.searchsorted(lat_edges, lat), 1)
                lat_max = max(lat_max, float(lat.max()))
            pending_soak.extend(events)
        pending_clean.extend(clean.push(x))
        compare()
        bar.update(round(soak.time_s) - bar.n)
        if soak.time_s >= next_sample:
            sample()
            next_sample += sample_every_s
    pending_soak.extend(soak.flush())
    pending_clean.extend(clean.flush())
    compare()
    bar.close()
    sample()
    wall = time.perf_counter() - t0
    tracemalloc.stop()

    if pending_clean or pending_soak:  # events one run produced and the other did not
        failures.append(f"{len(pending_clean)} clean-run events missing from the soak run, {len(pending_soak)} extra")
    # independent count: the windows the schedule defines, each either an event or gated out as unvoiced
    grid = (soak.total - soak.window) // soak.hop + 1 if soak.total >= soak.window else 0
    grid_end = soak.window + (grid - 1) * soak.hop if grid else 0
    expected_windows = grid + int(soak.total > grid_end and soak.total >= engine.min_samples)
    produced = stats["events_compared"] + len(pending_soak)
    unvoiced = gate_calls[False] if soak.gate is not None else 0
    if produced + unvoiced != expected_windows:
        failures.append(f"{expected_windows} windows in the schedule but {produced} events + {unvoiced} unvoiced windows")
    if stats["off_grid"] > 1:
        failures.append(f"{stats['off_grid']} events off the hop grid (only the flushed tail may be)")
    if soak.total != clean.total:
        failures.append(f"soak stream has {soak.total} samples, clean run {clean.total}")
    warm = [m for m in memory if m["audio_s"] >= 0.1 * soak.time_s] or memory
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
        "tracemalloc_mb_end": py[-1],
        "tracemalloc_mb_max": max(py),
        "tracemalloc_peak_mb": max(m["tracemalloc_peak_mb"] for m in memory),
        "series": memory,
    }
    mem["tracemalloc_mb_after_warmup"] = warm[0]["tracemalloc_mb"]
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
        "audio_s": round(soak.time_s, 1),
        "wall_s": round(wall, 1),
        "audio_per_wall": round(soak.time_s / wall, 1) if wall else None,
        "segments": index,
        "segment_kinds": dict(sorted(kinds.items())),
        "valid_chunks": stats["valid_chunks"],
        "empty_chunks": stats["empty_chunks"],
        "pauses": stats["pauses"],
        "malformed_chunks_rejected": dict(sorted(malformed.items())),
        "malformed_total": sum(malformed.values()) + stats["malformed_accepted"] + stats["malformed_wrong_error"],
        "malformed_accepted": stats["malformed_accepted"],
        "malformed_wrong_error": stats["malformed_wrong_error"],
        "malformed_shifted_stream": stats["malformed_shifted_stream"],
        "events": stats["events_compared"],
        "windows_in_schedule": expected_windows,
        "windows_unvoiced": unvoiced,
        "events_off_grid": stats["off_grid"],
        "events_clean_run_unmatched": len(pending_clean),
        "events_soak_unmatched": len(pending_soak),
        "events_mismatched": stats["mismatched_events"],
        "events_duplicated_or_reordered": stats["duplicated_or_reordered"],
        "label_ties_within_tolerance": label_ties,
        "max_abs_diff_vs_clean": max_diff,
        "tolerance": tolerance,
        "event_latency_ms": {"p50": round(lat_percentile(50), 3), "p99": round(lat_percentile(99), 3), "max": round(lat_max, 3),
                             "note": "wall time from a window's last sample to its event; p50/p99 within 1 % (histogram)"},
        "streamer": {k: v for k, v in kwargs.items()},
        "memory": mem,
        "memory_flat": flat,
        "clips": segments.clip_names,
        "failures": failures,
    }
    result["passed"] = not failures
    return result


# ----------------------------------------------------------------------------------- command

def _engine(model: str, profile: str | None, threads: int) -> tuple[Engine, dict[str, Any]]:
    prof = load_profile(profile)
    prof = dataclasses.replace(prof, intra_op_threads=threads, inter_op_threads=1)
    if model == "random":
        from physioser.bench.runtime import build_model
        from physioser.export import export_onnx

        net, _, meta, description = build_model(None, True)
        path = Path(tempfile.mkdtemp(prefix="physioser-soak-")) / "random.onnx"
        export_onnx(net, path, metadata=meta)
        engine = Engine.from_path(path, prof)
        return engine, {"model": "random", "description": description}
    from physioser.export import open_engine

    engine = open_engine(None if model == "default" else model, prof)
    return engine, {"model": model, "description": "shipped default model" if model == "default" else "given model"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m physioser.bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=2.0, help="hours of audio to push (default 2)")
    ap.add_argument("--max-wall-hours", type=float, default=3.0, help="stop after this much wall time anyway")
    ap.add_argument("--model", default="default", help=".onnx, model directory, 'default' or 'random'")
    ap.add_argument("--profile", default=None, help="hardware profile (window/hop/batch/VAD); default: built-in CPU")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clips", default=str(DEFAULT_CLIPS), help="folder of real recordings mixed in ('' for none)")
    ap.add_argument("--sample-every", type=float, default=60.0, help="memory sample period, seconds of audio")
    ap.add_argument("--tolerance", type=float, default=1e-5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    engine, model_info = _engine(args.model, args.profile, args.threads)
    clips = _clip_files(Path(args.clips)) if args.clips else []
    result = run_soak(engine, audio_s=args.hours * 3600.0, seed=args.seed, max_wall_s=args.max_wall_hours * 3600.0,
                      clips=clips, tolerance=args.tolerance, sample_every_s=args.sample_every)
    report = {
        "command": "python -m physioser.bench.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "model": {**model_info, "source": engine.source, "backend": engine.backend, "providers": engine.providers,
                  "backbone": engine.metadata.get("backbone"), "class_names": engine.class_names,
                  "threads": args.threads},
        **result,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    m = result["memory"]
    print(f"soak {'PASSED' if result['passed'] else 'FAILED'}: {result['audio_s'] / 3600:.2f} h of audio in {result['wall_s']:.0f} s; "
          f"{result['events']} events matched the clean run (max diff {result['max_abs_diff_vs_clean']:.1e}); "
          f"{result['malformed_total']} malformed chunks; RSS {m['rss_mb_after_warmup']:.1f} -> {m['rss_mb_end']:.1f} MB "
          f"(max {m['rss_mb_max']:.1f}); tracemalloc {m['tracemalloc_mb_start']:.2f} -> {m['tracemalloc_mb_end']:.2f} MB -> {out}")
    for failure in result["failures"]:
        print("  " + failure)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
