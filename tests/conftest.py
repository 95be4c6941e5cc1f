"""Shared test fixtures. Real corpora live at ../shared/corpora; tests that need them skip where absent."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from physioser.paths import cache_dir
from physioser.ros.play import keep_dds_local

# DDS must stay on this machine, with no network socket, in every test that may start ROS (this
# process's players and the node processes alike).
keep_dds_local()

# librosa's numba kernels (cache=True) are compiled once into one cache that every test process
# shares (compiling them cost ~36 s per process): before any test runs, the kernels the tests use
# are compiled in a child process under a file lock (two processes filling a numba cache at once
# crashed one of them: segfault in librosa.yin's gufunc); later processes only load them.
NUMBA_CACHE = Path(os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba")))
_WARM_NUMBA = """
import numpy as np, librosa
from physioser.experiments.handcrafted import handcrafted_features
x = (0.1 * np.sin(2 * np.pi * 150 * np.arange(8000) / 16000)).astype(np.float32)
handcrafted_features(x)
librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160, n_mels=40)
librosa.stft(x, n_fft=400, hop_length=160)
"""


def pytest_configure(config) -> None:
    if hasattr(config, "workerinput") or importlib.util.find_spec("librosa") is None:
        return  # xdist workers start after the controller warmed the cache
    from importlib.metadata import version

    marker = NUMBA_CACHE / f"warm-librosa-{version('librosa')}-numba-{version('numba')}"
    NUMBA_CACHE.mkdir(parents=True, exist_ok=True)
    with open(NUMBA_CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            subprocess.run([sys.executable, "-c", _WARM_NUMBA], check=True)
            marker.touch()

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
