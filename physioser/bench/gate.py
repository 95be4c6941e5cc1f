"""The speech gate measured: emotion labels on non-speech, speech found in the corpora, predict on long files.

Every verdict is `predict`'s own (:func:`physioser.runtime.cli.predict_stream` with the default model):
a clip counts as "emotion" when predict would print a label for it.

- generated non-speech: 199 clips of 4 s (silence; white, pink and brown noise; 50/60 Hz hum; tones;
  beeps; sweeps; random and regular clicks; fan/motor noise) at RMS 0.003, 0.03 and 0.3, seeds 0-5;
- real noise (../shared/noise): the Speech Commands and Timgrau recordings cut into 4 s clips, the
  street recordings left out (their README warns of distant speech); the 100 unlabelled speechdnn
  sounds reported apart (unverified: they include laughter, screams and cheering, see docs/robustness.md);
- the same three sets again after 1 s of digital silence (``*_after_silence``): how the gate meets a
  sound in a running stream after a pause, rather than at the very start of a file;
- speech: every clip of the five corpora in ../shared/corpora (predict's speech verdict depends only on
  the gate and the model's minimum length, so these clips go through ``predict_stream`` with a
  stand-in for the model that keeps its shape and skips inference: :class:`GateOnly`);
- long files: predict on one hour of digital silence and on one hour of quiet pink noise holding
  N utterances, timed and with peak RSS (a child process each, measured by getrusage).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m physioser.bench.gate            # -> eval/results/gate.json
    .venv/bin/python -m physioser.bench.gate --gates energy --corpus-limit 100       # a quicker subset
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from physioser.audio import load_audio
from physioser.conditions import sources as S
from physioser.paths import corpora_root, portable

OUT = Path("eval/results/gate.json")
NOISE_ROOT = Path("../shared/noise")
CLIP_S = 4.0
STREET = "street_"  # left out: may hold distant speech
CORPORA = {"RAVDESS": "*/*.flac", "EMOVO": "*/*.flac", "URDU": "*/*.flac", "KoreanEmotionTTS": "*/*/wav/*.flac",
           "ASED": "*/*.flac"}


def generated() -> list[tuple[str, np.ndarray]]:
    out = [("silence", np.zeros(int(CLIP_S * 16000), np.float32))]
    for seed in range(6):
        for level in (0.003, 0.03, 0.3):
            r = np.random.default_rng([seed, int(level * 1000)])
            out += [("white", S.white_noise(CLIP_S, r, level)), ("pink", S.coloured_noise(CLIP_S, r, level)),
                    ("brown", S.coloured_noise(CLIP_S, r, level, 2.0)), ("hum50", S.hum(CLIP_S, r, level)),
                    ("hum60", S.hum(CLIP_S, r, level, 60.0)), ("tone", S.tone(CLIP_S, r, level, float(r.uniform(100, 3000)))),
                    ("beeps", S.tone(CLIP_S, r, level, float(r.uniform(300, 3000)), beep_s=0.2)),
                    ("sweep", S.sweep(CLIP_S, r, level)), ("clicks", S.clicks(CLIP_S, r, level)),
                    ("metronome", S.clicks(CLIP_S, r, level, 8.0, regular=True)), ("fan", S.fan_noise(CLIP_S, r, level))]
    return out


def real_noise(root: Path) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """(recordings cut into 4 s clips, street excluded), (the unlabelled speechdnn sounds, whole)."""
    long, short = [], []
    for path in sorted(root.rglob("*.flac")):
        rel = str(path.relative_to(root))
        if "speechdnn" in rel:
            short.append((rel, load_audio(path)))
        elif STREET not in path.name:
            x = load_audio(path)
            n = int(CLIP_S * 16000)
            long += [(f"{rel}@{i * CLIP_S:g}s", x[i * n : (i + 1) * n]) for i in range(len(x) // n)]
    return long, short


def after_silence(clips: list[tuple[str, np.ndarray]], seconds: float = 1.0) -> list[tuple[str, np.ndarray]]:
    """Each clip after ``seconds`` of digital silence."""
    pad = np.zeros(int(seconds * 16000), np.float32)
    return [(name, np.concatenate([pad, x])) for name, x in clips]


def verdicts(engine, clips, gate: str) -> dict:
    from physioser.runtime.cli import predict_stream

    labelled = []
    for name, x in clips:
        r = predict_stream(engine, iter([x]), vad=gate)
        if r["speech"]:
            labelled.append({"clip": name, "speech_s": round(r["speech_s"], 3), "label": r["label"]})
    return {"clips": len(clips), "emotion_labels": len(labelled), "labelled": labelled}


class GateOnly:
    """An engine's class names, rate and minimum length without its model: ``infer`` returns uniform
    probabilities. ``predict_stream(GateOnly(engine), ...)["speech"]`` equals predict's own verdict."""

    def __init__(self, engine):
        self.class_names, self.sample_rate, self.min_samples = engine.class_names, engine.sample_rate, engine.min_samples

    def infer(self, waves: np.ndarray, lens=None) -> dict:
        n = len(waves)
        return {"probs": np.full((n, len(self.class_names)), 1 / len(self.class_names)), "valence": np.zeros(n), "arousal": np.zeros(n)}


