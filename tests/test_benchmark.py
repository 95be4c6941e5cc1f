"""EmoBox protocols (conversion, checks, folds on the real RAVDESS, EMOVO, URDU and ASED) and `physioser benchmark`
(discovery, absent corpora, resuming without redoing finished folds)."""

from __future__ import annotations

from dataclasses import replace
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from physioser.data import ProtocolError, read_corpus
from physioser.data.emobox import check, convert, emobox_folds, load_emobox
from tests.conftest import corpus_dir
from tests.test_data_readers import write_audio

RAVDESS_CODES = {"01": "Neutral", "03": "Happy", "04": "Sad", "05": "Angry"}


def _ravdess_tree(root: Path, actors: list[str], emotions=("01", "03", "04", "05"), statements=("01", "02")) -> list[Path]:
    paths = []
    for actor in actors:
        for i, emotion in enumerate(emotions):
            for statement in statements:
                path = root / f"Actor_{actor}" / f"03-01-{emotion}-01-{statement}-01-{actor}.wav"
                write_audio(path, seed=len(paths), seconds=0.3)
                paths.append(path)
    return paths


def _emobox_folder(folder: Path, dataset: str, rows, test_of, emo_of=None) -> Path:
    """A folder in EmoBox's data/<dataset>/ layout: fold jsonl files, label map, stm with speakers."""
    emo_of = emo_of or (lambda r: RAVDESS_CODES[r.label])
    folder.mkdir(parents=True)
    (folder / "label_map.json").write_text(json.dumps({v: v for v in RAVDESS_CODES.values()}))
    (folder / "data.seg.wrd.stm").write_text("".join(f"{dataset}-{r.path.stem} 1 {r.speaker} 0 1 <> {emo_of(r)}\n" for r in rows))
    for k, test in enumerate(test_of, 1):
        fold = folder / f"fold_{k}"
        fold.mkdir()
        line = lambda r: json.dumps({"key": f"{dataset}-{r.path.stem}", "emo": emo_of(r), "wav": str(r.path)}) + "\n"
        (fold / f"{dataset}_test_fold_{k}.jsonl").write_text("".join(line(r) for r in rows if test(r)))
        (fold / f"{dataset}_train_fold_{k}.jsonl").write_text("".join(line(r) for r in rows if not test(r)))
    return folder


def _rows(root: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_corpus("RAVDESS", root)


@pytest.mark.corpora
@pytest.mark.parametrize("name, n_folds", [("RAVDESS", 6), ("EMOVO", 6)])
def test_emobox_protocol_reproduces_its_folds_on_the_real_corpus(name, n_folds):
    rows = read_corpus(name, corpus_dir(name))
    protocol = load_emobox(name)
    result = check(protocol, rows)
    assert result.exact, result.summary()
    folds = emobox_folds(protocol, rows)
    assert len(folds) == n_folds
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested) == list(range(len(rows)))  # every EmoBox test utterance is present, once
    for fold, spec in zip(folds, protocol.folds):
        test_speakers = {rows[i].speaker for i in fold.test}
        assert test_speakers == set(spec.speakers)
        assert not test_speakers & {rows[i].speaker for i in np.concatenate([fold.train, fold.val])}
        assert not {rows[i].speaker for i in fold.train} & {rows[i].speaker for i in fold.val}
        labels = {}
        for i in fold.test:
            labels[rows[i].canonical] = labels.get(rows[i].canonical, 0) + 1
        assert labels == spec.counts


@pytest.mark.corpora
@pytest.mark.parametrize("name, n_test", [("URDU", 100), ("ASED", 616)])
def test_emobox_random_split_is_reproduced_on_the_real_corpus(name, n_test):
    """EmoBox's one random test set: every key found, labels agree, and its speakers are in train too."""
    rows = read_corpus(name, corpus_dir(name))
    protocol = load_emobox(name)
    assert protocol.split == "utterance" and not protocol.speaker_independent
    result = check(protocol, rows)
    assert result.exact, result.summary()
    (fold,) = emobox_folds(protocol, rows)
    assert len(fold.test) == n_test and not len(fold.discarded)
    parts = np.concatenate([fold.train, fold.val, fold.test])
    assert sorted(parts) == list(range(len(rows)))  # train, val and test are disjoint and hold every row
    test_keys = {rows[i].path.stem: rows[i].canonical for i in fold.test}
    assert test_keys == {k: label for label, keys in protocol.folds[0].test.items() for k in keys}
    test_speakers = {rows[i].speaker for i in fold.test}
    assert test_speakers & {rows[i].speaker for i in np.concatenate([fold.train, fold.val])}  # speaker-dependent
    if name == "ASED":
        counts = {label: len(keys) for label, keys in protocol.folds[0].test.items()}
        assert counts == {"angry": 121, "fearful": 127, "happy": 121, "neutral": 130, "sad": 117}
        assert len({r.speaker for r in rows}) == 65 and len(test_speakers) == 63
        sentences = lambda idx: {rows[i].sentence for i in idx}
        assert sentences(fold.test) == sentences(np.concatenate([fold.train, fold.val])) == sentences(range(len(rows)))


