"""Acceptance on the real corpora in ../shared/corpora (skipped, saying why, where absent)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from physioser.data import PROTOCOL_DIR, load_protocol, make_folds, make_protocol, read_corpus
from physioser.data.scan import scan_corpus
from tests.conftest import corpus_dir

pytestmark = pytest.mark.corpora

EXPECTED = {
    # name: (rows, speakers, canonical counts)
    "RAVDESS": (1440, 24, {"neutral": 96, **{e: 192 for e in ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")}}),
    "EMOVO": (588, 6, {e: 84 for e in ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")}),
    "URDU": (400, 29, {e: 100 for e in ("neutral", "happy", "angry", "sad")}),
    "KoreanEmotionTTS": (300, 15, {e: 75 for e in ("neutral", "happy", "angry", "sad")}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_corpus_counts(name):
    rows = read_corpus(name, corpus_dir(name))
    n_rows, n_speakers, counts = EXPECTED[name]
    assert len(rows) == n_rows
    assert len({r.speaker for r in rows}) == n_speakers
    assert Counter(r.canonical for r in rows) == counts
    assert all(r.gender in ("F", "M") for r in rows)


def test_ravdess_scan_reports_actor_07_duplicate_pair():
    report = scan_corpus("RAVDESS", corpus_dir("RAVDESS"), progress=False)
    assert len(report.rows) == 1440 and not report.unmatched and not report.unreadable
    pairs = [sorted(p.name for p in group) for group in report.duplicates + report.near_duplicates]
    assert pairs == [["03-01-03-01-02-01-07.flac", "03-01-03-01-02-02-07.flac"]]
    assert {p.parent.name for group in report.near_duplicates for p in group} == {"Actor_07"}
    stats = report.duration_stats()
    assert stats["files"] == 1440 and 2.5 < stats["min_s"] < stats["median_s"] < stats["max_s"] < 6.0


def test_korean_folds_share_neither_speakers_nor_sentences():
    rows = read_corpus("KoreanEmotionTTS", corpus_dir("KoreanEmotionTTS"))
    folds = make_folds(rows, "KoreanEmotionTTS", protocol=PROTOCOL_DIR / "KoreanEmotionTTS.yaml")
    test_count = np.zeros(len(rows), dtype=int)
    for fold in folds:
        test_count[fold.test] += 1
        for field in ("speaker", "sentence"):
            test_values = {getattr(rows[i], field) for i in fold.test}
            assert not {getattr(rows[i], field) for i in fold.train} & test_values
            assert not {getattr(rows[i], field) for i in fold.val} & test_values
        assert {rows[i].canonical for i in fold.test} == {"neutral", "happy", "angry", "sad"}
        assert len(fold.train) > len(fold.discarded)
    assert (test_count == 1).all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_protocol_reproduces(name):
    rows = read_corpus(name, corpus_dir(name))
    saved = load_protocol(PROTOCOL_DIR / f"{name}.yaml")
    assert make_protocol(rows, name).to_dict() == saved.to_dict(), "regenerate with `physioser corpora folds`"
    folds = saved.apply(rows)  # strict: counts recorded in the file must reproduce
    for fold in folds:
        assert not {rows[i].speaker for i in fold.train} & {rows[i].speaker for i in fold.test}


def test_committed_protocol_on_four_class_subset():
    rows = read_corpus("RAVDESS", corpus_dir("RAVDESS"))
    keep = np.array([i for i, r in enumerate(rows) if r.canonical in ("neutral", "happy", "angry", "sad")])
    path = PROTOCOL_DIR / "RAVDESS.yaml"
    whole, part = make_folds(rows, "RAVDESS", protocol=path), make_folds([rows[i] for i in keep], "RAVDESS", protocol=path)
    assert len(keep) == 672
    for a, b in zip(whole, part):
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(keep[getattr(b, split)], np.intersect1d(getattr(a, split), keep))