def corpus_verdicts(engine, gate: str, limit: int | None) -> dict:
    from physioser.audio import stream_audio
    from physioser.runtime.cli import predict_stream

    out, engine = {}, GateOnly(engine)
    for corpus, pattern in CORPORA.items():
        files = sorted((corpora_root() / corpus).glob(pattern))
        if limit:
            files = [files[i] for i in np.random.default_rng(0).choice(len(files), min(limit, len(files)), replace=False)]
        missed = [str(f.relative_to(corpora_root())) for f in files
                  if not predict_stream(engine, stream_audio(f), vad=gate)["speech"]]
        out[corpus] = {"clips": len(files), "speech_found": len(files) - len(missed), "missed": missed}
    total = sum(v["clips"] for v in out.values())
    found = sum(v["speech_found"] for v in out.values())
    return {"per_corpus": out, "clips": total, "speech_found": found, "rate": round(found / total, 4)}


def long_file(path: Path, minutes: int, utterances: list[np.ndarray], rng: np.random.Generator, silent: bool) -> float:
    """Write ``minutes`` of digital silence or quiet pink noise with the utterances spread over it; returns their seconds."""
    import soundfile as sf

    at = set(np.linspace(0, minutes - 1, len(utterances), dtype=int).tolist()) if utterances else set()
    queue = list(utterances)
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
        for minute in range(minutes):
            block = np.zeros(60 * 16000, np.float32) if silent else S.coloured_noise(60.0, rng, 0.003)
            if minute in at and queue:
                u = queue.pop(0)
                block[16000 : 16000 + len(u)] += u
            f.write(block)
    return sum(len(u) for u in utterances) / 16000


def measure_predict(path: Path, gate: str) -> dict:
    """`physioser predict` in a child process: wall time, peak RSS, its JSON result."""
    code = ("import json, resource, sys, time\n"
            "from physioser.cli import app\n"
            "t = time.perf_counter()\n"
            "try:\n"
            f"    app(['predict', {str(path)!r}, '--json', '--vad', {gate!r}])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('@@', time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    stats = [line for line in proc.stderr.splitlines() if line.startswith("@@")]
    if proc.returncode or not stats:
        raise RuntimeError(f"predict failed on {path}: {proc.stderr[-800:]}")
    _, seconds, maxrss_kb = stats[-1].split()
    result = json.loads(proc.stdout)["results"][0]
    return {"command_s": round(float(seconds), 2), "process_wall_s": round(wall, 2), "peak_rss_mb": round(int(maxrss_kb) / 1024, 1),
            "speech": result["speech"], "speech_s": round(result["speech_s"], 2), "label": result["label"]}


def main(argv: list[str] | None = None) -> int:
    from physioser.runtime import Engine
    from physioser.runtime.gate import silero_model_path

    ap = argparse.ArgumentParser(prog="python -m physioser.bench.gate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gates", default="silero,energy", help="comma-separated gates to measure")
    ap.add_argument("--corpus-limit", type=int, default=0, help="clips per corpus (0: all)")
    ap.add_argument("--long-minutes", type=int, default=60, help="length of the long files (0: skip them)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    gates = [g for g in args.gates.split(",") if g != "silero" or silero_model_path() is not None]
    engine = Engine.from_path(None)
    gen = generated()
    recordings, unlabelled = real_noise(NOISE_ROOT)
    result: dict = {"command": "OMP_NUM_THREADS=1 python -m physioser.bench.gate " + " ".join(argv or sys.argv[1:]),
                    "model": portable(engine.source), "clip_s": CLIP_S, "gates": {}}
    for gate in gates:
        t0 = time.perf_counter()
        entry = {"generated": verdicts(engine, gen, gate), "real_noise": verdicts(engine, recordings, gate),
                 "speechdnn_unlabelled": verdicts(engine, unlabelled, gate),
                 **{f"{name}_after_silence": verdicts(engine, after_silence(clips), gate) for name, clips in
                    (("generated", gen), ("real_noise", recordings), ("speechdnn_unlabelled", unlabelled))},
                 "corpora": corpus_verdicts(engine, gate, args.corpus_limit or None)}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        result["gates"][gate] = entry
        print(gate, {k: (v.get("emotion_labels"), v.get("rate")) for k, v in entry.items() if isinstance(v, dict)}, flush=True)
    if args.long_minutes:
        clips = sorted((corpora_root() / "RAVDESS").glob("*/*.flac"))[:40]
        utts = [load_audio(p) for p in clips]
        rng = np.random.default_rng(0)
        long = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, silent, n in (("silence", True, 0), ("noise_10_utterances", False, 10), ("noise_40_utterances", False, 40)):
                path = Path(tmp) / f"{name}.flac"
                speech = long_file(path, args.long_minutes, utts[:n], rng, silent)
                for gate in gates:
                    long[f"{name}/{gate}"] = {"minutes": args.long_minutes, "utterance_s": round(speech, 1),
                                              **measure_predict(path, gate)}
                    print(name, gate, long[f"{name}/{gate}"], flush=True)
                path.unlink()
        result["long_files"] = long
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
