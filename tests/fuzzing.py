"""Helpers shared by the fuzz tests (tests/test_fuzz_*.py).

``budget(n)``: the number of hypothesis examples a fuzzer runs — ``n`` under the default "ci"
profile, ``LONG_FACTOR * n`` under ``PHYSIOSER_HYPOTHESIS_PROFILE=long`` (the campaign whose counts
RELIABILITY.md reports; ``pytest --hypothesis-show-statistics`` prints them per test).

``check_rejection(exc, kinds, *names)``: a rejection must be one of the project's error classes and
its message must name what was rejected (the file, stream or message type).

``byte_edits(...)`` / ``mutate(raw, edits)``: flip, cut or insert bytes anywhere in a valid file.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

from hypothesis import strategies as st

LONG_FACTOR = 10
PROFILE = os.environ.get("PHYSIOSER_HYPOTHESIS_PROFILE", "ci")


def budget(n: int) -> int:
    return n * LONG_FACTOR if PROFILE == "long" else n


def check_rejection(exc: BaseException, kinds: tuple[type, ...], *names: str) -> None:
    assert isinstance(exc, kinds), f"rejected with {type(exc).__name__}: {exc} (expected one of {[k.__name__ for k in kinds]})"
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} without a message"
    for name in names:
        assert name in text, f"error does not name {name!r}: {text}"


@contextmanager
def only_warnings(*allowed: type[Warning]):
    """Fail on any warning that is not one of ``allowed`` (e.g. numpy RuntimeWarning: overflow in cast)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    stray = [w for w in caught if not issubclass(w.category, allowed)]
    assert not stray, "unexpected warnings: " + "; ".join(f"{w.category.__name__}: {w.message}" for w in stray)


def byte_edits(*, max_blob: int, min_size: int = 0, max_size: int):
    """Lists of (op, relative position, bytes) edits for ``mutate``."""
    edit = st.tuples(st.sampled_from(["flip", "cut", "insert"]), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=max_blob))
    return st.lists(edit, min_size=min_size, max_size=max_size)


def mutate(raw: bytes, edits) -> bytes:
    """``raw`` with each edit applied in turn: XOR-flip bytes, truncate, or insert bytes at a position."""
    data = bytearray(raw)
    for op, where, blob in edits:
        i = int(where * max(0, len(data) - 1))
        if op == "flip":
            data[i : i + len(blob)] = bytes(a ^ b for a, b in zip(data[i : i + len(blob)], blob))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = blob
    return bytes(data)
