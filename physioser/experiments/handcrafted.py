"""The handcrafted baseline: MFCC + F0 + energy statistics → StandardScaler → logistic regression.

Per utterance (16 kHz, 25 ms windows, 10 ms hop):

* 20 MFCCs and their deltas: mean and standard deviation over frames (80 values);
* F0 by YIN (60–500 Hz, 64 ms frames) over the voiced frames (RMS within 30 dB of the loudest frame
  and F0 inside the search range): mean, std, 5th/95th percentiles and range of log2 F0, the slope
  of log2 F0 over time, and the voiced fraction (7 values);
* RMS energy in dB: mean, std, 5th/95th percentiles, range, and the mean absolute frame-to-frame
  change (6 values); the utterance duration (1 value).

94 values in all, cached per corpus under ``<cache>/handcrafted/v1/<corpus>.npz`` keyed by each
file's path, size and modification time. The classifier and folds are those of
:mod:`physioser.experiments.common`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

__all__ = ["FEATURE_NAMES", "handcrafted_features", "corpus_features", "run_handcrafted"]

SR = 16000
N_MFCC = 20
FEATURE_VERSION = "v1"


def _names() -> list[str]:
    names = [f"mfcc{i}_{s}" for s in ("mean", "std") for i in range(N_MFCC)]
    names += [f"dmfcc{i}_{s}" for s in ("mean", "std") for i in range(N_MFCC)]
    names += ["f0_mean", "f0_std", "f0_p5", "f0_p95", "f0_range", "f0_slope", "voiced_fraction"]
    names += ["rms_mean", "rms_std", "rms_p5", "rms_p95", "rms_range", "rms_delta", "duration"]
    return names


FEATURE_NAMES = _names()


def handcrafted_features(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """x float32 mono waveform at ``sr`` (16 kHz) -> [94] float64 statistics (see the module doc)."""
    import librosa

    if sr != SR:
        raise ValueError(f"handcrafted_features expects {SR} Hz audio, got {sr} Hz")
    x = np.asarray(x, dtype=np.float32)
    if len(x) < 1024:
        x = np.pad(x, (0, 1024 - len(x)))
    mfcc = librosa.feature.mfcc(y=x, sr=sr, n_mfcc=N_MFCC, n_fft=512, win_length=400, hop_length=160, n_mels=40)
    delta = librosa.feature.delta(mfcc, width=min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))) if mfcc.shape[1] >= 3 else np.zeros_like(mfcc)
    rms = librosa.feature.rms(y=x, frame_length=1024, hop_length=160, center=True)[0]
    f0 = librosa.yin(x, fmin=60.0, fmax=500.0, sr=sr, frame_length=1024, hop_length=160, center=True)
    db = 20.0 * np.log10(np.maximum(rms, 1e-6))
    n = min(len(f0), len(db))
    f0, dbf = f0[:n], db[:n]
    voiced = (dbf > dbf.max() - 30.0) & (f0 > 61.0) & (f0 < 495.0)
    if voiced.sum() >= 2:
        lf = np.log2(f0[voiced])
        t = np.flatnonzero(voiced) * 0.01
        slope = float(np.polyfit(t, lf, 1)[0]) if np.ptp(t) > 0 else 0.0
        p5, p95 = np.percentile(lf, [5, 95])
        f0_stats = [lf.mean(), lf.std(), p5, p95, p95 - p5, slope, voiced.mean()]
    else:
        f0_stats = [0.0] * 6 + [float(voiced.mean())]
    q5, q95 = np.percentile(db, [5, 95])
    rms_stats = [db.mean(), db.std(), q5, q95, q95 - q5, np.abs(np.diff(db)).mean() if len(db) > 1 else 0.0, len(x) / sr]
    return np.concatenate([mfcc.mean(1), mfcc.std(1), delta.mean(1), delta.std(1), f0_stats, rms_stats]).astype(np.float64)


def _file_key(path: str) -> str:
    st = os.stat(path)
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def corpus_features(rows: Sequence, *, cache_dir: Path | None = None, progress: bool = True) -> np.ndarray:
    """[N, 94] handcrafted features of ``rows`` (cached per corpus; missing files computed and added)."""
    from physioser.audio import load_audio
    from physioser.paths import cache_dir as physioser_cache

    root = Path(cache_dir) if cache_dir is not None else physioser_cache() / "handcrafted" / FEATURE_VERSION
    root.mkdir(parents=True, exist_ok=True)
    out = np.zeros((len(rows), len(FEATURE_NAMES)))
    by_corpus: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_corpus.setdefault(r.corpus, []).append(i)
    for corpus, idx in by_corpus.items():
        path = root / f"{corpus}.npz"
        known: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as z:
                known = dict(zip(z["keys"].tolist(), z["features"]))
        keys = [_file_key(rows[i].path) for i in idx]
        missing = [j for j, k in enumerate(keys) if k not in known]
        for j in tqdm(missing, desc=f"handcrafted {corpus}", disable=not progress or not missing, leave=False):
            known[keys[j]] = handcrafted_features(load_audio(rows[idx[j]].path))
        if missing:
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(known)), features=np.stack(list(known.values())))
            os.replace(tmp, path)
        out[idx] = np.stack([known[k] for k in keys])
    return out


def run_handcrafted(corpora: Sequence[str], *, test_corpus: str | None = None, classes: Sequence[str] | None = None,
                    corpora_root: Path | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Handcrafted baseline under the protocol of ``physioser eval`` (intra-, multi- or cross-corpus)."""
    from physioser.data.labels import FOUR_CLASSES
    from physioser.experiments.common import DEFAULT_ROOT, load_labelled_rows, protocol_plan, score_folds

    if test_corpus is not None and not classes:
        classes = list(FOUR_CLASSES)
    names = list(corpora) + ([test_corpus] if test_corpus else [])
    rows, labels, class_names, spans = load_labelled_rows(names, corpora_root or DEFAULT_ROOT, classes)
    x = corpus_features(rows, progress=progress)
    plan = protocol_plan(rows, spans, corpora, test_corpus=test_corpus, seed=seed)
    res = score_folds(x, labels, rows, plan, class_names)
    return {"model": "handcrafted: MFCC+F0+RMS statistics (94) -> StandardScaler -> logistic regression (C by val UA)",
            "protocol": {"train_corpora": list(corpora), "test_corpus": test_corpus, "folds": [p[0] for p in plan]},
            "class_names": class_names, **res}
