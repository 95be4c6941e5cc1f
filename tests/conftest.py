"""Shared test fixtures. Real corpora live at ../shared/corpora; tests that need them skip where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# DDS must stay on this machine in every test that may start ROS.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "SHM")

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
