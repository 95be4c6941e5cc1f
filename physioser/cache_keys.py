"""Cache keys of a list of corpus rows: the content digests of their audio, in order.

Owned here, below :mod:`physioser.features` and :mod:`physioser.conditions.statistics`, which both key
their caches this way."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

__all__ = ["audio_digests", "rows_key"]


def audio_digests(rows: Sequence) -> list[str]:
    """SHA-256 of every row's audio file, in order (read once per feature set)."""
    from physioser.runtime.integrity import sha256_file

    return [sha256_file(row.path) for row in rows]


def rows_key(digests: Sequence[str], extra: dict) -> str:
    """Cache key of the rows' audio, in order: content digests, not paths or times, so a cache stays
    valid when the corpora move (another mount, another machine) and goes stale when a file changes."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for digest in digests:
        h.update(f"{digest}\n".encode())
    return h.hexdigest()[:16]