def test_convert_takes_training_keys_from_the_stm_when_a_train_list_is_absent(tmp_path):
    _ravdess_tree(tmp_path / "corpus", ["01", "02", "03", "04"])
    rows = _rows(tmp_path / "corpus")
    folder = _emobox_folder(tmp_path / "r" / "ravdess", "ravdess", rows, [lambda r: r.sentence == "01" and r.speaker in ("01", "02")])
    full = convert(folder, "RAVDESS", source="test")
    (folder / "fold_1" / "ravdess_train_fold_1.jsonl").unlink()
    derived = convert(folder, "RAVDESS", source="test")
    assert derived.train == full.train and sum(len(v) for v in derived.train.values()) == 24
    assert [f.test for f in derived.folds] == [f.test for f in full.folds]
    assert derived.notes[1:] == full.notes and derived.notes[0].startswith("no train jsonl read for fold_1")
    stm = folder / "data.seg.wrd.stm"
    lines = stm.read_text().splitlines()
    test_key = json.loads((folder / "fold_1" / "ravdess_test_fold_1.jsonl").read_text().splitlines()[0])["key"]
    stm.write_text("".join((line.rsplit(" ", 1)[0] + " Sad" if line.startswith(test_key + " ") else line) + "\n" for line in lines))
    with pytest.raises(ProtocolError, match="the stm labels test key"):
        convert(folder, "RAVDESS", source="test")
    stm.unlink()
    with pytest.raises(ProtocolError, match="no data.seg.wrd.stm"):
        convert(folder, "RAVDESS", source="test")


@pytest.mark.parametrize("name", ["SAVEE", "CASIA"])
def test_committed_leave_one_speaker_out_protocols_fit_the_published_layouts(tmp_path, name):
    """A tree in the corpus's published layout, with EmoBox's counts, is EmoBox's corpus exactly."""
    if name == "SAVEE":  # AudioData/<SPK>/<e><NN>.wav, 30 neutral and 15 of each other emotion per speaker
        files = [f"AudioData/{s}/{e}{n:02d}.wav" for s in ("DC", "JE", "JK", "KL") for e in ("a", "d", "f", "h", "n", "sa", "su")
                 for n in range(1, (30 if e == "n" else 15) + 1)]
    else:  # <speaker>/<emotion>/NNN.wav, 50 sentences per emotion; folder case differs from EmoBox's copy
        files = [f"{s}/{e}/{n}.wav" for s in ("liuchanhg", "wangzhe", "zhaoquanyin", "ZhaoZuoxiang")
                 for e in ("angry", "fear", "happy", "neutral", "sad", "surprise") for n in range(201, 251)]
    for i, rel in enumerate(files):
        write_audio(tmp_path / rel, seed=i, seconds=0.02)
    rows = read_corpus(name, tmp_path)
    protocol = load_emobox(name)
    assert check(protocol, rows).exact, check(protocol, rows).summary()
    (tmp_path / files[0]).unlink()  # an angry file of DC / liuchanhg, both in EmoBox's fold 3
    result = check(protocol, read_corpus(name, tmp_path))
    assert result.missing == [f"fold_3/angry: 1 of EmoBox's {15 if name == 'SAVEE' else 50} not found"]


