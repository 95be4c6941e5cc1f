"""Leave-one-corpus-out jobs of the physiology experiment: four classes across packs, the held-out
corpus only in the test set, validation speakers apart from training speakers."""

from __future__ import annotations

import numpy as np
import pytest

from physioser.experiments import physiology


def _write_pack(folder, corpus, class_names, speakers, frames=40, seed=0):
    rng = np.random.default_rng(seed)
    n = len(speakers)
    labels = np.arange(n) % len(class_names)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / f"{corpus}.npz", quartets=rng.integers(-20, 20, size=(4, 32, n * frames)).astype(np.int8),
        lengths=np.full(n, frames), backbone=rng.normal(size=(n, 5, 16)).astype(np.float16), backbone_name=np.array("test"),
        labels=labels, speakers=np.array(speakers), class_names=np.array(class_names), folds=np.array([0]),
        fold0_train=np.arange(n // 2), fold0_val=np.arange(n // 2, n // 2 + 1), fold0_test=np.arange(n // 2 + 1, n))


@pytest.fixture()
def packs(tmp_path):
    physiology._PACKS.clear()
    eight = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    _write_pack(tmp_path / "a", "RAVDESS", eight, [f"{k:02d}" for k in range(8) for _ in range(8)])
    _write_pack(tmp_path / "b", "URDU", ["neutral", "happy", "sad", "angry"], [f"S{k}" for k in range(8) for _ in range(4)], seed=1)
    _write_pack(tmp_path / "b", "EMOVO", ["neutral", "happy", "sad", "angry", "fearful"], [f"m{k}" for k in range(6) for _ in range(5)], seed=2)
    yield (str(tmp_path / "a"), str(tmp_path / "b"))
    physiology._PACKS.clear()


def test_leave_one_out_maps_to_four_classes_and_holds_the_corpus_out(packs):
    d = physiology._leave_one_out(packs, "URDU")
    assert list(d["class_names"]) == ["neutral", "happy", "angry", "sad"]
    # RAVDESS keeps neutral/happy/sad/angry (4 of its 8 classes), EMOVO 4 of 5, URDU all 32
    assert len(d["labels"]) == 64 // 2 + 24 + 32 and len(d["quartet_list"]) == len(d["labels"]) == len(d["backbone"])
    test, train, val = d["fold0_test"], d["fold0_train"], d["fold0_val"]
    assert len(test) == 32 and set(test).isdisjoint(train) and set(test).isdisjoint(val)
    assert len(train) + len(val) + len(test) == len(d["labels"])
    urdu = physiology._load(packs, "URDU")
    names = list(d["class_names"])
    assert [names[k] for k in d["labels"][test]] == [str(urdu["class_names"][k]) for k in urdu["labels"]]
    assert d["training_corpora"] == ["EMOVO", "RAVDESS"]


def test_leave_one_out_needs_the_corpus_and_another(packs):
    with pytest.raises(ValueError, match="IEMOCAP"):
        physiology._leave_one_out(packs, "IEMOCAP")
    with pytest.raises(ValueError, match="another corpus"):
        physiology._leave_one_out(packs[:1], "RAVDESS")


def test_a_leave_one_out_job_trains_and_reports_attribution(packs):
    record = physiology.run_job(packs, "physioser", "to-EMOVO", 0, 0, "cpu")
    assert record["corpus"] == "to-EMOVO" and 0.0 <= record["ua"] <= 1.0
    assert set(record["without"]) == {*physiology.COMPONENTS, "all"}


def test_leave_one_out_tables_spread_over_seeds(tmp_path):
    import json

    records = []
    for seed in range(3):
        for variant, ua in (("no-branch", 0.40), ("physioser", 0.40 + 0.01 * seed)):
            records.append({"variant": variant, "backbone": "whisper-tiny.en", "corpus": "to-URDU", "fold": 0, "seed": seed, "ua": ua,
                            "best_epoch": 1, "epochs": 1, "curve": [{"epoch": 1, "train_ua": 0.5, "val_ua": 0.4}]})
    path = tmp_path / "loco.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    text = physiology.tables([path], tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| physioser |"))
    assert "0.410 ± 0.008 (3)" in row and "+0.010 ± 0.008 (2/3 better)" in row
    assert "to-URDU" in text and "mean ± std over seeds" in text
