"""Shared plumbing of the experiments: the rows, labels and folds of ``physioser eval``, scored alike.

Every number of this package goes through :func:`physioser.model.metrics.classification_metrics`
(scikit-learn UA / WA / macro-F1) on the fold plan of :func:`physioser.data.folds.fold_plan`, so a
baseline here and a trained model there see exactly the same training, validation and test
speakers. Results are written to ``eval/results/experiments/<run>/results.json`` (one level deeper
than ``physioser eval``'s runs, so ``physioser report`` does not mistake them for model runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from physioser.model.metrics import classification_metrics, summarize
from physioser.paths import corpora_root

__all__ = [
    "EXPERIMENTS_DIR",
    "CORPORA",
    "load_labelled_rows",
    "protocol_plan",
    "score_folds",
    "fit_logistic",
    "write_results",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "eval" / "results" / "experiments"
CORPORA = ("RAVDESS", "EMOVO", "URDU", "KoreanEmotionTTS")
"""The four real corpora of ``../shared/corpora``."""
DEFAULT_ROOT = corpora_root()


def load_labelled_rows(corpora: Sequence[str], corpora_root: str | Path = DEFAULT_ROOT,
                       classes: Sequence[str] | None = None) -> tuple[list, np.ndarray, list[str], dict[str, np.ndarray]]:
    """Rows, integer labels, class names and {corpus: row indices}, selected as ``physioser eval`` does.

    ``classes=None``: the corpus's own canonical class set (the shared classes for several corpora).
    """
    from physioser.features import class_names_for, gather_rows, labels_of
    from physioser.model.config import load_config

    cfg = load_config(None, [f"classes={list(classes)}"] if classes else [])
    class_names = class_names_for(cfg, corpora)
    rows, spans = gather_rows(corpora, class_names, corpora_root)
    return rows, labels_of(rows, class_names), class_names, spans


def protocol_plan(rows: list, spans: dict[str, np.ndarray], corpora: Sequence[str], *,
                  test_corpus: str | None = None, seed: int = 0) -> list[tuple[int, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """The fold plan ``physioser eval`` uses: [(fold, train idx, val idx, {test corpus: test idx})]."""
    from physioser.data.folds import fold_plan

    return fold_plan(SimpleNamespace(rows=rows), spans, list(corpora), test_corpus=test_corpus, seed=seed)


def fit_logistic(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None, y_val: np.ndarray | None,
                 cs: Sequence[float] = (0.01, 0.1, 1.0), seed: int = 0):
    """StandardScaler → logistic regression; C chosen by validation UA (when there is a validation
    split), then refit on train + validation. Returns (fitted pipeline, chosen C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, random_state=seed))

    best_c = cs[len(cs) // 2] if len(cs) else 1.0
    if x_val is not None and len(x_val) and len(cs) > 1:
        scores = [balanced_accuracy_score(y_val, make(c).fit(x_train, y_train).predict(x_val)) for c in cs]
        best_c = cs[int(np.argmax(scores))]
        x_train = np.concatenate([x_train, x_val])
        y_train = np.concatenate([y_train, y_val])
    return make(best_c).fit(x_train, y_train), best_c


def score_folds(features: np.ndarray, labels: np.ndarray, rows: list, plan: list, class_names: list[str],
                fit: Callable = fit_logistic) -> dict:
    """Fit ``fit(x_tr, y_tr, x_val, y_val) -> (model, info)`` per fold, score each test corpus.

    Returns {corpus: {"summary": mean ± std over folds, "pooled": metrics of all folds' predictions
    together, "folds": [...], "confusion": summed}} plus "fits": [info per fold].
    """
    per_corpus: dict[str, list[dict]] = {}
    pooled: dict[str, tuple[list, list]] = {}
    infos = []
    for k, tr, va, tests in plan:
        model, info = fit(features[tr], labels[tr], features[va] if len(va) else None, labels[va] if len(va) else None)
        infos.append({"fold": k, "info": info})
        for name, te in tests.items():
            pred = model.predict(features[te])
            m = classification_metrics(labels[te], pred, class_names)
            m.update(fold=k, n_train=int(len(tr)), n_val=int(len(va)), test_speakers=sorted({rows[i].speaker for i in te}))
            per_corpus.setdefault(name, []).append(m)
            pooled.setdefault(name, ([], []))
            pooled[name][0].extend(labels[te].tolist())
            pooled[name][1].extend(np.asarray(pred).tolist())
    out: dict = {"fits": infos, "corpora": {}}
    for name, folds in per_corpus.items():
        conf = np.sum([np.array(f["confusion"]) for f in folds], axis=0)
        out["corpora"][name] = {
            "summary": summarize(folds),
            "pooled": classification_metrics(pooled[name][0], pooled[name][1], class_names),
            "folds": folds,
            "confusion": conf.tolist(),
        }
    return out


def write_results(run: str, results: dict, results_dir: Path = EXPERIMENTS_DIR) -> Path:
    """Write ``results`` (plus versions, git hash, hardware, command) to ``results_dir/run/results.json``."""
    from physioser.evaluate import environment

    out = Path(results_dir) / run
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps({"run": run, **results, "environment": environment()}, indent=1, default=str))
    return path
