"""EmoBox's published folds as data: conversion from its fold files, checks and folds on rows.

EmoBox (Ma et al., Interspeech 2024; the ``emo-box/EmoBox`` repository) publishes, for each of its
corpora, ``data/<dataset>/fold_<k>/<dataset>_{train,test}_fold_<k>.jsonl`` (one line per utterance:
``key``, ``wav``, ``emo``, ...), ``data.seg.wrd.stm`` (``key channel speaker ...``) and a label map.
Its preprocessing splits a corpus by speaker when every speaker has the same emotion counts
(leave-one-speaker-out for 4-6 speakers, else speakers dealt into ``n // 4`` folds) and otherwise
draws one random 25 % test set per emotion, whatever the speaker.

:func:`convert` turns such a folder into an :class:`EmoBoxProtocol`, stored compactly as YAML under
``physioser/data/protocols/emobox/<CORPUS>.yaml`` (a fold without its train jsonl takes every stm key
that is not one of its test keys, with the stm's label, as EmoBox's train and test lists together
hold every key):

- ``split: speaker`` (every speaker's utterances in one test fold): the speakers of each fold and
  EmoBox's per-label counts of its test set;
- ``split: utterance`` (the random split): every key with its label, by fold (``train`` holds the
  keys that are never tested), and whether any speaker is in both train and test.

:func:`check` compares a reader's rows with a protocol (every EmoBox utterance found, nothing
extra, labels the same after mapping) and reports each difference; :func:`emobox_folds` gives the
folds on the rows that match, so that another copy of a corpus is reported, not forced.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from physioser.data.folds import PROTOCOL_DIR, Fold, ProtocolError, read_mapping, write_mapping
from physioser.data.registry import Row, get_spec

EMOBOX_DIR = PROTOCOL_DIR / "emobox"
"""Committed EmoBox protocols (one YAML per corpus) and EmoBox's published figures."""

EMOBOX_CLASSES = {
    "neutral": "neutral", "calm": "calm", "happy": "happy", "happiness": "happy", "sad": "sad", "sadness": "sad",
    "angry": "angry", "anger": "angry", "fear": "fearful", "fearful": "fearful", "disgust": "disgust",
    "surprise": "surprised", "surprised": "surprised", "boredom": "boredom", "contempt": "contempt",
    "frustrated": "frustrated", "excited": "excited", "other": "other",
}
"""EmoBox class names (the values of its label maps, any case) -> canonical emotions."""


@dataclass
class EmoBoxFold:
    name: str
    speakers: list[str] = field(default_factory=list)  # split: speaker
    counts: dict[str, int] = field(default_factory=dict)  # split: speaker, canonical label -> test utterances
    test: dict[str, list[str]] = field(default_factory=dict)  # split: utterance, canonical label -> key stems


