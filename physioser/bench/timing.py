"""Side-by-side timing on a VM whose speed drifts: callables timed in turn, round after round, and
paired statistics over the rounds (used by the runtime benchmark and by `physioser export`'s int8
check)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

IDLE_S = 0.02


def time_rounds(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 2, idle_s: float = IDLE_S) -> dict[str, list[float]]:
    """Time several callables in turn, round after round (same load for each), each call after
    ``idle_s`` of idle time (as in streaming, where a call comes every hop); the ms of every call
    per name, in round order."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            time.sleep(idle_s)
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Median over rounds of a - b and of a / b (pairs of calls made next to each other, so slow
    drifts of the machine's speed cancel)."""
    return (round(statistics.median(x - y for x, y in zip(a, b)), 3), round(statistics.median(x / y for x, y in zip(a, b)), 3))
