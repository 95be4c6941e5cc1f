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


def test_the_reference_section_pairs_each_model_with_itself() -> None:
    from physioser.experiments.recipe import reference_section

    one = {"0": _cell([0.5, 0.6]), "10@1/balanced": _cell([0.6, 0.6]), "10@1/referenced": _cell([0.8, 0.5])}
    more = {"0": _cell([0.4, 0.4]), "10@1/balanced": _cell([0.3, 0.4]), "10@1/referenced": _cell([0.5, 0.6])}
    text = "\n".join(reference_section({"stats-mlp-reg-fixed": {"URDU": one}, "stats-mlp-reg-15ep": {"URDU+others": more}}))
    assert "| Δ one corpus, referenced − balanced, k = 10 | — | — | +0.050 ± 0.150 (1/2, worst -0.100) | — | — |" in text
    assert "| Δ + other corpora, referenced − strict, k = 10 | — | — | +0.150 ± 0.050 (2/2, worst +0.100) | — | — |" in text
    assert "| + other corpora, balanced, k = all | — | — | — | — | — |" in text  # not run: no cell invented
    assert "| + other corpora, folds × seeds | — | — | 2 × 1 | — | — |" in text


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


def test_the_fine_tuning_section_pairs_each_variant_with_its_frozen_control() -> None:
    from physioser.experiments.recipe import finetune_section

    def folds(values: list[float], seeds: int = 3) -> dict:
        return {"folds": [0, 1], "seed_mean": values, "ensemble": values, "seeds": [seeds] * len(values)}

    scores = {"ft-all": {"RAVDESS": {"0": folds([0.5, 0.7], 2)}}, "ft-top2": {"RAVDESS": {"0": folds([0.8, 0.7])}},
              "ft-frozen": {"RAVDESS": {"0": folds([0.7, 0.7])}},
              "ft-top2 · whisper-base": {"RAVDESS": {"0": folds([0.9, 0.8])}}, "ft-frozen · whisper-base": {"RAVDESS": {"0": folds([0.8, 0.8])}}}
    recipe = {"RAVDESS": {"0": {"folds": [0, 1, 2], "seed_mean": [0.7, 0.6, 0.1], "seeds": [3, 3, 3]}}}
    probe = {"RAVDESS": {"folds": [0, 1, 2], "ua": [0.6, 0.6, 0.0]}}
    text = "\n".join(finetune_section(scores, recipe, probe))
    rows = [line.split(" |")[0] for line in text.splitlines() if line.startswith("| ft-")]
    assert rows[:3] == ["| ft-frozen", "| ft-top2", "| ft-all"]  # the control first, every block last
    assert "| ft-top2 | 0.750 ± 0.050 (2 × 3) |" in text
    assert "| ft-all | 0.600 ± 0.100 (2 × 2) |" in text
    assert "| `stats-mlp-reg-fixed` (the recipe, cached statistics) | 0.650 ± 0.050 |" in text  # on the fine-tuned folds only
    assert "| ft-top2 − ft-frozen | +0.050 ± 0.050 (1/2, worst +0.000) |" in text
    assert rows[3:5] == ["| ft-frozen · whisper-base", "| ft-top2 · whisper-base"]  # another backbone after, with its own control
    assert "| ft-top2 · whisper-base − ft-frozen · whisper-base | +0.050 ± 0.050 (1/2, worst +0.000) |" in text
    assert "| ft-frozen − the recipe (reproduction) | +0.050 ± 0.050 (1/2, worst +0.000) |" in text
    assert "| ft-top2 − linear probe | +0.150 ± 0.050 (2/2, worst +0.100) |" in text


def test_a_recipe_job_trains_on_its_fold_and_stores_strict_and_adapted_logits(tmp_path, monkeypatch) -> None:
    import json

    import numpy as np

    from physioser.experiments import recipe

    rng = np.random.default_rng(0)
    classes = ["angry", "neutral"]
    rows = [{"corpus": "C", "speaker": f"s{i // 6}", "canonical": classes[i % 2], "path": f"{i}.wav"} for i in range(30)]
    signal = np.array([i % 2 for i in range(30)], np.float32)[:, None, None]
    fold = {"fold": 0, "train": list(range(18)), "val": list(range(18, 24)), "test": {"C": list(range(24, 30))}}
    meta = {"backbone": "whisper-tiny.en", "num_layers": 2, "dim": 8, "corpora": ["C"], "rows": rows,
            "tasks": {"C": {"kind": "intra", "classes": classes, "folds": [fold]}}}
    path = tmp_path / "pack.npz"
    np.savez_compressed(path, mean=(rng.normal(size=(30, 2, 8)) + 2 * signal).astype(np.float16),
                        std=np.abs(rng.normal(size=(30, 2, 8))).astype(np.float16), meta=np.array(json.dumps(meta)))
    monkeypatch.setenv("RECIPE_DEVICE", "cpu")
    recipe._PACK.clear()
    try:
        out = recipe._job(("stats-mlp-reg-fixed", recipe.VARIANTS["stats-mlp-reg-fixed"] + ["train.epochs=5"], "C", 0, 1,
                           str(path), str(tmp_path / "w")))
    finally:
        recipe._PACK.clear()
    assert out["rows"] == list(range(24, 30)) and out["labels"] == [0, 1] * 3 and out["seed"] == 1
    assert {"0", "10@1/balanced", "all@16/plain"} <= set(out["logits"]) and len(out["logits"]["0"]) == 6
    assert recipe.fold_rows(meta, "C", 0)[4].tolist() == list(range(30))


