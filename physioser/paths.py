"""Where physioser keeps its files: the cache, the corpora, the package's own data.

One owner for every location, each overridable by an environment variable:

- :func:`cache_dir`: ``$PHYSIOSER_CACHE`` or ``~/.cache/physioser`` (an empty variable counts as
  unset) — feature, quartet and pooled caches, built ONNX graphs;
- :func:`corpora_root`: ``$PHYSIOSER_CORPORA`` or ``../shared/corpora`` beside the source checkout;
- :func:`noise_root`: ``$PHYSIOSER_NOISE`` or ``../shared/noise`` beside the source checkout (real noise
  recordings of the robot conditions and of training augmentation);
- :func:`runs_dir`: ``$PHYSIOSER_RUNS`` or ``<cache>/runs`` — training checkpoints of evaluations
  (never the source tree);
- :data:`PACKAGE_DIR`: the installed package, whose data files (hardware profiles, fold protocols,
  the default model) travel with the wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent
"""The checkout the package was imported from (in an installed wheel: site-packages)."""


def cache_dir() -> Path:
    """physioser's cache folder: ``$PHYSIOSER_CACHE`` or ``~/.cache/physioser``."""
    return Path(os.environ.get("PHYSIOSER_CACHE") or Path.home() / ".cache" / "physioser").expanduser()


def portable(path: str | Path) -> str:
    """``path`` as results record it: inside the cache as ``$PHYSIOSER_CACHE/...``, so that a result
    names the model it measured without the machine's folders."""
    path = Path(path)
    try:
        return "$PHYSIOSER_CACHE/" + path.resolve().relative_to(cache_dir().resolve()).as_posix()
    except ValueError:
        return str(path)


def runs_dir() -> Path:
    """Where evaluations keep their fold checkpoints: ``$PHYSIOSER_RUNS`` or ``<cache>/runs``."""
    return Path(os.environ.get("PHYSIOSER_RUNS") or cache_dir() / "runs").expanduser()


def corpora_root() -> Path:
    """The folder holding one sub-folder per corpus: ``$PHYSIOSER_CORPORA`` or ``../shared/corpora``."""
    return Path(os.environ.get("PHYSIOSER_CORPORA") or SOURCE_ROOT.parent / "shared" / "corpora").expanduser()


def noise_root() -> Path:
    """The folder of real noise recordings: ``$PHYSIOSER_NOISE`` or ``../shared/noise``."""
    return Path(os.environ.get("PHYSIOSER_NOISE") or SOURCE_ROOT.parent / "shared" / "noise").expanduser()


DEFAULT_MODEL_DIR = PACKAGE_DIR / "assets" / "default"
DEFAULT_BACKBONE = "whisper-tiny.en"
"""The backbone of the default model, and of a hardware profile that names none."""
DEFAULT_MODEL_DIRS = {DEFAULT_BACKBONE: DEFAULT_MODEL_DIR, "whisper-base": PACKAGE_DIR / "assets" / "default-base"}
"""The shipped default model of each backbone a hardware profile may name (``backbone:``, docs/backbones.md)."""


def default_model_dir(backbone: str | None = None) -> Path:
    """The shipped default model: ``$PHYSIOSER_DEFAULT_MODEL`` if set, else the one trained on ``backbone``
    (a hardware profile's), else ``physioser/assets/default`` (whisper-tiny.en)."""
    if os.environ.get("PHYSIOSER_DEFAULT_MODEL"):
        return Path(os.environ["PHYSIOSER_DEFAULT_MODEL"])
    return DEFAULT_MODEL_DIRS.get(backbone or "", DEFAULT_MODEL_DIR)
