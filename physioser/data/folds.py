"""Speaker-independent folds, defined as data (a :class:`Protocol`) and applied to rows.

A protocol lists, per fold, *selectors* on row fields (``speaker``, ``sentence``,
``partition``): the test set is the rows matching every test selector, the validation set the
rows matching the val selectors.  ``disjoint`` names the fields that training (and
validation) rows may not share with the test rows — always ``speaker``, plus ``sentence``
where a corpus ties sentences to emotions.  Training rows also never share a speaker with the
validation rows.  Rows that fall in none of train/val/test are *discarded* for that fold and
counted.  Saved as YAML (``physioser/data/protocols/<corpus>.yaml``) a protocol reproduces its folds on
any copy of the corpus; :meth:`Protocol.apply` checks the copy against the recorded counts.

Schemes (chosen per corpus in the registry, overridable):

- ``speaker``: grouped k-fold over speakers (sklearn ``StratifiedGroupKFold``, shuffled with a
  fixed seed, as class-balanced as the speakers allow); leave-one-speaker-out for ≤ 6 speakers.
- ``speaker_sentence``: speakers dealt into ``n_folds`` groups (balanced by gender) and
  sentences into ``n_sentence_folds`` groups (balanced by the emotion they carry); one fold per
  (speaker group, sentence group) cell: test = that cell, train = other speakers × other
  sentences, the rest of the cell's row and column is discarded.  Every row is in exactly one
  test fold.
- ``leave_one_partition_out``: the corpus's official partitions (IEMOCAP sessions).
- ``official_split``: one fold from the corpus's published train/val/test partitions
  (MSP-Podcast).

In the first three schemes a speaker-disjoint validation split is taken inside each training
part (a grouped stratified split holding out about ``val_fraction`` of the training speakers).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from physioser.data.registry import Row, get_spec

SCHEMES = ("speaker", "speaker_sentence", "leave_one_partition_out", "official_split")
SELECTOR_FIELDS = ("speaker", "sentence", "partition")
PROTOCOL_DIR = Path(__file__).resolve().parent / "protocols"
"""Where the committed protocols live (physioser/data/protocols/, installed with the package)."""


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated lists in full (no YAML anchors/aliases): protocols are read by people too."""

    def ignore_aliases(self, data) -> bool:
        return True


class ProtocolError(ValueError):
    """A protocol that cannot be made or does not fit the rows it is applied to."""


