"""The recipe report's section on adaptation rules and backbones: runs are grouped by variant,
backbone and corpus set, and differences are paired per fold."""

from __future__ import annotations

from physioser.experiments.recipe import CORPUS_ORDER, rules_section, setting


def _cell(values: list[float]) -> dict:
    return {"folds": list(range(len(values))), "seed_mean": values, "ensemble": values, "seeds": [1] * len(values)}


def test_runs_are_named_by_backbone_and_corpus_set() -> None:
    assert setting("v", {}) == "v"  # runs made before the fields existed: whisper-tiny.en, five corpora
    assert setting("v", {"backbone": "whisper-tiny.en", "corpora": list(CORPUS_ORDER)}) == "v"
    assert setting("v", {"backbone": "whisper-base", "corpora": ["RAVDESS", "EMOVO"]}) == "v · whisper-base · 2 corpora"


def test_rule_section_pairs_folds() -> None:
    protos = {"0": _cell([0.5, 0.6]), "10@1/balanced": _cell([0.7, 0.5]), "10@1/compensated": _cell([0.6, 0.6])}
    scores = {"stats-mlp-reg-fixed": {"RAVDESS": protos, "to-RAVDESS": {k: _cell([0.4]) for k in protos}},
              "stats-mlp-reg-fixed · whisper-base · 4 corpora": {"RAVDESS": protos}}
    text = "\n".join(rules_section(scores))
    assert "| strict, k = 10 | +0.050 ± 0.150 (1/2, worst -0.100) |" in text
    assert "| compensated speaker mean, k = 10 | +0.000 ± 0.100 (1/2, worst -0.100) |" in text
    assert "| Δ base − tiny.en, strict | +0.000 ± 0.000 (0/2, worst +0.000) |" in text
    assert "| whisper-tiny.en, five corpora, strict | 0.400 | — | — | — | — | 0.400 |" in text


def test_the_other_corpora_section_pairs_on_the_folds_trained_with_them() -> None:
    from physioser.experiments.recipe import others_section

    def folds(ids: list[int], values: list[float]) -> dict:
        return {"folds": ids, "seed_mean": values, "ensemble": values, "seeds": [3] * len(values)}

    alone = {"stats-mlp-reg-fixed": {"EMOVO": {"0": folds([0, 1, 2], [0.5, 0.6, 0.9])}}}
    rules = {"stats-mlp-reg-fixed": {"EMOVO": {"10@1/balanced": folds([0, 1, 2], [0.6, 0.6, 0.9])}}}
    more = {"stats-mlp-reg-15ep": {"EMOVO+others": {"0": folds([0, 1], [0.6, 0.5]), "10@1/balanced": folds([0, 1], [0.7, 0.7])}},
            "stats-mlp-reg-15ep-adapt": {"EMOVO+others": {"0": folds([0, 1], [0.5, 0.6]), "10@1/balanced": folds([0, 1], [0.6, 0.5])}}}
    probe = {"EMOVO": {"folds": [0, 1, 2], "ua": [0.5, 0.5, 0.5]}}
    text = "\n".join(others_section(alone, rules, more, probe))
    assert "| one corpus, strict | — | 0.550 ± 0.050 | — | — | — |" in text  # fold 2 left out: not trained with the others
    assert "| Δ + other corpora, strict | — | +0.000 ± 0.100 (1/2, worst -0.100) | — | — | — |" in text
    assert "| Δ + other corpora, adapted k = 10 | — | +0.100 ± 0.000 (2/2, worst +0.100) | — | — | — |" in text
    assert "| Δ + other corpora, offsets in training, adapted k = 10 | — | -0.050 ± 0.050 (0/2, worst -0.100) | — | — | — |" in text
    assert "| Δ + other corpora, strict, against the linear probe | — | +0.050 ± 0.050 (1/2, worst +0.000) | — | — | — |" in text
    assert "| folds × seeds (+ other corpora) | — | 2 × 3 | — | — | — |" in text


def test_new_runs_join_the_stored_scores(tmp_path) -> None:
    import gzip
    import json

    from physioser.experiments.recipe import _scores

    stored = {"stats-mlp-reg-fixed": {"RAVDESS": {"0": _cell([0.5])}, "to-ASED": {"0": _cell([0.1])}}}
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(stored))
    assert _scores([], path) == stored
    run = {"variant": "stats-mlp-reg-fixed", "results": [
        {"task": "to-ASED", "fold": 0, "seed": s, "labels": [0, 1], "logits": {"0": [[2.0, 0.0], [0.0, 2.0]]}} for s in (0, 1)]}
    gz = tmp_path / "run.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(run).encode()))
    merged = _scores([gz], path)
    assert merged["stats-mlp-reg-fixed"]["RAVDESS"] == stored["stats-mlp-reg-fixed"]["RAVDESS"]  # kept
    assert merged["stats-mlp-reg-fixed"]["to-ASED"]["0"]["seed_mean"] == [1.0]  # replaced by the new run
    assert json.loads(path.read_text()) == merged
