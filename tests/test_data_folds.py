"""Fold protocols: property tests (hypothesis) and protocol files as data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from physioser.data import FOUR_CLASSES, Protocol, ProtocolError, Row, load_protocol, make_folds, make_protocol


def make_rows(spec: list[tuple[int, int, int]], with_partitions: bool = False) -> list[Row]:
    """Rows from (speaker, label index, sentence) triples."""
    return [
        Row(
            path=Path(f"/x/{i}.wav"),
            corpus="EMOVO",
            language="it",
            label=FOUR_CLASSES[label],
            canonical=FOUR_CLASSES[label],
            speaker=f"s{speaker}",
            gender="FM"[speaker % 2],
            sentence=f"t{sentence}",
            partition=f"Session{speaker % 3 + 1}" if with_partitions else None,
        )
        for i, (speaker, label, sentence) in enumerate(spec)
    ]


def field_of(rows, indices, name):
    return {getattr(rows[i], name) for i in indices}


def check_partition(rows, folds):
    """Each fold splits the rows into train/val/test/discarded, and the test folds tile the rows."""
    test_count = np.zeros(len(rows), dtype=int)
    for fold in folds:
        parts = np.concatenate([fold.train, fold.val, fold.test, fold.discarded])
        assert sorted(parts.tolist()) == list(range(len(rows))), "every row in exactly one part of each fold"
        assert len(fold.test) > 0
        test_count[fold.test] += 1
    assert (test_count == 1).all(), "every row is in exactly one test fold"


rows_strategy = st.lists(
    st.tuples(st.integers(0, 11), st.integers(0, 3), st.integers(0, 9)), min_size=8, max_size=80
).filter(lambda spec: len({s for s, _, _ in spec}) >= 2)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=rows_strategy, seed=st.integers(0, 3), n_folds=st.integers(2, 6))
def test_speaker_folds_properties(spec, seed, n_folds):
    rows = make_rows(spec)
    k = min(n_folds, len({r.speaker for r in rows}))
    folds = make_folds(rows, "EMOVO", scheme="speaker", n_folds=k, seed=seed)
    assert len(folds) == k
    check_partition(rows, folds)
    for fold in folds:
        test_speakers = field_of(rows, fold.test, "speaker")
        assert not field_of(rows, fold.train, "speaker") & test_speakers, "no speaker in both train and test"
        assert not field_of(rows, fold.val, "speaker") & test_speakers
        assert not field_of(rows, fold.train, "speaker") & field_of(rows, fold.val, "speaker")
        assert len(fold.discarded) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=rows_strategy, seed=st.integers(0, 3))
def test_speaker_sentence_folds_properties(spec, seed):
    rows = make_rows(spec)
    n_sentences = len({r.sentence for r in rows})
    assume(n_sentences >= 2)
    folds = make_folds(rows, "KoreanEmotionTTS", n_folds=2, n_sentence_folds=min(3, n_sentences), seed=seed)
    assert len(folds) == 2 * min(3, n_sentences)
    test_count = np.zeros(len(rows), dtype=int)
    for fold in folds:
        test_count[fold.test] += 1
        for name in ("speaker", "sentence"):
            test_values = field_of(rows, fold.test, name)
            assert not field_of(rows, fold.train, name) & test_values, f"no {name} in both train and test"
            assert not field_of(rows, fold.val, name) & test_values
        assert not field_of(rows, fold.train, "speaker") & field_of(rows, fold.val, "speaker")
    assert (test_count == 1).all(), "every row is in exactly one test fold"


def test_folds_are_deterministic_and_seeded():
    rows = make_rows([(s, (s + i) % 4, i % 5) for s in range(10) for i in range(8)])
    a = make_protocol(rows, "EMOVO", scheme="speaker", seed=1).to_dict()
    b = make_protocol(rows, "EMOVO", scheme="speaker", seed=1).to_dict()
    c = make_protocol(rows, "EMOVO", scheme="speaker", seed=2).to_dict()
    assert a == b
    assert a != c


def test_folds_are_class_balanced_where_speakers_allow():
    # speakers 0-4 speak only 'neutral', 5-9 only 'sad': each test fold should get both classes
    rows = make_rows([(s, 0 if s < 5 else 3, i) for s in range(10) for i in range(6)])
    for fold in make_folds(rows, "EMOVO", scheme="speaker", n_folds=5):
        assert field_of(rows, fold.test, "canonical") == {"neutral", "sad"}


def test_leave_one_partition_out():
    rows = make_rows([(s, i % 4, i) for s in range(6) for i in range(4)], with_partitions=True)
    folds = make_folds(rows, "IEMOCAP")
    assert [f.name for f in folds] == ["Session1", "Session2", "Session3"]
    check_partition(rows, folds)
    for fold in folds:
        assert len(field_of(rows, fold.test, "partition")) == 1
        assert not field_of(rows, fold.train, "speaker") & field_of(rows, fold.test, "speaker")


def test_official_split():
    rows = [
        Row(Path(f"/m/{i}.wav"), "MSP-Podcast", "en", "N", "neutral", "Unknown", None, None, split)
        for i, split in enumerate(["Train", "Train", "Development", "Test1", "Test2"])
    ]
    (fold,) = make_folds(rows, "MSP-Podcast")
    assert fold.train.tolist() == [0, 1] and fold.val.tolist() == [2] and fold.test.tolist() == [3]
    assert fold.discarded.tolist() == [4]


def test_protocol_round_trip_and_strict_apply(tmp_path):
    rows = make_rows([(s, i % 4, i % 5) for s in range(8) for i in range(6)])
    protocol = make_protocol(rows, "KoreanEmotionTTS", n_folds=2, n_sentence_folds=5)
    path = protocol.save(tmp_path / "p.yaml")
    loaded = load_protocol(path)
    assert loaded.to_dict() == protocol.to_dict()
    for a, b in zip(protocol.apply(rows), loaded.apply(rows)):
        for part in ("train", "val", "test", "discarded"):
            np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    folds = make_folds(rows, "KoreanEmotionTTS", protocol=path)
    assert len(folds) == 10 and sum(len(f.discarded) for f in folds) > 0
    # a class subset of the same corpus gets the same folds, restricted to its rows
    subset = [r for r in rows if r.canonical in ("neutral", "sad")]
    keep = np.array([i for i, r in enumerate(rows) if r.canonical in ("neutral", "sad")])
    for whole, part in zip(loaded.apply(rows), loaded.apply(subset)):
        np.testing.assert_array_equal(keep[part.test], np.intersect1d(whole.test, keep))
        np.testing.assert_array_equal(keep[part.train], np.intersect1d(whole.train, keep))
    # rows the protocol does not know (another copy of the corpus) are refused
    stranger = [Row(Path("/x/new.wav"), "EMOVO", "it", "sad", "sad", "s99", "F", "t0")]
    with pytest.raises(ProtocolError, match=r"1 of 47 rows fall in no test fold .*s99/t0"):
        loaded.apply(rows[:-2] + stranger)
    with pytest.raises(ProtocolError, match=r"rows give .* the protocol recorded"):
        loaded.apply(rows[:-1] + stranger)  # as many rows as recorded, but not the same ones
    with pytest.raises(ProtocolError, match="made on 48 rows, these are 49"):
        loaded.apply(rows + stranger)
    assert len(loaded.apply(rows + stranger, strict=False)) == 10
    tampered = protocol.to_dict()
    tampered["folds"][0]["counts"]["test"] += 1
    with pytest.raises(ProtocolError, match="fold spk0-sent0: rows give"):
        Protocol.from_dict(tampered).apply(rows)


@pytest.mark.parametrize(
    "content,message",
    [
        ("just text", "not a protocol"),
        ("corpus: X\n", "missing or wrong field 'folds'"),
        (
            "corpus: X\nscheme: speaker\ndisjoint: [speaker]\nn_rows: 1\nfolds: [{name: f, test: {colour: [a]}}]\n",
            "unknown selector fields",
        ),
        ("corpus: X\nscheme: random\ndisjoint: [speaker]\nn_rows: 1\nfolds: []\n", "scheme 'random'"),
        ("a: [unclosed", "cannot read protocol"),
    ],
)
def test_malformed_protocol_files(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ProtocolError, match=message):
        load_protocol(path)


def test_impossible_folds_are_refused():
    one_speaker = make_rows([(0, i % 4, i) for i in range(8)])
    with pytest.raises(ProtocolError, match="at least 2"):
        make_protocol(one_speaker, "EMOVO")
    two = make_rows([(s, i % 4, i) for s in range(2) for i in range(4)])
    with pytest.raises(ProtocolError, match="3 folds impossible with 2 speakers"):
        make_protocol(two, "EMOVO", n_folds=3)
    no_sentence = [Row(Path("/a.wav"), "K", "ko", "neutral", "neutral", f"s{i}") for i in range(4)]
    with pytest.raises(ProtocolError, match="sentence id on every row"):
        make_protocol(no_sentence, "KoreanEmotionTTS")
    with pytest.raises(ProtocolError, match="unknown fold scheme"):
        make_protocol(two, "EMOVO", scheme="random")


def test_two_speakers_get_no_validation_split_and_say_so():
    rows = make_rows([(s, i % 4, i) for s in range(2) for i in range(8)])
    protocol = make_protocol(rows, "TESS")
    assert len(protocol.folds) == 2
    assert all(not f.val for f in protocol.folds)
    assert any("no speaker-disjoint validation split" in note for note in protocol.notes)
    assert yaml.safe_load(yaml.safe_dump(protocol.to_dict()))["scheme"] == "speaker"