@dataclass
class Fold:
    """Index arrays (int64, into the rows the fold was applied to) of one fold."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    discarded: np.ndarray


@dataclass
class FoldSpec:
    name: str
    test: dict[str, list[str]]
    val: dict[str, list[str]] = field(default_factory=dict)
    train: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Protocol:
    corpus: str
    scheme: str
    disjoint: list[str]
    folds: list[FoldSpec]
    n_rows: int
    seed: int = 0
    val_fraction: float = 0.15
    confounds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def apply(self, rows: Sequence[Row], *, strict: bool = True) -> list[Fold]:
        """The folds of this protocol on ``rows``.

        ``rows`` is the whole corpus as read (then the recorded per-fold counts must reproduce)
        or a subset of it, e.g. only the 4-class rows (then every row must fall in a test fold:
        a speaker or sentence the protocol does not know means another copy of the corpus).
        With ``strict=False`` neither is checked.  Raises :class:`ProtocolError` saying what differs.
        """
        if strict and len(rows) > self.n_rows:
            raise ProtocolError(
                f"{self.corpus} protocol was made on {self.n_rows} rows, these are {len(rows)} "
                "(another copy of the corpus? pass strict=False to apply it anyway)"
            )
        columns = {key: np.array([getattr(r, key) for r in rows], dtype=object) for key in SELECTOR_FIELDS}
        folds = [_apply_one(spec, columns, self.disjoint, len(rows)) for spec in self.folds]
        if not strict:
            return folds
        if len(rows) == self.n_rows:
            for spec, fold in zip(self.folds, folds):
                got = {"train": len(fold.train), "val": len(fold.val), "test": len(fold.test), "discarded": len(fold.discarded)}
                if spec.counts and got != spec.counts:
                    raise ProtocolError(f"{self.corpus} fold {spec.name}: rows give {got}, the protocol recorded {spec.counts}")
        elif self.scheme != "official_split":
            tested = np.zeros(len(rows), dtype=bool)
            for fold in folds:
                tested[fold.test] = True
            if not tested.all():
                unknown = sorted({f"{rows[i].speaker}/{rows[i].sentence}" for i in np.flatnonzero(~tested)})
                raise ProtocolError(
                    f"{self.corpus}: {int((~tested).sum())} of {len(rows)} rows fall in no test fold of the protocol "
                    f"(speaker/sentence {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}): "
                    f"made on another copy of the corpus ({self.n_rows} rows)?"
                )
        return folds

    def to_dict(self) -> dict:
        return {
            "corpus": self.corpus,
            "scheme": self.scheme,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "disjoint": list(self.disjoint),
            "n_rows": self.n_rows,
            "confounds": list(self.confounds),
            "notes": list(self.notes),
            "folds": [
                {"name": f.name, "test": f.test, "val": f.val, "train": f.train, "counts": f.counts}
                for f in self.folds
            ],
        }

    def save(self, path: str | Path) -> Path:
        header = (
            f"# Fold protocol for {self.corpus} (generated by `physioser corpora folds {self.corpus} ROOT`).\n"
            "# test = rows matching every test selector; train/val never share a field in `disjoint` with test.\n"
        )
        return write_mapping(path, header, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "Protocol":
        try:
            folds = [
                FoldSpec(
                    name=str(f["name"]),
                    test=_selector(f["test"]),
                    val=_selector(f.get("val") or {}),
                    train=_selector(f.get("train") or {}),
                    counts={k: int(v) for k, v in (f.get("counts") or {}).items()},
                )
                for f in data["folds"]
            ]
            protocol = cls(
                corpus=str(data["corpus"]),
                scheme=str(data["scheme"]),
                disjoint=[str(d) for d in data["disjoint"]],
                folds=folds,
                n_rows=int(data["n_rows"]),
                seed=int(data.get("seed", 0)),
                val_fraction=float(data.get("val_fraction", 0.15)),
                confounds=[str(c) for c in data.get("confounds") or []],
                notes=[str(n) for n in data.get("notes") or []],
            )
        except (KeyError, TypeError) as error:
            raise ProtocolError(f"malformed protocol: missing or wrong field {error}") from error
        unknown = set(protocol.disjoint) - set(SELECTOR_FIELDS)
        if unknown or protocol.scheme not in SCHEMES:
            raise ProtocolError(f"malformed protocol: scheme {protocol.scheme!r}, disjoint fields {sorted(unknown)}")
        return protocol


def _selector(data: dict) -> dict[str, list[str]]:
    unknown = set(data) - set(SELECTOR_FIELDS)
    if unknown:
        raise ProtocolError(f"malformed protocol: unknown selector fields {sorted(unknown)} (known: {SELECTOR_FIELDS})")
    return {key: [str(v) for v in values] for key, values in data.items()}


def read_mapping(path: str | Path, what: str) -> dict:
    """The YAML mapping in ``path``; :class:`ProtocolError` naming the file (and ``what`` it should be) otherwise."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ProtocolError(f"{path}: cannot read {what} ({error})") from error
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}: not {'an' if what[0] in 'aeiouAEIOU' else 'a'} {what} (expected a mapping)")
    return data


