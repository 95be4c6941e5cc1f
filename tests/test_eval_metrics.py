"""Evaluation metrics equal scikit-learn's on a known confusion."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from physioser.model.metrics import classification_metrics, summarize


def _from_confusion(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = [], []
    for i, row in enumerate(conf):
        for j, count in enumerate(row):
            y_true += [i] * int(count)
            y_pred += [j] * int(count)
    return np.array(y_true), np.array(y_pred)


def test_metrics_on_known_confusion() -> None:
    conf = np.array([[8, 1, 1, 0], [2, 5, 0, 3], [0, 0, 10, 0], [1, 1, 2, 6]])
    y_true, y_pred = _from_confusion(conf)
    m = classification_metrics(y_true, y_pred, ["neutral", "happy", "angry", "sad"])
    assert m["confusion"] == conf.tolist()
    # by hand: recalls 0.8, 0.5, 1.0, 0.6 -> UA 0.725; WA 29/40
    assert m["ua"] == pytest.approx(0.725)
    assert m["wa"] == pytest.approx(29 / 40)
    assert m["per_class_recall"] == pytest.approx({"neutral": 0.8, "happy": 0.5, "angry": 1.0, "sad": 0.6})
    assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["wa"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_absent_class_left_out_of_ua_like_sklearn() -> None:
    y_true = np.array([0, 0, 1, 1, 1])
    y_pred = np.array([0, 2, 1, 1, 0])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    with pytest.warns(UserWarning):
        ref = balanced_accuracy_score(y_true, y_pred)
    assert m["ua"] == pytest.approx(ref)
    assert set(m["per_class_recall"]) == {"a", "b"}


def test_summarize_mean_std_and_bad_input() -> None:
    s = summarize([{"ua": 0.5, "wa": 0.6, "macro_f1": 0.4}, {"ua": 0.7, "wa": 0.8, "macro_f1": 0.6}])
    assert s["ua"]["mean"] == pytest.approx(0.6) and s["ua"]["std"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="labels must lie"):
        classification_metrics([0, 3], [0, 1], ["a", "b"])
