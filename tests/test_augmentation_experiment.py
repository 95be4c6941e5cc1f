"""The augmentation experiment's training and scoring on a small synthetic pack (no audio, no backbone)."""

from __future__ import annotations

import numpy as np

from physioser.experiments.augmentation import AUGMENTED, EVAL_CONDITIONS, _job, score, table


def _pack(n_per_class: int = 12, layers: int = 2, dim: int = 6) -> dict:
    """Two classes whose features differ in their means; each condition moves every clip by its own offset."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], n_per_class)
    rows = [{"corpus": "C", "speaker": f"s{i % 6}", "canonical": ("happy", "sad")[y], "path": f"{i}.flac"} for i, y in enumerate(labels)]
    mean = (rng.normal(size=(len(rows), layers, dim)) + 2.0 * labels[:, None, None]).astype(np.float16)
    std = np.abs(rng.normal(1.0, 0.1, size=mean.shape)).astype(np.float16)
    test = [i for i, r in enumerate(rows) if r["speaker"] in ("s0", "s1")]
    train = [i for i in range(len(rows)) if i not in test]
    meta = {"num_layers": layers, "dim": dim, "corpora": ["C"], "rows": rows, "conditions": list(EVAL_CONDITIONS),
            "tasks": {"C": {"kind": "intra", "classes": ["happy", "sad"], "folds": [{"fold": 0, "train": train, "val": [], "test": {"C": test}}]}}}
    pack = {"mean": mean, "std": std, "meta": meta}
    for k, name in enumerate([AUGMENTED, *EVAL_CONDITIONS], start=1):
        pack[f"mean_{name}"] = (mean + 0.1 * k).astype(np.float16)
        pack[f"std_{name}"] = std
    return pack


def test_augmented_training_adds_the_copies_and_both_are_tested_under_every_condition():
    pack = _pack()
    clean, augmented = (_job(pack, "C", 0, 0, a) for a in (False, True))
    test = pack["meta"]["tasks"]["C"]["folds"][0]["test"]["C"]
    assert (clean["trained_rows"], augmented["trained_rows"]) == (16, 32)
    for r in (clean, augmented):
        assert set(r["logits"]) == {"clean", *EVAL_CONDITIONS}
        assert all(np.asarray(v).shape == (len(test), 2) for v in r["logits"].values())
        assert r["labels"] == [0 if pack["meta"]["rows"][i]["canonical"] == "happy" else 1 for i in test]
    scores = score([clean, augmented, {**clean, "fold": 1}, {**augmented, "seed": 1}])  # trained one way only: left out
    assert set(scores["C"]) == {"clean", AUGMENTED} and scores["C"]["clean"]["clean"]["folds"] == [0]
    text = table(scores)
    assert "| C | augmented − clean, per fold" in text and text.count("\n") == 5
