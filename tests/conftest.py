"""Shared test fixtures. Real corpora live at ../shared/corpora; tests that need them skip where absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# DDS must stay on this machine in every test that may start ROS.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "SHM")

# librosa's numba kernels are compiled with cache=True into site-packages; two xdist workers filling
# that cache at once on a fresh venv crashed one of them (segfault in librosa.yin's gufunc, seen in
# CI). Each test process gets its own numba cache instead.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"physioser-numba-{os.getpid()}"))

# hypothesis profiles: "ci" (default, modest example counts) and "long" (the fuzzing campaign
# reported in RELIABILITY.md); choose with PHYSIOSER_HYPOTHESIS_PROFILE=long. Tests that set
# their own max_examples keep them; tests/fuzzing.py scales the fuzzers' budgets by profile.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("PHYSIOSER_HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPORA_ROOT = Path(os.environ.get("PHYSIOSER_CORPORA", REPO_ROOT.parent / "shared" / "corpora"))


def corpus_dir(name: str) -> Path:
    """Path of one real corpus under ../shared/corpora, or skip the test saying why."""
    path = CORPORA_ROOT / name
    if not path.is_dir():
        pytest.skip(f"real corpus {name} not found at {path} (../shared/corpora is absent here)")
    return path


@pytest.fixture
def corpora_root() -> Path:
    if not CORPORA_ROOT.is_dir():
        pytest.skip(f"../shared/corpora not found at {CORPORA_ROOT}")
    return CORPORA_ROOT
