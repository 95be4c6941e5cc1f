"""The main job: ``physioser predict FILE...`` and ``physioser demo [FILE]``.

Both use the default model bundle unless ``--model`` names a model bundle or an ``.onnx`` graph
(with the training layer installed, also a training checkpoint directory). ``predict`` reads each file block by block (bounded memory, whatever its length), keeps
the speech the gate finds (:mod:`physioser.runtime.gate`; pieces of at most ``--max-seconds``)
and averages the model's probabilities over that speech, weighted by length; a file with less than
:data:`MIN_FILE_SPEECH_S` of speech is reported as "no speech" (not an emotion; exit code 0).
``demo`` streams a file — or, without one, an utterance it synthesises — through the
:class:`~physioser.runtime.Streamer` in real time and shows the live estimates.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import typer

from physioser.synthesis import synth_utterance

MIN_FILE_SPEECH_S = 0.5
"""Less speech than this in a file (after the gate) is "no speech"."""


def core_engine(model: str | None, profile: str | None, backend: str = "auto"):
    """The core's engine opener: model bundles and .onnx graphs (see :meth:`Engine.from_path`)."""
    from physioser.runtime.engine import Engine, EngineError

    if backend not in ("auto", "onnxruntime"):
        raise EngineError(f"backend {backend!r} runs training checkpoints: it needs pip install 'physioser[train]'")
    return Engine.from_path(model, profile)


ALLOW_PROFILE_PATH_HELP = "let --profile name a YAML file instead of an installed profile (physioser/hardware/*.yaml)"


def predict_file(engine, audio: np.ndarray, max_seconds: float = 30.0, speaker_offset: np.ndarray | None = None) -> dict:
    """Whole-file prediction: probabilities (length-weighted mean over <= max_seconds segments), latency;
    ``speaker_offset`` [1, F]: the speaker's offset (a speaker-adaptive model), for every segment."""
    limit = int(max_seconds * engine.sample_rate)
    parts = max(1, math.ceil(len(audio) / limit))
    bounds = np.linspace(0, len(audio), parts + 1).astype(int)
    probs = np.zeros(len(engine.class_names))
    va = np.zeros(2)
    t0 = time.perf_counter()
    for a, b in zip(bounds[:-1], bounds[1:]):
        out = engine.infer(audio[None, a:b], speaker_offset=speaker_offset)
        w = (b - a) / len(audio)
        probs += w * out["probs"][0]
        va += w * np.array([out["valence"][0], out["arousal"][0]])
    latency = (time.perf_counter() - t0) * 1e3
    k = int(np.argmax(probs))
    return {
        "label": engine.class_names[k],
        "confidence": float(probs[k]),
        "probs": {n: float(p) for n, p in zip(engine.class_names, probs)},
        "valence": float(va[0]),
        "arousal": float(va[1]),
        "seconds": len(audio) / engine.sample_rate,
        "latency_ms": latency,
    }


def predict_stream(engine, blocks, max_seconds: float = 30.0, vad: str = "auto") -> dict:
    """File-level prediction from consecutive 16 kHz blocks: the gate's speech pieces (all audio with
    ``vad="none"``) of at most ``max_seconds`` are inferred one by one and their probabilities averaged,
    weighted by length; pieces shorter than the model's minimum are skipped. Returns ``speech``
    (False: "no speech", no label), ``speech_s``, ``seconds`` and, with speech, the label fields."""
    from physioser.runtime.gate import speech_segments

    limit = int(max_seconds * engine.sample_rate)
    seen = [0]

    def counted():
        for block in blocks:
            seen[0] += len(block)
            yield block

    pieces = _fixed_pieces(counted(), limit) if vad == "none" else speech_segments(counted(), vad, max_samples=limit)
    probs, va, speech, latency = np.zeros(len(engine.class_names)), np.zeros(2), 0, 0.0
    for _, piece in pieces:
        if len(piece) < engine.min_samples:
            continue
        t0 = time.perf_counter()
        out = engine.infer(piece[None])
        latency += (time.perf_counter() - t0) * 1e3
        probs += len(piece) * out["probs"][0]
        va += len(piece) * np.array([out["valence"][0], out["arousal"][0]])
        speech += len(piece)
    result = {"speech": speech >= MIN_FILE_SPEECH_S * engine.sample_rate, "speech_s": speech / engine.sample_rate,
              "seconds": seen[0] / engine.sample_rate}
    if not result["speech"]:
        return {**result, "label": None}
    probs, va = probs / speech, va / speech
    k = int(np.argmax(probs))
    return {**result, "label": engine.class_names[k], "confidence": float(probs[k]),
            "probs": {n: float(p) for n, p in zip(engine.class_names, probs)},
            "valence": float(va[0]), "arousal": float(va[1]), "latency_ms": latency}


