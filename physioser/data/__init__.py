"""Corpus registry, readers, canonical labels and speaker-independent folds.

    from physioser.data import read_corpus, make_folds
    rows = read_corpus("RAVDESS", "../shared/corpora/RAVDESS")      # list[Row]
    folds = make_folds(rows, "RAVDESS")                              # list[Fold] (train/val/test indices)
    folds = make_folds(rows, "RAVDESS", protocol="physioser/data/protocols/RAVDESS.yaml")  # the committed folds
"""

from physioser.data import readers as _readers  # noqa: F401  (registers every corpus)
from physioser.data.folds import (
    PROTOCOL_DIR,
    SCHEMES,
    Fold,
    FoldSpec,
    Protocol,
    ProtocolError,
    load_protocol,
    make_folds,
    make_protocol,
)
from physioser.data.labels import CANONICAL, FOUR_CLASS_MAP, FOUR_CLASSES, to_four_class
from physioser.data.registry import (
    CORPORA,
    CorpusLayoutError,
    CorpusSpec,
    Listing,
    Row,
    Unmatched,
    UnmatchedFilesWarning,
    get_spec,
    list_corpus,
    read_corpus,
)

__all__ = [
    "CANONICAL",
    "CORPORA",
    "CorpusLayoutError",
    "CorpusSpec",
    "FOUR_CLASSES",
    "FOUR_CLASS_MAP",
    "Fold",
    "FoldSpec",
    "Listing",
    "PROTOCOL_DIR",
    "Protocol",
    "ProtocolError",
    "Row",
    "SCHEMES",
    "Unmatched",
    "UnmatchedFilesWarning",
    "get_spec",
    "list_corpus",
    "load_protocol",
    "make_folds",
    "make_protocol",
    "read_corpus",
    "to_four_class",
]
