"""The physiology tables: paired per-fold differences over seed-averaged folds, attribution marked
only above twice its standard error, baselines read from committed results."""

from __future__ import annotations

import json

from physioser.experiments.physiology import tables


def _record(variant, corpus, fold, seed, ua, without=None):
    r = {"variant": variant, "backbone": "fbank", "corpus": corpus, "fold": fold, "seed": seed, "ua": ua,
         "best_epoch": 1, "epochs": 2, "curve": [{"epoch": 1, "train_ua": 0.5, "val_ua": 0.4}, {"epoch": 2, "train_ua": 0.6, "val_ua": 0.3}]}
    if without is not None:
        r["without"] = without
    return r


def test_tables_pair_folds_and_mark_attribution(tmp_path):
    records = []
    for fold in range(4):
        for seed in range(2):
            records.append(_record("no-branch", "URDU", fold, seed, 0.50))
            # the branch helps on folds 0-2 only; its quartet matters (M) on every run, rho never
            ua = 0.60 if fold < 3 else 0.40
            records.append(_record("physioser", "URDU", fold, seed, ua, {"M": ua - 0.10 - 0.01 * seed, "rho": ua + 0.01 * (-1) ** seed,
                                                                         "f_inst": ua, "tau_g": ua, "all": ua - 0.2}))
    records.append({"variant": "physioser", "corpus": "URDU", "fold": 9, "seed": 0, "error": "boom"})  # failed jobs are left out
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    baselines = tmp_path / "baselines"
    (baselines / "handcrafted-URDU").mkdir(parents=True)
    (baselines / "handcrafted-URDU" / "results.json").write_text(json.dumps({"corpora": {"URDU": {"folds": [{"fold": k, "ua": 0.3} for k in range(4)]}}}))
    text = tables([path], baselines)
    physioser_row = next(line for line in text.splitlines() if line.startswith("| physioser |"))
    assert "+0.050 ± 0.087 (3/4 better)" in physioser_row  # (3 x 0.1 - 0.1) / 4 over seed-averaged folds
    attribution = next(line for line in text.splitlines() if line.startswith("| physioser | all |"))
    m, rho = attribution.split("|")[4], attribution.split("|")[5]
    assert m.strip().endswith("*") and not rho.strip().endswith("*")
    assert "fbank" in text


def test_speaker_offsets_removed_uses_k_utterances_of_each_speaker():
    import numpy as np

    from physioser.experiments.physiology import speaker_offsets_removed

    rng = np.random.default_rng(0)
    speakers = np.array(["a"] * 5 + ["b"] * 20)
    x = rng.normal(size=(25, 3)) + np.where(speakers == "a", 5.0, -5.0)[:, None]
    everything = speaker_offsets_removed(x, speakers, k=100)
    for s in "ab":
        np.testing.assert_allclose(everything[speakers == s].mean(0), 0.0, atol=1e-12)
    some = speaker_offsets_removed(x, speakers, k=4, seed=1)
    np.testing.assert_allclose(some[speakers == "a"] - x[speakers == "a"], np.broadcast_to(some[0] - x[0], (5, 3)))  # one offset per speaker
    b = some[speakers == "b"]
    assert abs(b.mean()) < 1.5 and not np.allclose(b.mean(0), 0.0)  # offset from 4 of 20 utterances only
    np.testing.assert_array_equal(some, speaker_offsets_removed(x, speakers, k=4, seed=1))
