"""Evaluation harness: speaker-disjoint fold plans (intra- and cross-corpus), results JSON → REPORT.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from physioser.data.folds import fold_plan
from physioser.evaluate import environment, write_report
from physioser.features import FeatureSet, select_rows
from physioser.model.metrics import classification_metrics, summarize
from tests.conftest import corpus_dir


def _fake_run(name: str, corpus: str, uas: list[float], command: str) -> dict:
    folds = []
    for k, ua in enumerate(uas):
        m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1] if ua < 0.9 else [0, 0, 1, 1], ["a", "b"])
        folds.append(dict(m, ua=ua, fold=k))
    return {
        "run": name, "config": {"name": name, "model": {"branches": ["backbone"], "head": "linear"}, "cpa": {"weight": 0.0}},
        "protocol": {"train_corpora": [corpus], "test_corpus": None, "kind": "intra-corpus", "folds": list(range(len(uas)))},
        "class_names": ["a", "b"], "corpora": {corpus: {"summary": summarize(folds), "folds": folds}},
        "environment": dict(environment(), command=command),
    }


def test_report_tables_name_command_and_hardware(tmp_path) -> None:
    for name, uas in (("base", [0.5, 0.7]), ("better", [0.9, 0.95])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_fake_run(name, "RAVDESS", uas, f"physioser eval --run {name}")))
    report = write_report(tmp_path).read_text()
    assert "## RAVDESS (intra-corpus)" in report
    table = [line for line in report.splitlines() if line.startswith("| better") or line.startswith("| base")]
    assert table[0].startswith("| better") and "0.925 ± 0.025" in table[0]
    assert "0.600 ± 0.100" in table[1]
    assert "`physioser eval --run base`" in report and environment()["hardware"] in report
    assert (tmp_path / "report_ua.png").stat().st_size > 1000
    assert "Experiments" not in report
    (tmp_path / "EXPERIMENTS.md").write_text("# Experiments\n\n## Ablations\n\n| model | UA |\n|---|---|\n| no CPA | 0.5 |\n")
    report = write_report(tmp_path).read_text()
    assert "### Ablations" in report and "| no CPA | 0.5 |" in report  # the experiment tables live in REPORT.md too
    assert "Topic reports" not in report
    (tmp_path / "PHYSIOLOGY.md").write_text("# Physiology\n")
    assert "- [Physiology](PHYSIOLOGY.md)" in write_report(tmp_path).read_text()  # linked, not embedded
    with pytest.raises(FileNotFoundError, match="no runs"):
        write_report(tmp_path / "empty")


def test_runs_trained_on_korean_with_other_corpora_before_its_label_fix_are_marked(tmp_path) -> None:
    for name, date in (("old", "2026-11-27T08:36:26Z"), ("new", "2026-12-06T08:00:00Z")):
        run = _fake_run(name, "URDU", [0.5], f"physioser eval --run {name}")
        run["protocol"].update(train_corpora=["RAVDESS", "KoreanEmotionTTS"], test_corpus="URDU", kind="cross-corpus")
        run["environment"]["date"] = date
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(run))
    lines = write_report(tmp_path).read_text().splitlines()
    assert any(line.startswith("| old † |") for line in lines)
    assert any(line.startswith("| new |") for line in lines)
    assert sum(line.startswith("† run on KoreanEmotionTTS") for line in lines) == 1


@pytest.mark.corpora
def test_fold_plans_are_speaker_disjoint(corpora_root) -> None:
    from physioser.data import read_corpus

    classes = ["neutral", "happy", "angry", "sad"]
    rows, spans = [], {}
    for name in ("RAVDESS", "URDU"):
        own = select_rows(read_corpus(name, corpus_dir(name)), classes)
        spans[name] = np.arange(len(rows), len(rows) + len(own))
        rows += own
    data = FeatureSet(rows=rows, labels=np.zeros(len(rows), dtype=np.int64), class_names=classes)
    spk = data.speakers
    plan = fold_plan(data, spans, ["RAVDESS"])
    assert len(plan) >= 4
    tested = set()
    for _, tr, va, tests in plan:
        te = tests["RAVDESS"]
        assert not set(spk[tr]) & set(spk[te]) and not set(spk[va]) & set(spk[te]) and not set(spk[tr]) & set(spk[va])
        assert len(va) > 0
        tested |= set(te.tolist())
    assert tested == set(spans["RAVDESS"].tolist()), "every utterance is tested exactly once over the folds"
    (_, tr, va, tests), = fold_plan(data, spans, ["RAVDESS"], test_corpus="URDU")
    assert np.array_equal(tests["URDU"], spans["URDU"]) and not set(spk[tr]) & set(spk[va])
    assert set(tr.tolist()) | set(va.tolist()) == set(spans["RAVDESS"].tolist())
