"""Classification metrics of the evaluation protocol (EmoBox practice, computed by scikit-learn).

UA = balanced accuracy (unweighted average recall), WA = accuracy, macro-F1, per-class recall and
the confusion matrix (rows = true class, columns = predicted class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

__all__ = ["classification_metrics", "summarize"]


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]) -> dict:
    """UA, WA, macro-F1, per-class recall and confusion of integer predictions.

    Classes absent from ``y_true`` are left out of UA and macro-F1 (scikit-learn's
    ``balanced_accuracy_score`` convention) but kept in the confusion matrix.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"metrics need two equal-length non-empty label vectors, got {y_true.shape} and {y_pred.shape}")
    n = len(class_names)
    if y_true.max() >= n or y_pred.max() >= n or min(y_true.min(), y_pred.min()) < 0:
        raise ValueError(f"labels must lie in [0, {n}) for classes {list(class_names)}")
    present = np.unique(y_true)
    recall = recall_score(y_true, y_pred, labels=np.arange(n), average=None, zero_division=0)
    return {
        "ua": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "wa": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class_recall": {name: float(recall[i]) for i, name in enumerate(class_names) if i in present},
        "confusion": confusion_matrix(y_true, y_pred, labels=np.arange(n)).tolist(),
        "n": int(y_true.size),
    }


def summarize(folds: Sequence[dict], keys: Sequence[str] = ("ua", "wa", "macro_f1")) -> dict:
    """Mean and population std over folds of each metric: {key: {"mean", "std", "values"}}."""
    out = {}
    for key in keys:
        values = np.array([f[key] for f in folds], dtype=np.float64)
        out[key] = {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}
    return out