def test_convert_tells_speaker_from_utterance_splits(tmp_path):
    _ravdess_tree(tmp_path / "corpus", ["01", "02", "03", "04"])
    rows = _rows(tmp_path / "corpus")
    by_speaker = convert(_emobox_folder(tmp_path / "a" / "ravdess", "ravdess", rows,
                                        [lambda r: r.speaker in ("01", "02"), lambda r: r.speaker in ("03", "04")]),
                         "RAVDESS", source="test")
    assert by_speaker.split == "speaker" and by_speaker.speaker_independent
    assert [f.speakers for f in by_speaker.folds] == [["01", "02"], ["03", "04"]]
    assert by_speaker.folds[0].counts == {"angry": 4, "happy": 4, "neutral": 4, "sad": 4}
    random = convert(_emobox_folder(tmp_path / "b" / "ravdess", "ravdess", rows, [lambda r: r.sentence == "01" and r.speaker in ("01", "02")]),
                     "RAVDESS", source="test")
    assert random.split == "utterance" and not random.speaker_independent
    assert sum(len(v) for v in random.folds[0].test.values()) == 8 and sum(len(v) for v in random.train.values()) == 24
    saved = random.save(tmp_path / "RAVDESS.yaml")
    assert load_emobox(saved).to_dict() == random.to_dict()


def test_check_reports_a_missing_and_an_extra_file_exactly(tmp_path):
    corpus = tmp_path / "corpus"
    paths = _ravdess_tree(corpus, ["01", "02", "03", "04"])
    rows = _rows(corpus)
    key_split = convert(_emobox_folder(tmp_path / "k" / "ravdess", "ravdess", rows, [lambda r: r.speaker == "02"],
                                       emo_of=lambda r: "Sad" if r.path.stem == "03-01-01-01-01-01-03" else RAVDESS_CODES[r.label]),
                        "RAVDESS", source="test")
    speaker_split = convert(_emobox_folder(tmp_path / "s" / "ravdess", "ravdess", rows,
                                           [lambda r: r.speaker in ("01", "02"), lambda r: r.speaker in ("03", "04")]),
                            "RAVDESS", source="test")
    assert check(speaker_split, rows).exact
    missing = paths[1]  # Actor_01/03-01-01-01-02-01-01.wav
    missing.unlink()
    extra = corpus / "Actor_05" / "03-01-05-01-01-01-05.wav"
    write_audio(extra)
    rows = _rows(corpus)

    result = check(key_split, rows)
    assert result.missing == ["ravdess-03-01-01-01-02-01-01"]
    assert result.extra == [f"{extra} (no EmoBox key ravdess-03-01-05-01-01-01-05)"]
    assert result.label_mismatch == [f"{corpus / 'Actor_03' / '03-01-01-01-01-01-03.wav'}: neutral here, sad in EmoBox"]
    assert len(result.matched) == 31 and not result.exact

    result = check(speaker_split, rows)
    assert result.missing == ["fold_1/neutral: 1 of EmoBox's 4 not found"]
    assert result.extra == [f"{extra} (speaker 05 is in no EmoBox fold)"]
    assert not result.label_mismatch
    folds = emobox_folds(speaker_split, rows)  # another copy: its folds on the rows that match, not forced
    assert [len(f.test) for f in folds] == [15, 16]
    assert all(rows[i].speaker != "05" for f in folds for i in np.concatenate([f.train, f.val, f.test]))


# ------------------------------------------------------------------------------------------- benchmark
def _emovo_tree(root: Path) -> None:
    for i, speaker in enumerate(("f1", "m1", "m2")):
        for j, emotion in enumerate(("neu", "gio", "rab", "tri")):
            for sentence in ("b1", "l2"):
                write_audio(root / speaker / f"{emotion}-{speaker}-{sentence}.wav", seed=100 + 10 * i + j, seconds=0.3)


@pytest.fixture
def shelf(tmp_path, monkeypatch) -> Path:
    """A root with a RAVDESS-like and an EMOVO-like corpus (the latter in an oddly named folder)."""
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "shelf"
    _ravdess_tree(root / "RAVDESS", ["01", "02", "03", "04"])
    _emovo_tree(root / "my italian copy")
    (root / "notes").mkdir()
    return root


def _tiny_cfg():
    from physioser.model.config import load_config

    return load_config("configs/backbone_only.yaml", [
        "backbone.name=fbank", "backbone.options={n_mels: 16}", "model.dim=16", "train.epochs=2",
        "train.batch_size=8", "train.device=cpu",
    ])


def test_discover_finds_corpora_by_name_and_by_layout(shelf):
    from physioser.benchmark import discover
    from physioser.data import CORPORA

    present, absent = discover(shelf)
    assert present == {"RAVDESS": shelf / "RAVDESS", "EMOVO": shelf / "my italian copy"}
    assert sorted(absent) == sorted(set(CORPORA) - {"RAVDESS", "EMOVO"})


