"""Why the speech gate missed corpus clips, and how its silero settings were chosen (the figures of
docs/robustness.md, "Why clips were still missed" and "The stationary veto").

Takes the clips a gate benchmark missed (``--missed-from``: a ``gate.json`` written by
:mod:`physioser.bench.gate`, e.g. the one before the primed state: ``git show
32b4d27:eval/results/gate.json > /tmp/gate_before.json``) and measures, with the silero gate:

- the missed clips against 400 found clips drawn at random (seed 1): level, length, energy onset,
  clipping and silero's best 8-frame mean probability from a zero LSTM state;
- the gate before (zero state, no veto) on transformed missed clips: silence or low noise before
  them, level normalisation, high-pass, gain;
- priming lengths 0 / 0.25 / 0.5 / 1 / 2 s (with the veto) on the missed clips (even / odd halves),
  the found sample and the non-speech sets of :mod:`physioser.bench.gate`;
- the veto's bar (0 / 3 / 4.5 / 6 / 9 dB) on 120 found clips mixed with pink noise and two real
  noise recordings at 0 / 5 / 10 dB SNR.

A clip has speech when :func:`physioser.runtime.gate.speech_segments` finds at least predict's
0.5 s in it.

    OMP_NUM_THREADS=1 python -m physioser.bench.gate_analysis --missed-from /tmp/gate_before.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import warnings
from pathlib import Path

import numpy as np

OUT = Path("eval/results/gate_analysis.json")
NOISES = {"dishes": "SpeechCommands_background_noise/_background_noise_/doing_the_dishes.flac",
          "vacuum": "Timgrau_Projektarbeit-1/noise_data/resampled/vacuuming_0.flac"}


@contextlib.contextmanager
def silero_settings(**attrs):
    """SileroVAD's class settings changed for the block (PRIME_S, MODULATION_DB, ASSISTED)."""
    from physioser.runtime.gate import SileroVAD

    old = {k: getattr(SileroVAD, k) for k in attrs}
    for k, v in attrs.items():
        setattr(SileroVAD, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(SileroVAD, k, v)


BEFORE = {"PRIME_S": 0.0, "MODULATION_DB": -np.inf}  # the gate before the primed state and the veto


def speech_s(x: np.ndarray) -> float:
    from physioser.runtime.gate import speech_segments

    return sum(len(p) for _, p in speech_segments(iter([x]), "silero", max_samples=30 * 16000)) / 16000


def has_speech(x: np.ndarray) -> bool:
    from physioser.runtime.cli import MIN_FILE_SPEECH_S

    return speech_s(x) >= MIN_FILE_SPEECH_S


def clip_stats(x: np.ndarray) -> dict:
    from physioser.runtime.gate import FRAME, SpectralVAD

    n = len(x) // FRAME
    frames = x[: n * FRAME].reshape(n, FRAME)
    db = SpectralVAD.level_db(frames)
    level = float(np.percentile(db, 95))
    with silero_settings(**BEFORE):
        from physioser.runtime.gate import SileroVAD

        vad = SileroVAD()
        vad.ASSISTED = np.inf  # silero's own probabilities
        probs = vad(frames)
    top8 = float(np.convolve(probs, np.ones(8) / 8, "valid").max()) if n >= 8 else float(probs.max(initial=0))
    return {"seconds": len(x) / 16000, "level_db": level, "onset_s": float(np.argmax(db > level - 20) * FRAME / 16000),
            "clipped": bool(np.abs(x).max() >= 0.99), "silero_top8_cold": top8}


def medians(rows: list[dict]) -> dict:
    return {k: (round(float(np.median([r[k] for r in rows])), 3) if k != "clipped" else int(sum(r[k] for r in rows)))
            for k in rows[0]} | {"clips": len(rows)}


def transforms(x: np.ndarray) -> dict[str, np.ndarray]:
    from physioser.runtime.gate import FRAME, SpectralVAD
    from scipy.signal import butter, sosfilt

    n = len(x) // FRAME
    level = np.percentile(SpectralVAD.level_db(x[: n * FRAME].reshape(n, FRAME)), 95)
    sos = butter(2, 80, "hp", fs=16000, output="sos")
    noise = np.random.default_rng(0).normal(0, 1e-4, 8000).astype(np.float32)
    return {"as is": x, "0.5 s silence before": np.concatenate([np.zeros(8000, np.float32), x]),
            "1 s silence before": np.concatenate([np.zeros(16000, np.float32), x]),
            "0.5 s of -80 dBFS noise before": np.concatenate([noise, x]),
            "level to -20 dBFS": (x * 10 ** ((-20 - level) / 20)).astype(np.float32),
            "80 Hz high-pass": sosfilt(sos, x).astype(np.float32), "gain x0.5": x * 0.5, "gain x0.25": x * 0.25}


def mix(x: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    gain = np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(noise**2)) + 1e-12) * 10 ** (-snr / 20)
    return (x + gain * noise).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    from physioser.audio import load_audio
    from physioser.bench.gate import CORPORA, NOISE_ROOT, after_silence, generated, real_noise
    from physioser.conditions import sources as S
    from physioser.paths import corpora_root

    ap = argparse.ArgumentParser(prog="python -m physioser.bench.gate_analysis", description=__doc__.split("\n\n")[0])
    ap.add_argument("--missed-from", required=True, help="a gate.json whose silero corpus misses are analysed")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    root = corpora_root()
    bench = json.loads(Path(args.missed_from).read_text())
    missed = [m for v in bench["gates"]["silero"]["corpora"]["per_corpus"].values() for m in v["missed"]]
    every = [str(f.relative_to(root)) for c, p in CORPORA.items() for f in sorted((root / c).glob(p))]
    rest = [f for f in every if f not in set(missed)]
    found = [rest[i] for i in np.random.default_rng(1).choice(len(rest), 400, replace=False)]
    audio = {f: load_audio(root / f) for f in missed + found}
    result: dict = {"command": "OMP_NUM_THREADS=1 python -m physioser.bench.gate_analysis --missed-from " + args.missed_from,
                    "missed": len(missed), "found_sample": len(found)}

    stats = {f: clip_stats(audio[f]) for f in missed + found}
    result["clips"] = {name: medians([stats[f] for f in files if f.startswith(prefix)])
                       for name, files, prefix in (("missed", missed, ""), ("missed ASED", missed, "ASED"),
                                                   ("found", found, ""), ("found ASED", found, "ASED"))}
    print(result["clips"], flush=True)

    with silero_settings(**BEFORE):
        result["before_gate_on_transformed_missed_clips"] = {
            name: sum(has_speech(transforms(audio[f])[name]) for f in missed) for name in transforms(np.zeros(16000, np.float32))}
    print(result["before_gate_on_transformed_missed_clips"], flush=True)

    gen = generated()
    recordings, _ = real_noise(NOISE_ROOT)
    non_speech = {"generated": gen, "real_noise": recordings, "generated_after_silence": after_silence(gen),
                  "real_noise_after_silence": after_silence(recordings)}
    priming = {}
    for prime in (0.0, 0.25, 0.5, 1.0, 2.0):
        with silero_settings(PRIME_S=prime):
            hits = [has_speech(audio[f]) for f in missed]
            priming[f"{prime:g} s"] = {"missed found (even, odd)": [sum(hits[0::2]), sum(hits[1::2])],
                                       "found sample kept": sum(has_speech(audio[f]) for f in found),
                                       **{k: sum(has_speech(x) for _, x in v) for k, v in non_speech.items()}}
        print(prime, priming[f"{prime:g} s"], flush=True)
    result["priming"] = priming

    noise_root = Path(NOISE_ROOT)
    recs = {k: load_audio(noise_root / v) for k, v in NOISES.items()}
    rng = np.random.default_rng(0)
    bars = (-np.inf, 3.0, 4.5, 6.0, 9.0)
    veto = {}
    for kind in ("pink", *NOISES):
        for snr in (0, 5, 10):
            counts = dict.fromkeys(bars, 0)
            for f in found[:120]:
                x = audio[f]
                if kind == "pink":
                    noise = S.coloured_noise(len(x) / 16000, rng, 0.1)[: len(x)]
                else:
                    at = rng.integers(0, len(recs[kind]) - len(x))
                    noise = recs[kind][at : at + len(x)]
                y = mix(x, noise, snr)
                for bar in bars:
                    with silero_settings(MODULATION_DB=bar):
                        counts[bar] += has_speech(y)
            veto[f"{kind} {snr} dB SNR"] = {("none" if b == -np.inf else f"{b:g} dB"): c for b, c in counts.items()}
            print(kind, snr, veto[f"{kind} {snr} dB SNR"], flush=True)
    result["veto_bar_on_120_found_clips_in_noise"] = veto
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