def _fixed_pieces(blocks, size: int):
    """Consecutive pieces of ``size`` samples (the last one shorter) from a stream of blocks."""
    buf, start = np.zeros(0, np.float32), 0
    for block in blocks:
        buf = np.concatenate([buf, block])
        while len(buf) >= size:
            yield start, buf[:size]
            buf, start = buf[size:], start + size
    if len(buf):
        yield start, buf


def register(app: typer.Typer, open_engine: Callable = core_engine) -> None:
    """Add ``predict`` and ``demo``; ``open_engine(model, profile, backend)`` opens the model (the
    training layer's, when installed, also runs checkpoints and builds the default bundle)."""
    @app.command("predict")
    def predict_cmd(
        files: list[Path] = typer.Argument(..., help="audio files (wav/flac/ogg; any rate, mono or stereo)"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
        model: str = typer.Option(None, "--model", help="model bundle or .onnx graph (default: the default bundle)"),
        profile: str = typer.Option(None, "--profile", help="installed hardware profile name (default: cpu, 2 threads)"),
        allow_profile_path: bool = typer.Option(False, "--allow-profile-path", help=ALLOW_PROFILE_PATH_HELP),
        backend: str = typer.Option("auto", "--backend", help="auto | onnxruntime | torch (torch: a training checkpoint in PyTorch; needs physioser[train])"),
        max_seconds: float = typer.Option(30.0, "--max-seconds", help="speech is inferred in pieces of at most this"),
        vad: str = typer.Option("auto", "--vad", help="speech gate: auto (silero where installed, else energy), silero, energy, none"),
    ) -> None:
        """Classify the emotion of the speech in audio files: label, confidence, probabilities, latency ("no speech" without)."""
        from rich.table import Table

        from physioser.audio import AudioError, stream_audio
        from physioser.runtime.engine import EngineError
        from physioser.runtime.gate import SpeechGateError, resolve_gate
        from physioser.runtime.profiles import load_profile

        _finite_positive(max_seconds, "--max-seconds")
        try:
            vad = resolve_gate(vad)
        except SpeechGateError as exc:
            raise typer.BadParameter(str(exc), param_hint="--vad") from exc
        try:
            engine = open_engine(model, load_profile(profile, allow_path=allow_profile_path) if profile else None, backend)
        except (EngineError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--model/--profile") from exc
        if int(max_seconds * engine.sample_rate) < engine.min_samples:
            raise typer.BadParameter(f"must be at least the model's minimum {engine.min_samples / engine.sample_rate:g} s, "
                                     f"got {max_seconds:g}", param_hint="--max-seconds")
        results, failed = [], 0
        for path in files:
            try:
                blocks = stream_audio(path, target_sr=engine.sample_rate, min_seconds=engine.min_samples / engine.sample_rate)
                results.append({"file": str(path), **predict_stream(engine, blocks, max_seconds, vad)})
            except (AudioError, EngineError) as exc:  # an engine error (e.g. samples beyond ±2) names no file
                failed += 1
                results.append({"file": str(path), "error": str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"})
        if as_json:
            typer.echo(json.dumps({"model": engine.source, "backend": engine.backend, "vad": vad, "results": results}, indent=1))
        else:
            console = _console()
            table = Table(title=f"physioser predict — {engine.backend} ({', '.join(engine.providers)}), speech gate {vad}")
            for col in ("file", "label", "conf.", *engine.class_names, "valence", "arousal", "audio s", "speech s", "latency ms"):
                table.add_column(col, justify="left" if col in ("file", "label") else "right")
            for r in results:
                if "error" in r:
                    continue
                if not r["speech"]:
                    table.add_row(Path(r["file"]).name, "no speech", *[""] * (len(engine.class_names) + 3),
                                  f"{r['seconds']:.2f}", f"{r['speech_s']:.2f}", "")
                else:
                    table.add_row(Path(r["file"]).name, r["label"], f"{r['confidence']:.2f}",
                                  *(f"{r['probs'][n]:.2f}" for n in engine.class_names), f"{r['valence']:+.2f}",
                                  f"{r['arousal']:+.2f}", f"{r['seconds']:.2f}", f"{r['speech_s']:.2f}", f"{r['latency_ms']:.1f}")
            console.print(table)
            for r in results:
                if "error" in r:
                    console.print(f"error: {r['error']}", markup=False, highlight=False, style="red")
        if failed:
            raise typer.Exit(code=1)

    @app.command("demo")
    def demo_cmd(
        file: Path = typer.Argument(None, help="audio file to stream (default: a synthesised utterance)"),
        model: str = typer.Option(None, "--model", help="model bundle or .onnx graph (default: the default bundle)"),
        profile: str = typer.Option(None, "--profile", help="installed hardware profile name"),
        allow_profile_path: bool = typer.Option(False, "--allow-profile-path", help=ALLOW_PROFILE_PATH_HELP),
        backend: str = typer.Option("auto", "--backend", help="auto | onnxruntime | torch (torch: a training checkpoint in PyTorch; needs physioser[train])"),
        chunk_ms: float = typer.Option(100.0, "--chunk-ms", help="size of the chunks fed to the streamer"),
        realtime: bool = typer.Option(True, "--realtime/--fast", help="pace the chunks at real time (--fast: as fast as possible)"),
        vad: str = typer.Option(None, "--vad", help="auto | silero | energy | none (default: the profile's; "
                                "none for the synthesised utterance, which is not speech to a speech gate)"),
    ) -> None:
        """Stream an audio file (or a synthesised utterance) through the Streamer and show live estimates."""
        from rich.live import Live
        from rich.table import Table

        from physioser.audio import AudioError, load_audio
        from physioser.runtime.engine import EngineError
        from physioser.runtime.profiles import load_profile
        from physioser.runtime.streamer import Streamer

        _finite_positive(chunk_ms, "--chunk-ms")
        console = _console()
        try:
            engine = open_engine(model, load_profile(profile, allow_path=allow_profile_path) if profile else None, backend)
            if vad is None and file is None:
                vad = "none"  # a vowel synthesiser is no speech to silero-vad: stream it ungated
            streamer = Streamer.from_profile(engine, **({"vad": vad} if vad else {}))
        except (EngineError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--model/--profile/--vad") from exc
        if file is None:
            audio, what = synth_utterance(), "a synthesised 4 s utterance (source-filter vowels, rise-fall pitch)"
        else:
            try:
                audio = load_audio(file, target_sr=engine.sample_rate)
            except AudioError as exc:
                raise typer.BadParameter(str(exc), param_hint="FILE") from exc
            what = str(file)
        console.print(f"streaming {what}: {len(audio) / engine.sample_rate:.2f} s, model {engine.source} "
                      f"[{engine.backend}: {', '.join(engine.providers)}], window {streamer.window / engine.sample_rate:g} s, "
                      f"hop {streamer.hop / engine.sample_rate:g} s, speech gate {streamer.vad}, chunks {chunk_ms:g} ms, "
                      f"{'real time' if realtime else 'as fast as possible'}", markup=False, highlight=False)
        chunk = max(1, int(chunk_ms * engine.sample_rate / 1000))
        events = []

        def render(last=None) -> Table:
            table = Table(title=f"t = {streamer.time_s:5.2f} s")
            for col in ("window", "label", "conf.", "valence", "arousal", "latency ms"):
                table.add_column(col, justify="left" if col in ("window", "label") else "right")
            for e in events[-8:]:
                table.add_row(f"{e.start_s:5.2f}-{e.end_s:5.2f} s", e.label, f"{e.confidence:.2f}",
                              f"{e.valence:+.2f}", f"{e.arousal:+.2f}", f"{e.latency_ms:.1f}")
            return table

        def line(e) -> str:
            probs = " ".join(f"{n} {p:.2f}" for n, p in e.probs.items())
            return (f"{e.start_s:5.2f}-{e.end_s:5.2f} s  {e.label:<9} conf {e.confidence:.2f}  "
                    f"V {e.valence:+.2f} A {e.arousal:+.2f}  [{probs}]  latency {e.latency_ms:.1f} ms"
                    + ("  (end of utterance)" if e.final else ""))

        start = time.perf_counter()
        with Live(render(), console=console, refresh_per_second=10, transient=False) if console.is_terminal else _NoLive() as live:
            for i in range(0, len(audio), chunk):
                if realtime:
                    delay = start + i / engine.sample_rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                new = streamer.push(audio[i : i + chunk])
                new_flush = streamer.flush() if i + chunk >= len(audio) else []
                for e in new + new_flush:
                    events.append(e)
                    if live is None:
                        console.print(line(e), markup=False, highlight=False)
                if live is not None:
                    live.update(render())
        if not events:
            console.print("no speech: the speech gate found none, so there is no emotion to report")
            return
        lat = np.array([e.latency_ms for e in events])
        labels = [e.label for e in events]
        top = max(set(labels), key=labels.count)
        console.print(f"{len(events)} estimates; most frequent: {top}; latency per window p50 {np.median(lat):.1f} ms, "
                      f"max {lat.max():.1f} ms (budget {engine.profile.latency_budget_ms:g} ms, profile {engine.profile.name})")


def _finite_positive(value: float, option: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}", param_hint=option)


def _console():
    """A rich console; 200 columns wide when the output is not a terminal (pipes, logs, README captures)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


class _NoLive:
    """Stand-in for rich.live.Live when output is not a terminal: events are printed as lines."""

    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None