def test_benchmark_resumes_without_redoing_finished_folds_and_lists_absent_corpora(shelf, tmp_path):
    from physioser.benchmark import run_benchmark

    out = tmp_path / "out"
    cfg = _tiny_cfg()
    assert run_benchmark(cfg, shelf, out, protocol="project", only=["RAVDESS", "EMOVO", "URDU"], progress=False, stop_after=3) == {}
    first = sorted(out.glob("folds/*/*.json"))
    assert len(first) == 3
    for path in first:  # a fold redone would overwrite this
        data = json.loads(path.read_text())
        path.write_text(json.dumps(dict(data, marker="finished before the interruption")))
    board = run_benchmark(cfg, shelf, out, protocol="project", only=["RAVDESS", "EMOVO", "URDU"], progress=False)
    assert all(json.loads(p.read_text()).get("marker") for p in first)
    assert board["absent"] == ["URDU"]
    assert [r["corpus"] for r in board["corpora"]] == ["RAVDESS", "EMOVO"]
    # the committed project folds that hold these speakers (RAVDESS 3 of 5, EMOVO 3 of 6)
    assert [r["folds"] for r in board["corpora"]] == [3, 3]
    assert [r["corpus"] for r in board["leave_one_corpus_out"]] == ["RAVDESS", "EMOVO"]
    assert len(list(out.glob("folds/*/*.json"))) == 3 + 3 + 2
    text = (out / "leaderboard.md").read_text()
    assert "Absent under the root (listed, not failed): URDU." in text
    assert "| EMOVO | it | 3 (project) | 7 |" in text and "not comparable: project's folds chosen" in text
    with pytest.raises(ValueError, match="another config"):
        run_benchmark(replace(cfg, name="other"), shelf, out, protocol="project", progress=False)


def test_benchmark_resumes_a_folder_stamped_before_the_config_gained_fields_at_their_defaults(shelf, tmp_path):
    from physioser.benchmark import _config_key, run_benchmark

    out = tmp_path / "out"
    cfg = _tiny_cfg()
    assert run_benchmark(cfg, shelf, out, protocol="project", only=["EMOVO"], loco=False, progress=False, stop_after=1) == {}
    (done,) = out.glob("folds/*/*.json")
    done.write_text(json.dumps(dict(json.loads(done.read_text()), marker="finished earlier")))
    stamp = json.loads((out / "run.json").read_text())
    for section, field in (("train", "mixup"), ("model", "late_fusion")):  # as if these fields did not exist yet
        del stamp["config"][section][field]
    (out / "run.json").write_text(json.dumps(dict(stamp, key=_config_key(stamp["config"], "project"))))
    with pytest.raises(ValueError, match="another config"):  # a field added since, but not at its default
        run_benchmark(replace(cfg, train=replace(cfg.train, mixup=0.4)), shelf, out, protocol="project", only=["EMOVO"], progress=False)
    with pytest.raises(ValueError, match="another config"):  # the same config under another protocol
        run_benchmark(cfg, shelf, out, protocol="emobox", only=["EMOVO"], progress=False)
    board = run_benchmark(cfg, shelf, out, protocol="project", only=["EMOVO"], loco=False, progress=False)
    assert json.loads(done.read_text())["marker"] == "finished earlier" and board["corpora"][0]["folds"] == 3


def test_benchmark_reports_the_adapted_protocol_beside_the_strict_one(shelf, tmp_path):
    from physioser.benchmark import run_benchmark
    from physioser.model.config import load_config

    cfg = load_config("configs/recipe.yaml", [
        "backbone.name=fbank", "backbone.options={n_mels: 16}", "model.dim=16", "train.epochs=2", "train.batch_size=8",
        "train.device=cpu",
    ])
    board = run_benchmark(cfg, shelf, tmp_path / "out", protocol="project", only=["EMOVO"], progress=False, adapt=4)
    row, = board["corpora"]
    assert len(row["adapted"]["ua"]["values"]) == len(row["strict"]["ua"]["values"]) == 3
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "adapted UA (k=4)" in text and "% adapted" in text
    with pytest.raises(ValueError, match="model.statistics"):
        run_benchmark(_tiny_cfg(), shelf, tmp_path / "other", protocol="project", progress=False, adapt=4)

