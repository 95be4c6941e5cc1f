"""Helpers shared by the fuzz tests (tests/test_fuzz_*.py).

``budget(n)``: the number of hypothesis examples a fuzzer runs — ``n`` under the default "ci"
profile, ``LONG_FACTOR * n`` under ``PHYSIOSER_HYPOTHESIS_PROFILE=long`` (the campaign whose counts
RELIABILITY.md reports; ``pytest --hypothesis-show-statistics`` prints them per test).

``check_rejection(exc, kinds, *names)``: a rejection must be one of the project's error classes and
its message must name what was rejected (the file, stream or message type).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

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