def test_corpus_standardisation_reads_no_label_and_puts_each_corpus_in_its_own_frame() -> None:
    import numpy as np

    from physioser.experiments.recipe import corpus_standardised

    rng = np.random.default_rng(0)
    corpora = ["A"] * 20 + ["B"] * 12
    labels = ["angry", "sad", "happy", "neutral"]
    pack = {"mean": (rng.normal(size=(32, 2, 4)) * 3 + np.repeat([[0.0], [5.0]], [20, 12], 0)[:, :, None]).astype(np.float16),
            "std": np.abs(rng.normal(size=(32, 2, 4))).astype(np.float16),
            "meta": {"rows": [{"corpus": c, "canonical": labels[i % 4]} for i, c in enumerate(corpora)]}}
    shuffled = dict(pack, meta={"rows": [dict(r, canonical=labels[j % 4]) for r, j in zip(pack["meta"]["rows"], rng.permutation(32))]})
    for scale in (True, False):
        out = corpus_standardised(pack, scale)
        np.testing.assert_array_equal(out["mean"], corpus_standardised(shuffled, scale)["mean"])
        for rows in (slice(0, 20), slice(20, 32)):
            np.testing.assert_allclose(out["mean"][rows].mean(0), 0, atol=1e-5)
            np.testing.assert_allclose(out["std"][rows].std(0), 1 if scale else pack["std"][rows].astype(np.float32).std(0), rtol=1e-3)
    assert pack["mean"].dtype == np.float16  # the pack itself is left as it was


def _runs(path, variant: str, logits: dict, labels: list[int], task: str = "RAVDESS"):
    import gzip
    import json

    results = [{"task": task, "fold": 0, "seed": s, "labels": labels, "logits": {"0": lg, "10@1/balanced": lg}}
               for s, lg in logits.items()]
    path.write_bytes(gzip.compress(json.dumps({"variant": variant, "results": results}).encode()))
    return path


def test_two_backbones_are_ensembled_one_seed_each_against_two_seeds_of_one(tmp_path) -> None:
    import pytest

    from physioser.experiments.recipe import backbone_ensemble, ensemble_section

    labels = [0, 0, 1, 1]
    sure, unsure = 4.0, 0.5
    # backbone a is right on the first two rows only, b on the last two; b's seed 1 with less confidence
    a = {s: [[sure, 0], [sure, 0], [sure, 0], [sure, 0]] for s in (0, 1)}
    b = {0: [[0, sure], [0, sure], [0, sure], [0, sure]], 1: [[0, unsure], [0, unsure], [0, sure], [0, sure]]}
    a[1][2] = [0, 2 * sure]  # a's seed 1 also gets row 2 right, confidently
    cells = backbone_ensemble([_runs(tmp_path / "a.json.gz", "v", a, labels)], [_runs(tmp_path / "b.json.gz", "v", b, labels)])
    get = lambda name: cells[name]["RAVDESS"]["0"]["seed_mean"][0]  # noqa: E731
    assert get("a") == pytest.approx((0.5 + 0.75) / 2) and get("b") == pytest.approx(0.5)
    assert get("a×2") == pytest.approx(0.75)  # row 2: (sure, 0) + (0, 2 sure) favours class 1
    assert get("b×2") == pytest.approx(0.5)
    assert get("a+b") == pytest.approx((0.5 + 0.75) / 2)  # a0 + b0 tie everywhere (argmax 0); a1 + b1 tie on row 3 only
    text = "\n".join(ensemble_section(cells, {"RAVDESS": {"folds": [0], "ua": [0.5]}}))
    assert "| whisper-tiny.en + whisper-base, strict | 0.625 ± 0.000 |" in text
    assert "| Δ whisper-tiny.en + whisper-base − whisper-tiny.en, two seeds, strict | -0.125 ± 0.000 (0/1, worst -0.125) |" in text
    assert "| Δ whisper-tiny.en + whisper-base − linear probe (whisper-tiny.en), strict | +0.125 ± 0.000 (1/1, worst +0.125) |" in text
    loco = backbone_ensemble([_runs(tmp_path / "a.json.gz", "v", a, labels), _runs(tmp_path / "la.json.gz", "v", a, labels, "to-EMOVO")],
                             [_runs(tmp_path / "b.json.gz", "v", b, labels), _runs(tmp_path / "lb.json.gz", "v", b, labels, "to-EMOVO")])
    text = "\n".join(ensemble_section(loco, {}))
    assert "| whisper-tiny.en, two seeds, strict | 0.750 | 0.750 | -0.125 ± 0.000 (0/1) |" in text
    assert "| whisper-tiny.en + whisper-base, strict | 0.625 | 0.625 |  |" in text
    with pytest.raises(ValueError, match="different rows"):
        backbone_ensemble([_runs(tmp_path / "a.json.gz", "v", a, labels)], [_runs(tmp_path / "c.json.gz", "v", b, [1, 1, 0, 0])])
