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
