"""SHA256SUMS of a model folder (``sha256sum`` format), verified before anything in it is loaded.

The shipped default model must carry a ``SHA256SUMS`` covering model.safetensors and
config.yaml, a model bundle one covering its graph, metadata and model card; for any other
folder the file is optional, but every file it lists is checked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from physioser.paths import DEFAULT_MODEL_DIRS, default_model_dir
from physioser.runtime.contract import EngineError

REQUIRED_SUMS = ("model.safetensors", "config.yaml")
_SUM_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _is_default(model_dir: Path) -> bool:
    try:
        return model_dir.resolve() in {default_model_dir(b).resolve() for b in (None, *DEFAULT_MODEL_DIRS)}
    except OSError:
        return False


def verify_integrity(model_dir: Path, *, required: bool | None = None, covering: Sequence[str] = REQUIRED_SUMS) -> dict[str, str]:
    """Check every file listed in ``model_dir/SHA256SUMS`` against its hash; return {file: sha256}.

    ``required`` (default: only for the shipped default model) makes a missing ``SHA256SUMS``, or
    one that does not cover every file of ``covering``, an error too.
    """
    model_dir = Path(model_dir)
    required = _is_default(model_dir) if required is None else required
    sums = model_dir / "SHA256SUMS"
    if not sums.is_file():
        if required:
            raise EngineError(f"{model_dir}: SHA256SUMS is missing, so the model cannot be verified (reinstall physioser)")
        return {}
    listed: dict[str, str] = {}
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
        digest = sha256_file(path)
        if digest != match["digest"].lower():
            raise EngineError(f"{path}: integrity check failed (sha256 differs from SHA256SUMS): the file is corrupt or was replaced")
        listed[name] = digest
    uncovered = [n for n in covering if n not in listed]
    if required and uncovered:
        raise EngineError(f"{sums} does not list {uncovered}, so the model cannot be verified (reinstall physioser)")
    return listed


def read_verified(path: Path, sha256: str | None, what: str = "model file") -> bytes:
    """The bytes of ``path``, refused unless they hash to ``sha256`` (the digest SHA256SUMS lists; None: unchecked)."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise EngineError(f"cannot read {what} {path}: {exc}") from exc
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise EngineError(f"{path}: integrity check failed (sha256 differs from SHA256SUMS): the file is corrupt or was replaced")
    return blob


def write_integrity(model_dir: Path, names: list[str]) -> Path:
    """Write ``SHA256SUMS`` for ``names`` in ``model_dir``."""
    sums = model_dir / "SHA256SUMS"
    sums.write_text("".join(f"{sha256_file(model_dir / n)}  {n}\n" for n in names))
    return sums