def write_mapping(path: str | Path, header: str, data: dict) -> Path:
    """Write ``data`` as YAML after the comment lines ``header`` (repeated lists in full, no aliases)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=100))
    return path


def load_protocol(path: str | Path) -> Protocol:
    """Read a protocol YAML written by :meth:`Protocol.save`."""
    data = read_mapping(path, "protocol")
    try:
        return Protocol.from_dict(data)
    except ProtocolError as error:
        raise ProtocolError(f"{path}: {error}") from error


def _match(columns: dict[str, np.ndarray], selector: dict[str, list[str]], n: int) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    for key, values in selector.items():
        mask &= np.isin(columns[key].astype(str), values)
    return mask


def _apply_one(spec: FoldSpec, columns: dict[str, np.ndarray], disjoint: list[str], n: int) -> Fold:
    test = _match(columns, spec.test, n)
    val = _match(columns, spec.val, n) & ~test if spec.val else np.zeros(n, dtype=bool)
    train = _match(columns, spec.train, n) & ~test & ~val
    # banned values: those the selectors name plus those the selected rows carry, so that a
    # subset of the corpus (e.g. one class set) gets exactly the full folds restricted to it
    for key in disjoint:
        column = columns[key].astype(str)
        in_test = np.isin(column, np.union1d(column[test], spec.test.get(key, [])))
        val &= ~in_test
        train &= ~in_test
    if "speaker" in disjoint:
        speakers = columns["speaker"].astype(str)
        train &= ~np.isin(speakers, np.union1d(speakers[val], spec.val.get("speaker", [])))
    discarded = ~(train | val | test)
    return Fold(spec.name, *(np.flatnonzero(m).astype(np.int64) for m in (train, val, test, discarded)))


def _deal(items: list[str], strata: dict[str, str], k: int, rng: np.random.Generator) -> list[list[str]]:
    """Deal ``items`` into ``k`` groups, balanced in size and within each stratum."""
    shuffled = [items[i] for i in rng.permutation(len(items))]
    ordered = sorted(shuffled, key=lambda item: strata.get(item) or "")
    groups: list[list[str]] = [[] for _ in range(k)]
    for position, item in enumerate(ordered):
        groups[position % k].append(item)
    return [sorted(g) for g in groups]


def _stratified_group_split(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int):
    """Grouped k-fold, class-stratified where the class counts allow it (else grouped only)."""
    x = np.zeros(len(labels))
    with warnings.catch_warnings():
        # "The least populated class in y has only N members": expected with few speakers
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        try:
            splits = list(StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x, labels, groups))
        except ValueError:  # every class has fewer rows than folds: nothing to stratify
            splits = []
    if not splits or any(len(test) == 0 for _, test in splits):
        splits = list(GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x, labels, groups))
    return splits


def _val_speakers(rows: Sequence[Row], eligible: np.ndarray, val_fraction: float, seed: int) -> list[str]:
    """About ``val_fraction`` of the eligible rows' speakers (at least one), chosen class-balanced;
    none where fewer than 3 speakers are eligible."""
    if val_fraction <= 0:
        return []
    speakers = np.array([rows[i].speaker for i in eligible], dtype=object)
    unique = np.unique(speakers)
    if len(unique) < 3:  # holding one out would leave training with a single speaker
        return []
    n_splits = int(min(len(unique), max(2, round(1 / val_fraction))))
    labels = np.array([rows[i].canonical for i in eligible], dtype=object)
    _, held = _stratified_group_split(labels, speakers, n_splits, seed)[0]
    return sorted(str(s) for s in np.unique(speakers[held]))


def make_protocol(
    rows: Sequence[Row],
    corpus_name: str,
    *,
    scheme: str | None = None,
    n_folds: int | None = None,
    n_sentence_folds: int | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> Protocol:
    """Generate the fold protocol of ``rows`` (one corpus) under the corpus's scheme.

    ``n_folds`` defaults to 5 speaker folds (leave-one-speaker-out for ≤ 6 speakers; at most
    the number of speakers in the speaker_sentence scheme); ``n_sentence_folds`` defaults to 5.
    """
    if not rows:
        raise ProtocolError(f"{corpus_name}: no rows to make folds of")
    spec = get_spec(corpus_name)
    scheme = scheme or spec.folds
    if scheme not in SCHEMES:
        raise ProtocolError(f"unknown fold scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    rng = np.random.default_rng(seed)
    labels = np.array([r.canonical for r in rows], dtype=object)
    speakers = np.array([r.speaker for r in rows], dtype=object)
    unique_speakers = sorted(set(speakers))
    notes: list[str] = []
    disjoint = ["speaker"]
    folds: list[FoldSpec] = []

    def with_val(name: str, test: dict[str, list[str]], eligible: np.ndarray) -> FoldSpec:
        val = _val_speakers(rows, eligible, val_fraction, seed)
        if not val and val_fraction > 0:
            notes.append(f"{name}: fewer than 3 training speakers, so no speaker-disjoint validation split")
        return FoldSpec(name, test, {"speaker": val} if val else {})

    if scheme == "speaker":
        if len(unique_speakers) < 2:
            raise ProtocolError(f"{corpus_name}: {len(unique_speakers)} speaker(s); speaker-independent folds need at least 2")
        k = n_folds or (len(unique_speakers) if len(unique_speakers) <= 6 else 5)
        if not 2 <= k <= len(unique_speakers):
            raise ProtocolError(f"{corpus_name}: {k} folds impossible with {len(unique_speakers)} speakers")
        for i, (train_idx, test_idx) in enumerate(_stratified_group_split(labels, speakers, k, seed)):
            folds.append(with_val(f"fold{i}", {"speaker": sorted(set(speakers[test_idx]))}, train_idx))
    elif scheme == "speaker_sentence":
        disjoint = ["speaker", "sentence"]
        if any(r.sentence is None for r in rows):
            raise ProtocolError(f"{corpus_name}: speaker_sentence folds need a sentence id on every row")
        k_s = n_folds or min(5, len(unique_speakers))
        k_t = n_sentence_folds or 5
        sentences = sorted({r.sentence for r in rows})
        if not (2 <= k_s <= len(unique_speakers) and 2 <= k_t <= len(sentences)):
            raise ProtocolError(
                f"{corpus_name}: {k_s}x{k_t} folds impossible with {len(unique_speakers)} speakers and {len(sentences)} sentences"
            )
        genders = {r.speaker: r.gender or "" for r in rows}
        sentence_label = {s: c.most_common(1)[0][0] for s, c in _label_counts(rows).items()}
        speaker_groups = _deal(unique_speakers, genders, k_s, rng)
        sentence_groups = _deal(sentences, sentence_label, k_t, rng)
        column_s = np.array([r.sentence for r in rows], dtype=object)
        for i, group_s in enumerate(speaker_groups):
            for j, group_t in enumerate(sentence_groups):
                eligible = np.flatnonzero(~np.isin(speakers, group_s) & ~np.isin(column_s, group_t))
                folds.append(with_val(f"spk{i}-sent{j}", {"speaker": group_s, "sentence": group_t}, eligible))
        notes.append(
            f"{k_s} speaker groups x {k_t} sentence groups = {k_s * k_t} folds; each fold discards the rows that "
            "share a speaker or a sentence with its test cell but not both (see counts.discarded); "
            "validation speakers are speaker- and sentence-disjoint from test"
        )
    elif scheme == "leave_one_partition_out":
        partitions = sorted({r.partition for r in rows if r.partition is not None})
        if len(partitions) < 2:
            raise ProtocolError(f"{corpus_name}: leave-one-partition-out needs ≥ 2 partitions, rows have {partitions}")
        column_p = np.array([r.partition for r in rows], dtype=object)
        for p in partitions:
            eligible = np.flatnonzero(column_p != p)
            folds.append(with_val(f"{p}", {"partition": [p]}, eligible))
    else:  # official_split
        if not spec.official_split:
            raise ProtocolError(f"{corpus_name} has no official split")
        disjoint = []
        split = {k: list(v) for k, v in spec.official_split.items()}
        folds.append(FoldSpec("official", {"partition": split["test"]}, {"partition": split["val"]}, {"partition": split["train"]}))
        notes.append("the corpus's published partitions (speaker-independent by construction); other partitions are discarded")
    protocol = Protocol(
        corpus=spec.name,
        scheme=scheme,
        disjoint=disjoint,
        folds=folds,
        n_rows=len(rows),
        seed=seed,
        val_fraction=val_fraction,
        confounds=list(spec.confounds),
        notes=notes,
    )
    for fold_spec, fold in zip(protocol.folds, protocol.apply(rows, strict=False)):
        fold_spec.counts = {"train": len(fold.train), "val": len(fold.val), "test": len(fold.test), "discarded": len(fold.discarded)}
    return protocol


def _label_counts(rows: Sequence[Row]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {}
    for r in rows:
        counts.setdefault(r.sentence, Counter())[r.canonical] += 1
    return counts


def make_folds(
    rows: Sequence[Row],
    corpus_name: str,
    *,
    protocol: Protocol | str | Path | None = None,
    **options,
) -> list[Fold]:
    """Folds of ``rows``: from ``protocol`` (a Protocol or a YAML path) when given, else generated
    with :func:`make_protocol` (``options``: scheme, n_folds, n_sentence_folds, val_fraction, seed)."""
    if protocol is None:
        protocol = make_protocol(rows, corpus_name, **options)
    elif not isinstance(protocol, Protocol):
        protocol = load_protocol(protocol)
    return protocol.apply(rows)


def speaker_split(rows, idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (train, val) by speaker (about ``fraction`` of the speakers of each corpus in val)."""
    rng = np.random.default_rng(seed)
    speakers = np.array([f"{rows[i].corpus}/{rows[i].speaker}" for i in idx])
    val_speakers: set[str] = set()
    for corpus in sorted({rows[i].corpus for i in idx}):
        own = sorted({s for s in speakers if s.startswith(corpus + "/")})
        k = max(1, int(round(fraction * len(own))))
        val_speakers.update(rng.choice(own, size=k, replace=False).tolist())
    in_val = np.isin(speakers, sorted(val_speakers))
    return idx[~in_val], idx[in_val]


