"""Reader of CTranslate2 ``model.bin`` files (binary format versions 1–6), without ctranslate2.

Layout (little endian), as written by ``ctranslate2.specs.ModelSpec._serialize``:

    uint32 binary_version
    [version >= 2]  string spec_name, uint32 spec_revision
    uint32 num_variables
    num_variables × { string name, uint8 rank, uint32 dims[rank],
                      [version >= 4] uint8 dtype_id, uint32 num_bytes
                      [version <  4] uint8 item_size, uint32 num_items,
                      bytes data }
    [version >= 3]  uint32 num_aliases, num_aliases × { string alias, string target }

where ``string`` is uint16 length (including the trailing NUL) + bytes + NUL, and dtype ids follow
``DataType`` in ``include/ctranslate2/types.h``: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
5 bfloat16.

A model split into byte ranges over several files (e.g. ``model.bin.part1`` + ``model.bin.part2``, as
packages under a size limit ship it) is read by passing the parts in order: their bytes are joined
in memory, never written out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SUPPORTED_VERSIONS = range(1, 7)
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_ITEM_SIZE_DTYPES = {4: np.float32, 2: np.int16, 1: np.int8}


class CheckpointError(ValueError):
    """A checkpoint or weight file (a backbone's, or a trained model's) is missing, truncated, not of
    the expected kind or does not fit the model; the message names the file."""


@dataclass
class CT2Model:
    path: Path
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, torch.Tensor] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise CheckpointError(f"{self.path}: variable '{name}' missing from the CTranslate2 model")
        return self.variables[name]


class _Reader:
    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise CheckpointError(
                f"{self.path}: truncated or corrupt CTranslate2 model (needed {size} bytes for {what} "
                f"at offset {self.pos}, file has {len(self.data)})"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        size = self.unpack("H", what)
        raw = self.take(size, what)
        if size == 0 or raw[-1] != 0:
            raise CheckpointError(f"{self.path}: corrupt CTranslate2 model (bad string for {what} at offset {self.pos})")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise CheckpointError(f"{self.path}: corrupt CTranslate2 model ({what} is not UTF-8)") from error


def model_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The file(s) of a checkpoint argument: a ``model.bin``, a folder holding one, or the parts of a
    split ``model.bin`` in order. Raises ``CheckpointError`` naming a missing file."""
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    if not paths:
        raise CheckpointError("no CTranslate2 model file given (empty list of parts)")
    if len(paths) == 1 and paths[0].is_dir():
        paths = [paths[0] / "model.bin"]
    for part in paths:
        if not part.is_file():
            raise CheckpointError(f"{part}: CTranslate2 model file not found")
    return paths


def read_ct2_model(path: str | Path | Sequence[str | Path], *, prefix: str | None = None) -> CT2Model:
    """Read every variable of a CTranslate2 ``model.bin`` (or only those starting with ``prefix``).

    ``path``: the file, a folder holding ``model.bin``, or the parts of a split file in order.
    Raises ``CheckpointError`` naming the file when it is missing, truncated or not CTranslate2.
    """
    parts = model_files(path)
    path = parts[0] if len(parts) == 1 else Path(f"{parts[0]} (+{len(parts) - 1} more part{'s' if len(parts) > 2 else ''})")
    reader = _Reader(path, b"".join(part.read_bytes() for part in parts))
    version = reader.unpack("I", "binary version")
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"{path}: not a CTranslate2 model (binary version {version}, expected 1–6)")
    spec_name, revision = "", 1
    if version >= 2:
        spec_name = reader.string("spec name")
        revision = reader.unpack("I", "spec revision")
    model = CT2Model(path, version, spec_name, revision)
    count = reader.unpack("I", "variable count")
    for _ in range(count):
        name = reader.string("variable name")
        rank = reader.unpack("B", f"rank of {name}")
        dims = [reader.unpack("I", f"shape of {name}") for _ in range(rank)]
        if version >= 4:
            dtype_id = reader.unpack("B", f"dtype of {name}")
            num_bytes = reader.unpack("I", f"size of {name}")
            if dtype_id not in _DTYPES:
                raise CheckpointError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
            dtype = _DTYPES[dtype_id]
        else:
            item_size = reader.unpack("B", f"item size of {name}")
            num_bytes = reader.unpack("I", f"size of {name}") * item_size
            dtype = _ITEM_SIZE_DTYPES[item_size]
        raw = reader.take(num_bytes, f"data of {name}")
        if prefix is not None and not name.startswith(prefix):
            continue
        if dtype == "bfloat16":
            array = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            tensor = torch.from_numpy(array.view(np.float32).copy())
        else:
            tensor = torch.from_numpy(np.frombuffer(raw, dtype=dtype).copy())
        expected = int(np.prod(dims)) if dims else 1
        if tensor.numel() != expected:
            raise CheckpointError(f"{path}: variable {name} holds {tensor.numel()} values, shape {dims} needs {expected}")
        model.variables[name] = tensor.reshape(dims)
    if version >= 3:
        for _ in range(reader.unpack("I", "alias count")):
            alias = reader.string("alias")
            model.aliases[alias] = reader.string("alias target")
    return model