@dataclass
class EmoBoxProtocol:
    corpus: str
    dataset: str  # EmoBox's name of the corpus
    source: str  # repository@commit the fold files were read from
    labels: dict[str, str]  # EmoBox emo code -> canonical emotion
    split: str  # "speaker" or "utterance"
    speaker_independent: bool
    label_counts: dict[str, int]  # canonical label -> utterances in EmoBox's corpus list
    folds: list[EmoBoxFold]
    train: dict[str, list[str]] = field(default_factory=dict)  # split: utterance, keys never tested
    notes: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"{self.dataset}-"

    def key(self, row: Row) -> str:
        """EmoBox's key stem of a row: the file name without extension (EmoBox keys are ``<dataset>-<stem>``)."""
        return row.path.stem

    def to_dict(self) -> dict:
        folds = []
        for f in self.folds:
            entry: dict = {"name": f.name}
            if self.split == "speaker":
                entry.update(speakers=f.speakers, counts=f.counts)
            else:
                entry["test"] = f.test
            folds.append(entry)
        data = {
            "corpus": self.corpus, "dataset": self.dataset, "source": self.source, "labels": self.labels,
            "split": self.split, "speaker_independent": self.speaker_independent,
            "label_counts": self.label_counts, "notes": self.notes, "folds": folds,
        }
        if self.split == "utterance":
            data["train"] = self.train
        return data

    def save(self, path: str | Path) -> Path:
        header = (
            f"# EmoBox's folds of {self.corpus} ({self.source}, data/{self.dataset}/), written by\n"
            "# `physioser corpora emobox-import`; keys are file stems (EmoBox's keys without the dataset prefix).\n"
        )
        return write_mapping(path, header, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "EmoBoxProtocol":
        try:
            split = str(data["split"])
            if split not in ("speaker", "utterance"):
                raise ProtocolError(f"malformed EmoBox protocol: split {split!r} (speaker or utterance)")
            folds = [
                EmoBoxFold(
                    name=str(f["name"]),
                    speakers=[str(s) for s in f.get("speakers") or []],
                    counts={str(k): int(v) for k, v in (f.get("counts") or {}).items()},
                    test={str(k): [str(x) for x in v] for k, v in (f.get("test") or {}).items()},
                )
                for f in data["folds"]
            ]
            return cls(
                corpus=str(data["corpus"]), dataset=str(data["dataset"]), source=str(data["source"]),
                labels={str(k): str(v) for k, v in data["labels"].items()}, split=split,
                speaker_independent=bool(data["speaker_independent"]),
                label_counts={str(k): int(v) for k, v in data["label_counts"].items()}, folds=folds,
                train={str(k): [str(x) for x in v] for k, v in (data.get("train") or {}).items()},
                notes=[str(n) for n in data.get("notes") or []],
            )
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ProtocolError(f"malformed EmoBox protocol: missing or wrong field {error}") from error


def load_emobox(corpus_or_path: str | Path) -> EmoBoxProtocol:
    """The committed EmoBox protocol of a corpus (``physioser/data/protocols/emobox/<CORPUS>.yaml``) or a YAML path."""
    path = Path(corpus_or_path)
    if not path.suffix:
        path = EMOBOX_DIR / f"{get_spec(str(corpus_or_path)).name}.yaml"
    data = read_mapping(path, "EmoBox protocol")
    try:
        return EmoBoxProtocol.from_dict(data)
    except ProtocolError as error:
        raise ProtocolError(f"{path}: {error}") from error


def emobox_corpora() -> list[str]:
    """Corpora with a committed EmoBox protocol."""
    return sorted(p.stem for p in EMOBOX_DIR.glob("*.yaml") if p.stem != PUBLISHED.stem)


PUBLISHED = EMOBOX_DIR / "published.yaml"
"""EmoBox's published figures per corpus and encoder (``wa``, and ``ua``/``f1`` where published), in %."""


def published_figures() -> dict:
    """``{"source": ..., "models": [...], "corpora": {corpus: {model: {wa, ua?, f1?, from?}}}}`` of :data:`PUBLISHED`."""
    return read_mapping(PUBLISHED, "EmoBox's published figures")


# ------------------------------------------------------------------------------------ conversion
def _jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ProtocolError(f"cannot read {path} ({error})") from error
    out = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                entry = json.loads(line)
                out.append({"key": str(entry["key"]), "emo": str(entry["emo"])})
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ProtocolError(f"{path} line {number}: not an EmoBox metadata line ({error})") from error
    return out


def _label_map(folder: Path) -> dict[str, str]:
    for name in ("label_map.json", "label_dict.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ProtocolError(f"{path}: not JSON ({error})") from error
            return {str(k): str(v) for k, v in data.items()}
    return {}


def _canonical(code: str, label_map: dict[str, str], where: Path) -> str:
    name = label_map.get(code, code)
    canonical = EMOBOX_CLASSES.get(name.lower())
    if canonical is None:
        raise ProtocolError(f"{where}: EmoBox label {code!r} ({name!r}) maps to no canonical emotion")
    return canonical


def _stm(folder: Path) -> dict[str, tuple[str, str]]:
    """key -> (speaker, label code) from ``data.seg.wrd.stm`` (``key channel speaker start end <meta> label``)."""
    path = folder / "data.seg.wrd.stm"
    if not path.is_file():
        return {}
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            entries[parts[0]] = (parts[2], parts[-1] if len(parts) >= 7 else "")
    return entries


def _train_from_stm(stm: dict[str, tuple[str, str]], test: list[dict], where: Path) -> list[dict]:
    """A fold's training list when its train jsonl is absent: every stm key that is not a test key.

    Sound for EmoBox's split files, whose train and test lists together hold every key of the
    corpus list; the stm's label of each test key must agree with the test file's."""
    if not stm:
        raise ProtocolError(f"{where}: missing, and no data.seg.wrd.stm in {where.parent.parent} lists EmoBox's keys")
    tested = {e["key"]: e["emo"] for e in test}
    unknown = sorted(k for k in tested if k not in stm)
    if unknown:
        raise ProtocolError(f"{where}: missing, and the stm lacks test keys, e.g. {unknown[0]!r}")
    differ = sorted(k for k, emo in tested.items() if stm[k][1] != emo)
    if differ:
        raise ProtocolError(f"{where}: missing, and the stm labels test key {differ[0]!r} {stm[differ[0]][1]!r}, "
                            f"the test file {tested[differ[0]]!r}")
    unlabelled = sorted(k for k, (_, emo) in stm.items() if not emo)
    if unlabelled:
        raise ProtocolError(f"{where}: missing, and the stm gives no label for {unlabelled[0]!r}")
    return [{"key": k, "emo": emo} for k, (_, emo) in sorted(stm.items()) if k not in tested]


def convert(folder: str | Path, corpus: str, *, source: str, notes: Sequence[str] = ()) -> EmoBoxProtocol:
    """The protocol of EmoBox's ``data/<dataset>/`` folder (its fold jsonl files, label map and stm)."""
    folder = Path(folder)
    dataset = folder.name
    spec = get_spec(corpus)
    fold_dirs = sorted(folder.glob("fold_*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    if not fold_dirs:
        raise ProtocolError(f"{folder}: no fold_<k>/ folders (expected EmoBox's data/<dataset>/ layout)")
    label_map = _label_map(folder)
    stm = _stm(folder)
    speakers = {key: speaker for key, (speaker, _) in stm.items()}
    prefix = f"{dataset}-"
    tests: list[list[dict]] = []
    every: dict[str, str] = {}
    from_stm = []
    for fold_dir in fold_dirs:
        k = fold_dir.name.split("_", 1)[1]
        test = _jsonl(fold_dir / f"{dataset}_test_fold_{k}.jsonl")
        train_path = fold_dir / f"{dataset}_train_fold_{k}.jsonl"
        if train_path.is_file():
            train = _jsonl(train_path)
        else:
            train = _train_from_stm(stm, test, train_path)
            from_stm.append(fold_dir.name)
        tests.append(test)
        for entry in test + train:
            every[entry["key"]] = entry["emo"]
    codes = sorted(set(every.values()))
    labels = {code: _canonical(code, label_map, folder) for code in codes}
    bad = sorted(k for k in every if not k.startswith(prefix))
    if bad:
        raise ProtocolError(f"{folder}: keys without the {prefix!r} prefix, e.g. {bad[0]!r}")
    tested = [{e["key"] for e in t} for t in tests]
    spk_of = {k: speakers.get(k) for k in every}
    by_speaker: dict[str, set[int]] = {}
    for i, keys in enumerate(tested):
        for key in keys:
            by_speaker.setdefault(spk_of[key] or "", set()).add(i)
    speaker_split = (
        len(tests) > 1 and all(spk_of.values()) and all(len(v) == 1 for v in by_speaker.values())
        and set().union(*tested) == set(every)
    )
    label_counts = dict(sorted(Counter(labels[c] for c in every.values()).items()))
    folds = []
    for fold_dir, test in zip(fold_dirs, tests):
        if speaker_split:
            folds.append(EmoBoxFold(
                fold_dir.name,
                speakers=sorted({spk_of[e["key"]] for e in test}),
                counts=dict(sorted(Counter(labels[e["emo"]] for e in test).items())),
            ))
        else:
            grouped: dict[str, list[str]] = {}
            for e in sorted(test, key=lambda e: e["key"]):
                grouped.setdefault(labels[e["emo"]], []).append(e["key"][len(prefix):])
            folds.append(EmoBoxFold(fold_dir.name, test=dict(sorted(grouped.items()))))
    train: dict[str, list[str]] = {}
    notes = list(notes)
    if from_stm:
        notes.append(f"no train jsonl read for {', '.join(from_stm)}: its training keys are data.seg.wrd.stm's keys "
                     "that are not test keys, with the stm's labels")
    if speaker_split:
        independent = True
        notes.append("every speaker's utterances are in exactly one test fold")
    else:
        never = sorted(set(every) - set().union(*tested))
        for key in never:
            train.setdefault(labels[every[key]], []).append(key[len(prefix):])
        train = dict(sorted(train.items()))
        if speakers:
            test_spk = {spk_of[k] for keys in tested for k in keys}
            train_spk = {spk_of[k] for k in never}
            independent = not (test_spk & train_spk) and len(tests) == 1
            notes.append(
                f"utterance-level split: {len(test_spk & train_spk)} of {len(test_spk | train_spk)} speakers "
                "are in both train and test" if not independent else "utterance-level split, speaker-disjoint"
            )
        else:
            independent = False
            notes.append("utterance-level split; EmoBox's stm gives no speakers, so speaker overlap is unknown")
    return EmoBoxProtocol(spec.name, dataset, source, labels, "speaker" if speaker_split else "utterance",
                          independent, label_counts, folds, train, notes)


# ------------------------------------------------------------------------------------ rows vs protocol
@dataclass
class EmoBoxCheck:
    """How a reader's rows compare with an EmoBox protocol."""

    corpus: str
    matched: list[int]  # indices of rows that are EmoBox utterances
    missing: list[str]  # EmoBox utterances not among the rows (keys, or 'fold/label: n' for speaker splits)
    extra: list[str]  # rows that are not EmoBox utterances (paths)
    label_mismatch: list[str]  # rows whose label differs from EmoBox's

    @property
    def exact(self) -> bool:
        return not (self.missing or self.extra or self.label_mismatch)

    def summary(self) -> str:
        if self.exact:
            return f"{self.corpus}: the rows are EmoBox's utterances exactly ({len(self.matched)})"
        parts = [f"{len(self.matched)} rows match"]
        for name, items in (("missing", self.missing), ("extra", self.extra), ("label differs", self.label_mismatch)):
            if items:
                shown = "; ".join(items[:3]) + (f"; … {len(items) - 3} more" if len(items) > 3 else "")
                parts.append(f"{name}: {len(items)} ({shown})")
        return f"{self.corpus}: another copy of the corpus than EmoBox's — " + ", ".join(parts)


def check(protocol: EmoBoxProtocol, rows: Sequence[Row]) -> EmoBoxCheck:
    """Compare ``rows`` (one corpus as read) with ``protocol``; every difference is listed."""
    matched, missing, extra, mismatch = [], [], [], []
    if protocol.split == "speaker":
        fold_of = {s.lower(): f.name for f in protocol.folds for s in f.speakers}  # folder-name case varies by copy
        got: dict[str, Counter] = {f.name: Counter() for f in protocol.folds}
        for i, row in enumerate(rows):
            fold = fold_of.get(row.speaker.lower())
            if fold is None:
                extra.append(f"{row.path} (speaker {row.speaker} is in no EmoBox fold)")
            else:
                matched.append(i)
                got[fold][row.canonical] += 1
        for f in protocol.folds:
            for label in sorted(set(f.counts) | set(got[f.name])):
                diff = got[f.name][label] - f.counts.get(label, 0)
                if diff < 0:
                    missing.append(f"{f.name}/{label}: {-diff} of EmoBox's {f.counts.get(label, 0)} not found")
                elif diff > 0:
                    (extra if label in f.counts else mismatch).append(
                        f"{f.name}/{label}: {diff} more than EmoBox's {f.counts.get(label, 0)}")
    else:
        expected = {key: label for part in [f.test for f in protocol.folds] + [protocol.train]
                    for label, keys in part.items() for key in keys}
        seen = set()
        for i, row in enumerate(rows):
            key = protocol.key(row)
            label = expected.get(key)
            if label is None:
                extra.append(f"{row.path} (no EmoBox key {protocol.prefix}{key})")
                continue
            if key in seen:
                extra.append(f"{row.path} (second file for EmoBox key {protocol.prefix}{key})")
                continue
            seen.add(key)
            matched.append(i)
            if label != row.canonical:
                mismatch.append(f"{row.path}: {row.canonical} here, {label} in EmoBox")
        missing = [f"{protocol.prefix}{key}" for key in sorted(set(expected) - seen)]
    return EmoBoxCheck(protocol.corpus, matched, missing, extra, mismatch)


def emobox_folds(protocol: EmoBoxProtocol, rows: Sequence[Row], *, val_fraction: float = 0.15, seed: int = 0) -> list[Fold]:
    """EmoBox's folds on the rows that are EmoBox utterances (see :func:`check`).

    EmoBox has no validation split: about ``val_fraction`` of each fold's training speakers are
    held out for early stopping (training utterances only, never test ones)."""
    result = check(protocol, rows)
    matched = np.asarray(result.matched, dtype=np.int64)
    if not len(matched):
        raise ProtocolError(f"{protocol.corpus}: no row is one of EmoBox's utterances ({result.summary()})")
    speakers = np.array([rows[i].speaker for i in range(len(rows))], dtype=object)
    if protocol.split == "speaker":
        lower = np.array([s.lower() for s in speakers], dtype=object)
        tests = [np.intersect1d(matched, np.flatnonzero(np.isin(lower, [s.lower() for s in f.speakers]))) for f in protocol.folds]
    else:
        keys = np.array([protocol.key(r) for r in rows], dtype=object)
        tests = [np.intersect1d(matched, np.flatnonzero(np.isin(keys, [k for ks in f.test.values() for k in ks])))
                 for f in protocol.folds]
    rng = np.random.default_rng(seed)
    folds = []
    for f, test in zip(protocol.folds, tests):
        train = np.setdiff1d(matched, test)
        pool = sorted(set(speakers[train]))
        k = max(1, int(round(val_fraction * len(pool)))) if len(pool) >= 3 else 0
        held = set(rng.choice(pool, size=k, replace=False).tolist()) if k else set()
        in_val = np.isin(speakers[train], sorted(held))
        discarded = np.setdiff1d(np.arange(len(rows)), matched)
        folds.append(Fold(f.name, train[~in_val], train[in_val], test, discarded))
    return folds