def _corpus_folds(rows: list, corpus: str) -> list:
    """The committed folds (``physioser/data/protocols/<corpus>.yaml``) where they fit these rows, else generated ones."""
    path = PROTOCOL_DIR / f"{corpus}.yaml"
    if path.is_file():
        try:
            return make_folds(rows, corpus, protocol=path)
        except ProtocolError:
            pass  # a class subset or another copy of the corpus: folds generated by the same rules
    return make_folds(rows, corpus)


def fold_plan(data, spans: dict[str, np.ndarray], corpora: list[str], *, test_corpus: str | None = None,
              seed: int = 0) -> list[tuple[int, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """[(fold id, train idx, val idx, {test corpus: test idx})] of a protocol (see the module doc).

    Multi-corpus plans have as many folds as the corpus with the fewest; the others are tested on
    their first folds only (``coverage`` in the results says which share of each corpus was tested)."""
    if test_corpus is not None:
        tr, va = speaker_split(data.rows, np.concatenate([spans[c] for c in corpora]), 0.15, seed)
        return [(0, tr, va, {test_corpus: spans[test_corpus]})]
    corpus_folds = {c: _corpus_folds([data.rows[i] for i in spans[c]], c) for c in corpora}
    plan = []
    for k in range(min(len(f) for f in corpus_folds.values())):
        tr = np.concatenate([spans[c][np.asarray(corpus_folds[c][k].train, dtype=np.int64)] for c in corpora])
        va = np.concatenate([spans[c][np.asarray(corpus_folds[c][k].val, dtype=np.int64)] for c in corpora])
        plan.append((k, tr, va, {c: spans[c][np.asarray(corpus_folds[c][k].test, dtype=np.int64)] for c in corpora}))
    return plan
