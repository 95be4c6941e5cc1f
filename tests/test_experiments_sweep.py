"""Experiments plumbing: sweep jobs and the merge of fold parts, fold scoring with the shared metric
code, and the handcrafted features on a signal of known pitch and loudness."""

from __future__ import annotations

import json

import numpy as np
import pytest

from physioser.experiments.common import score_folds
from physioser.experiments.handcrafted import FEATURE_NAMES, handcrafted_features
from physioser.experiments.sweep import EXPERIMENTS, SUITES, Job, merge_parts, plan_jobs
from physioser.model.metrics import classification_metrics


def _part(root, run: str, fold: int, y_true, y_pred, classes) -> None:
    m = classification_metrics(y_true, y_pred, classes)
    m["fold"] = fold
    res = {"run": run, "config": {"name": "x"}, "class_names": classes,
           "protocol": {"train_corpora": ["C"], "test_corpus": None, "kind": "intra-corpus", "folds": [fold]},
           "corpora": {"C": {"summary": {}, "folds": [m], "confusion": m["confusion"]}},
           "training": [{"fold": fold}], "environment": {"command": f"cmd {fold}", "hardware": "cpu", "git": "abc"}}
    path = root / "_parts" / run / f"fold-{fold}" / run
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(res))


def test_merge_parts_summarises_folds_and_pools_predictions(tmp_path) -> None:
    classes = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    truths, preds = [], []
    for k in range(3):
        y = rng.integers(0, 3, 20)
        p = np.where(rng.random(20) < 0.6, y, rng.integers(0, 3, 20))
        truths.append(y)
        preds.append(p)
        _part(tmp_path, "exp-C", k, y, p, classes)
    assert merge_parts("exp-C", [0, 1, 2, 3], root=tmp_path) is None  # fold 3 missing
    merged = json.loads(merge_parts("exp-C", [0, 1, 2], root=tmp_path).read_text())
    c = merged["corpora"]["C"]
    uas = [classification_metrics(t, p, classes)["ua"] for t, p in zip(truths, preds)]
    assert c["summary"]["ua"]["mean"] == pytest.approx(np.mean(uas)) and c["summary"]["ua"]["std"] == pytest.approx(np.std(uas))
    pooled = classification_metrics(np.concatenate(truths), np.concatenate(preds), classes)
    for key in ("ua", "wa", "macro_f1"):
        assert c["pooled"][key] == pytest.approx(pooled[key])
    assert merged["protocol"]["folds"] == [0, 1, 2] and merged["environment"]["command"] == ["cmd 0", "cmd 1", "cmd 2"]
    assert (tmp_path / "exp-C" / "confusion_C.png").is_file()


def test_jobs_name_runs_and_build_eval_commands(tmp_path) -> None:
    jobs = plan_jobs(["physioser-phase"], ["URDU"], folds={"URDU": [0, 2]}, extra=["train.patience=6"])
    assert [(j.run, j.fold) for j in jobs] == [("physioser-phase-URDU", 0), ("physioser-phase-URDU", 2)]
    cmd = jobs[1].command(tmp_path, tmp_path / "corpora")
    assert cmd[1:4] == ["eval", "-c", "URDU"] and cmd[cmd.index("--folds") + 1] == "2"
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert sets == ["model.vap.components=[f_inst,tau_g]", "train.patience=6"]
    cross = Job(EXPERIMENTS["backbone-only"], "EMOVO", 0, cross=True).command(tmp_path, tmp_path)
    assert cross[cross.index("--test-corpus") + 1] == "EMOVO" and cross.count("-c") == 3 and "EMOVO" not in cross[:cross.index("--test-corpus")]
    assert all(name in EXPERIMENTS for names in SUITES.values() for name in names)
    with pytest.raises(ValueError, match="unknown experiments"):
        plan_jobs(["nope"], ["URDU"], folds={"URDU": [0]})


def test_score_folds_uses_train_and_tests_per_fold() -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(60) % 3
    x = rng.normal(size=(60, 4)) + labels[:, None] * 3.0
    rows = [type("R", (), {"speaker": f"s{i % 6}"})() for i in range(60)]
    plan = [(k, np.flatnonzero(np.arange(60) % 6 // 2 != k), np.array([], dtype=int), {"C": np.flatnonzero(np.arange(60) % 6 // 2 == k)})
            for k in range(3)]

    class Majority:
        def predict(self, x):
            return np.zeros(len(x), dtype=int)

    out = score_folds(x, labels, rows, plan, ["a", "b", "c"])
    assert out["corpora"]["C"]["summary"]["ua"]["mean"] > 0.9 and len(out["corpora"]["C"]["folds"]) == 3
    dumb = score_folds(x, labels, rows, plan, ["a", "b", "c"], fit=lambda *a: (Majority(), None))
    assert dumb["corpora"]["C"]["summary"]["ua"]["mean"] == pytest.approx(1 / 3)


def test_handcrafted_features_see_pitch_and_loudness() -> None:
    sr = 16000
    t = np.arange(int(1.5 * sr)) / sr
    voice = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 6)).astype(np.float32)
    quiet, loud = handcrafted_features(0.05 * voice), handcrafted_features(0.5 * voice)
    f = dict(zip(FEATURE_NAMES, quiet))
    assert len(quiet) == len(FEATURE_NAMES) == 94
    assert 2 ** f["f0_mean"] == pytest.approx(150, rel=0.03) and f["voiced_fraction"] > 0.9
    assert dict(zip(FEATURE_NAMES, loud))["rms_mean"] - f["rms_mean"] == pytest.approx(20.0, abs=0.5)
    assert f["duration"] == pytest.approx(1.5)


def test_tables_mark_rows_trained_before_a_date(tmp_path) -> None:
    import json

    from physioser.experiments.tables import table

    for run, date in (("old-RAVDESS", "2026-11-27T08:00:00Z"), ("new-RAVDESS", "2026-12-05T20:00:00Z")):
        (tmp_path / run).mkdir()
        (tmp_path / run / "results.json").write_text(json.dumps(
            {"corpora": {"RAVDESS": {"folds": [{"fold": 0, "ua": 0.5}]}}, "environment": {"date": date}}))
    lines, _ = table([("old", "old-{corpus}"), ("new", "new-{corpus}")], corpora=["RAVDESS"], root=tmp_path,
                     dated_before="2026-12-05T15:55:00Z")
    assert "| old † | 0.500 ± 0.000 | 0.500 |" in lines and "| new | 0.500 ± 0.000 | 0.500 |" in lines
