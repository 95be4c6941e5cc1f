"""Model bundles: the one folder a deployment needs, written by ``physioser export``.

A bundle holds the ONNX graph (``model.onnx``), its contract metadata (``metadata.json``: sample
rate, window, hop, classes, versions — what the runtime reads), the model card
(``MODEL_CARD.md``) and ``SHA256SUMS`` covering all three, and optionally a speaker encoder
(``voice.onnx``, :mod:`physioser.runtime.voice`) and the training speakers that speaker adaptation
measures against (``speaker_reference.npz``, :class:`~physioser.runtime.adaptation.SpeakerReference`),
listed there too. :func:`read_bundle` verifies the hashes before anything is used, so a replaced or
corrupt file is refused.

The default bundle (the shipped model of ``physioser/assets/default``, exported) lives in the
cache at :func:`default_bundle_dir`, keyed by the weights, the physioser version and the graph
version; ``physioser export --checkpoint default`` builds it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import physioser
from physioser.paths import cache_dir, default_model_dir
from physioser.runtime.adaptation import REFERENCE_FILE
from physioser.runtime.contract import GRAPH_VERSION, EngineError
from physioser.runtime.integrity import sha256_file, verify_integrity
from physioser.runtime.voice import VOICE_GRAPH

GRAPH = "model.onnx"
METADATA = "metadata.json"
CARD = "MODEL_CARD.md"
BUNDLE_FILES = (GRAPH, METADATA, CARD)
OPTIONAL_FILES = (VOICE_GRAPH, REFERENCE_FILE)


def bundle_files(path: Path) -> list[str]:
    """The files of the bundle folder ``path`` that its SHA256SUMS must list: the required ones and the
    optional ones it holds."""
    return [*BUNDLE_FILES, *(name for name in OPTIONAL_FILES if (path / name).exists())]


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a folder laid out as a bundle (its contents are checked by :func:`read_bundle`)."""
    return path.is_dir() and (path / METADATA).is_file()


def read_bundle(path: Path) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """Verify a bundle and return (graph path, metadata, {file: sha256} of the files SHA256SUMS lists)."""
    digests = verify_integrity(path, required=True, covering=BUNDLE_FILES)
    unlisted = [name for name in bundle_files(path) if name not in digests]
    if unlisted:
        raise EngineError(f"{path}: {' and '.join(unlisted)} {'is' if len(unlisted) == 1 else 'are'} not listed in SHA256SUMS, "
                          "so it cannot be verified (export the bundle again)")
    try:
        metadata = json.loads((path / METADATA).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{path / METADATA}: not readable JSON ({type(exc).__name__})") from exc
    if not isinstance(metadata, dict):
        raise EngineError(f"{path / METADATA}: must hold a JSON object, got {type(metadata).__name__}")
    return path / GRAPH, metadata, digests


def checkpoint_key(model_dir: Path) -> str:
    """16 hex digits naming what ``physioser export`` builds from a model directory."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.yaml"):
        path = model_dir / name
        if not path.is_file():
            raise EngineError(f"{model_dir}: {name} missing; not a physioser model directory (see `physioser train`)")
        h.update(sha256_file(path).encode())
    if (model_dir / REFERENCE_FILE).is_file():
        h.update(sha256_file(model_dir / REFERENCE_FILE).encode())
    h.update(f"{physioser.__version__} graph {GRAPH_VERSION}".encode())
    return h.hexdigest()[:16]


def ships_default(backbone: str | None) -> bool:
    """Whether a default model trained on ``backbone`` ships (:func:`~physioser.paths.default_model_dir`)."""
    return (default_model_dir(backbone) / "config.yaml").is_file()


def default_bundle_dir(backbone: str | None = None) -> Path:
    """Where the bundle of the shipped default model (of ``backbone``, see
    :func:`~physioser.paths.default_model_dir`) is built (``<cache>/bundles/<folder>-<key>``)."""
    model_dir = default_model_dir(backbone)
    return cache_dir() / "bundles" / f"{model_dir.name}-{checkpoint_key(model_dir)}"
