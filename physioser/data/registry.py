"""Corpus registry: rows, corpus specs and the `read_corpus` entry point.

A corpus spec names the corpus, its language, its own label codes with their canonical
emotions, the layout a reader expects (file names, folders, label files), the corpus's
evaluation class set, its fold scheme and its known confounds.  Readers live in
:mod:`physioser.data.readers` and register themselves in :data:`CORPORA`.

Readers never drop a file silently: an audio file that does not fit the layout becomes an
:class:`Unmatched` entry with the reason, and :func:`read_corpus` warns about them
(:class:`UnmatchedFilesWarning`); :func:`list_corpus` returns them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from physioser.data.labels import CANONICAL

READ_EXTENSIONS = (".wav", ".flac")
"""Readers accept the published WAV and FLAC copies alike."""


@dataclass(frozen=True)
class Row:
    """One utterance.  ``label`` is the corpus's own code as published; ``canonical`` its
    canonical emotion; ``sentence`` the text/prompt id where the layout gives one;
    ``partition`` an official partition (IEMOCAP session, MSP-Podcast split) or None."""

    path: Path
    corpus: str
    language: str
    label: str
    canonical: str
    speaker: str
    gender: str | None = None  # "F", "M" or None where the corpus does not say
    sentence: str | None = None
    partition: str | None = None


@dataclass(frozen=True)
class Unmatched:
    """An audio file the reader could not place, with the reason."""

    path: Path
    reason: str


@dataclass
class Listing:
    rows: list[Row] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)


class CorpusLayoutError(ValueError):
    """A folder that yields no rows for a corpus; the message says which layout was expected."""


class UnmatchedFilesWarning(UserWarning):
    """Audio files under a corpus root that fit no pattern of its layout."""


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    language: str  # ISO 639-1 (the main language; rows of bilingual corpora carry their own)
    description: str
    layout: str  # the published layout the reader expects
    labels: dict[str, str]  # corpus code -> canonical emotion
    reader: Callable[["CorpusSpec", Path], Listing]
    classes: tuple[str, ...] | None = None  # canonical class set for intra-corpus evaluation (None: all)
    folds: str = "speaker"  # a scheme of physioser.data.folds.SCHEMES
    official_split: dict[str, tuple[str, ...]] | None = None  # "official_split": partitions of train/val/test
    confounds: tuple[str, ...] = ()
    url: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.labels.values()) - set(CANONICAL))
        if unknown:
            raise ValueError(f"{self.name}: labels map to non-canonical emotions {unknown}")

    @property
    def class_set(self) -> tuple[str, ...]:
        """Canonical classes used for intra-corpus evaluation (the corpus's own set by default)."""
        if self.classes is not None:
            return self.classes
        return tuple(dict.fromkeys(self.labels.values()))

    def read(self, root: str | Path) -> Listing:
        root = Path(root)
        if not root.is_dir():
            raise CorpusLayoutError(f"{self.name}: {root} is not a directory. Expected layout: {self.layout}")
        return self.reader(self, root)

    def row(
        self,
        path: Path,
        label: str,
        speaker: str,
        gender: str | None = None,
        sentence: str | None = None,
        partition: str | None = None,
        language: str | None = None,
    ) -> Row | Unmatched:
        """A row for ``label`` (a corpus code), or Unmatched when the code is not one of the corpus's.
        ``language`` overrides the corpus language for bilingual corpora."""
        canonical = self.labels.get(label)
        if canonical is None:
            return Unmatched(path, f"label code {label!r} is not one of {self.name}'s ({', '.join(self.labels)})")
        return Row(path, self.name, language or self.language, label, canonical, speaker, gender, sentence, partition)


CORPORA: dict[str, CorpusSpec] = {}


def register(spec: CorpusSpec) -> CorpusSpec:
    if spec.name in CORPORA:
        raise ValueError(f"corpus {spec.name} registered twice")
    CORPORA[spec.name] = spec
    return spec


def get_spec(name: str) -> CorpusSpec:
    for key, spec in CORPORA.items():
        if key.lower() == name.lower():
            return spec
    raise KeyError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")


def audio_files(root: Path) -> list[Path]:
    """Every .wav/.flac file under ``root`` (any case), sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in READ_EXTENSIONS and p.is_file())


def list_corpus(name: str, root: str | Path) -> Listing:
    """Rows and unmatched files of corpus ``name`` under ``root``; raises CorpusLayoutError on no rows."""
    spec = get_spec(name)
    listing = spec.read(root)
    if not listing.rows:
        found = f"{len(listing.unmatched)} audio files matched no pattern" if listing.unmatched else "no audio files"
        raise CorpusLayoutError(
            f"{spec.name}: {root} yields no rows ({found}). Expected layout: {spec.layout}"
        )
    return listing


def read_corpus(name: str, root: str | Path) -> list[Row]:
    """Rows of corpus ``name`` under ``root`` (sorted by path).

    Warns (:class:`UnmatchedFilesWarning`) with the count and first paths of files that fit no
    pattern; raises :class:`CorpusLayoutError` naming the expected layout when nothing matches.
    """
    listing = list_corpus(name, root)
    if listing.unmatched:
        shown = "; ".join(f"{u.path}: {u.reason}" for u in listing.unmatched[:3])
        more = f" (and {len(listing.unmatched) - 3} more)" if len(listing.unmatched) > 3 else ""
        warnings.warn(
            f"{name}: {len(listing.unmatched)} files under {root} fit no pattern of the layout: {shown}{more}",
            UnmatchedFilesWarning,
            stacklevel=2,
        )
    return listing.rows
