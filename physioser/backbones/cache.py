"""On-disk cache of frozen-backbone features.

Layout: ``<root>/features/<backbone name>-<spec key>/<hh>/<sha256 of file content>.safetensors``
where the spec key hashes the backbone's name, code version, options, checkpoint fingerprint and
``CACHE_VERSION``. Each entry holds

- ``hidden_states`` [L, T, D] (float16 by default): every layer, frame level, valid frames only;
- ``mean`` and ``std`` [L, D] float32: per-layer statistics over time (fast utterance-level training);

and metadata (cache version, spec key, samples, source path). Writes go to a temporary file in
the same directory and are published with ``os.replace``, so readers never see a partial entry
and two processes writing the same entry at once both succeed (the last rename wins; both wrote
the same bytes). An entry whose metadata disagrees with the current version key, or that cannot
be read, is recomputed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from physioser.backbones.base import Backbone
from physioser.paths import cache_dir
from physioser.runtime.integrity import sha256_file

CACHE_VERSION = "1"


@dataclass
class CachedFeatures:
    """One cached clip: hidden_states [L, T, D], mean/std [L, D] over valid frames."""

    hidden_states: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    num_samples: int
    content_hash: str

    def pooled(self) -> torch.Tensor:
        """[L, 2·D]: per-layer mean and standard deviation over time."""
        return torch.cat([self.mean, self.std], dim=-1)


@dataclass
class ExtractReport:
    """Summary of one ``FeatureCache.extract`` run."""

    files: int = 0
    hits: int = 0
    computed: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    compute_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def files_per_second(self) -> float:
        return self.files / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def audio_seconds_per_second(self) -> float:
        """Seconds of audio processed per wall-clock second (higher is faster)."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "hits": self.hits,
            "computed": self.computed,
            "failed": len(self.failures),
            "warnings": len(self.warnings),
            "audio_seconds": round(self.audio_seconds, 2),
            "wall_seconds": round(self.wall_seconds, 2),
            "files_per_second": round(self.files_per_second, 2),
            "audio_seconds_per_second": round(self.audio_seconds_per_second, 2),
        }


def pad_batch(hidden_states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch cached clips: list of [L, T_i, D] -> ([B, L, max T, D] zero-padded, lengths [B] int64)."""
    if not hidden_states:
        raise ValueError("pad_batch needs at least one clip")
    lengths = torch.tensor([h.shape[1] for h in hidden_states], dtype=torch.long)
    layers, _, dim = hidden_states[0].shape
    batch = hidden_states[0].new_zeros((len(hidden_states), layers, int(lengths.max()), dim))
    for i, h in enumerate(hidden_states):
        batch[i, :, : h.shape[1]] = h
    return batch, lengths


def _default_loader(path: str) -> np.ndarray:
    from physioser.audio import load_audio

    return load_audio(path)


class FeatureCache:
    """Feature cache rooted at ``root`` (default ``cache_dir()``).

    ``loader(path) -> float32 mono 16 kHz array`` defaults to ``physioser.audio.load_audio``.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        dtype: torch.dtype = torch.float16,
        loader: Callable[[str], np.ndarray] | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.dtype = dtype
        self.loader = loader or _default_loader
        self._hashes: dict[tuple[str, int, int], str] = {}

    # -- keys ------------------------------------------------------------------------------
    def spec_key(self, backbone: Backbone) -> str:
        blob = json.dumps({"cache": CACHE_VERSION, "dtype": str(self.dtype), "backbone": backbone.spec()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def backbone_dir(self, backbone: Backbone) -> Path:
        return self.root / "features" / f"{backbone.name}-{self.spec_key(backbone)}"

    def content_hash(self, path: str | Path) -> str:
        """sha256 of the file's bytes (memoised per path, size and mtime)."""
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = sha256_file(path)
        return self._hashes[key]

    def entry_path(self, content_hash: str, backbone: Backbone) -> Path:
        return self.backbone_dir(backbone) / content_hash[:2] / f"{content_hash}.safetensors"

    # -- read ------------------------------------------------------------------------------
    def load(self, path: str | Path, backbone: Backbone) -> CachedFeatures | None:
        """The cached entry of ``path`` for ``backbone``, or None when absent or stale."""
        content_hash = self.content_hash(path)
        return self._read(self.entry_path(content_hash, backbone), content_hash, backbone)

    def _tensors(self, entry: Path, backbone: Backbone, keys: tuple[str, ...] | None = None) -> tuple[dict, dict] | None:
        """(metadata, tensors ``keys`` or all) of a current entry; None when absent, stale or unreadable."""
        if not entry.is_file():
            return None
        try:
            with safe_open(str(entry), framework="pt") as handle:
                meta = handle.metadata() or {}
                if meta.get("cache_version") != CACHE_VERSION or meta.get("spec_key") != self.spec_key(backbone):
                    return None
                return meta, {key: handle.get_tensor(key) for key in (keys or handle.keys())}
        except (SafetensorError, OSError, ValueError, RuntimeError):
            return None

    def _read(self, entry: Path, content_hash: str, backbone: Backbone) -> CachedFeatures | None:
        found = self._tensors(entry, backbone)
        if found is None or not {"hidden_states", "mean", "std"} <= found[1].keys():
            return None
        meta, tensors = found
        return CachedFeatures(tensors["hidden_states"], tensors["mean"], tensors["std"], int(meta["num_samples"]), content_hash)

    def load_statistics(self, path: str | Path, backbone: Backbone) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, std) [L, D] over time of the cached entry of ``path`` without reading its frames;
        None when absent or stale."""
        found = self._tensors(self.entry_path(self.content_hash(path), backbone), backbone, ("mean", "std"))
        return None if found is None else (found[1]["mean"], found[1]["std"])

    # -- compute ---------------------------------------------------------------------------
    def compute(self, waveform: np.ndarray, backbone: Backbone, content_hash: str = "") -> CachedFeatures:
        """Features of one mono 16 kHz clip (not stored)."""
        # the backbone's device (CPU or GPU); front ends such as fbank hold only buffers
        device = next(itertools.chain(backbone.parameters(), backbone.buffers()), torch.empty(0)).device
        wave = torch.as_tensor(np.ascontiguousarray(waveform), dtype=torch.float32).unsqueeze(0)
        with torch.inference_mode():
            hidden, lengths = backbone(wave.to(device), torch.tensor([wave.shape[1]], dtype=torch.long, device=device))
        frames = int(lengths[0])
        stacked = torch.stack([h[0, :frames].float().cpu() for h in hidden], dim=0)  # [L, T, D]
        std, mean = torch.std_mean(stacked, dim=1, correction=0)
        return CachedFeatures(stacked.to(self.dtype).contiguous(), mean.contiguous(), std.contiguous(), wave.shape[1], content_hash)

    def get_or_compute_entry(self, path: str | Path, backbone: Backbone) -> tuple[CachedFeatures, bool]:
        """(entry, was_hit). Computes and stores the entry on a miss."""
        path = str(path)
        content_hash = self.content_hash(path)
        entry_path = self.entry_path(content_hash, backbone)
        cached = self._read(entry_path, content_hash, backbone)
        if cached is not None:
            return cached, True
        waveform = self.loader(path)
        try:
            features = self.compute(waveform, backbone, content_hash)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
        self._write(entry_path, features, backbone, source=path)
        return features, False

    def get_or_compute(self, path: str | Path, backbone: Backbone) -> torch.Tensor:
        """Hidden states [L, T, D] of the clip at ``path`` (cache dtype), computing them on a miss."""
        return self.get_or_compute_entry(path, backbone)[0].hidden_states

    def _write(self, entry: Path, features: CachedFeatures, backbone: Backbone, *, source: str) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        spec_file = self.backbone_dir(backbone) / "spec.json"
        if not spec_file.exists():
            self._atomic(spec_file, lambda tmp: Path(tmp).write_text(json.dumps(backbone.spec(), indent=1, sort_keys=True, default=str)))
        metadata = {
            "cache_version": CACHE_VERSION,
            "spec_key": self.spec_key(backbone),
            "backbone": backbone.name,
            "num_samples": str(features.num_samples),
            "frame_rate": str(backbone.frame_rate),
            "source": source,
        }
        tensors = {"hidden_states": features.hidden_states, "mean": features.mean, "std": features.std}
        self._atomic(entry, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    @staticmethod
    def _atomic(target: Path, write: Callable[[str], Any]) -> None:
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(handle)
        try:
            write(tmp)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- bulk ------------------------------------------------------------------------------
    def extract(
        self,
        items: Iterable[Any],
        backbone: Backbone,
        *,
        progress: bool = True,
        on_error: str = "raise",
    ) -> ExtractReport:
        """Fill the cache for every item (a path, or a row with a ``path`` attribute).

        ``on_error="skip"`` records failing files in ``report.failures`` instead of raising.
        Warnings raised while loading (e.g. ``physioser.audio`` DC offset, clipping) are collected
        in ``report.warnings`` rather than printed through the progress bar.
        """
        import warnings

        from tqdm import tqdm

        paths = [str(getattr(item, "path", item)) for item in items]
        report = ExtractReport()
        start = time.perf_counter()
        bar = tqdm(paths, desc=f"features {backbone.name}", unit="file", disable=not progress, dynamic_ncols=True)
        for path in bar:
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    features, hit = self.get_or_compute_entry(path, backbone)
                report.warnings.extend(str(w.message) for w in caught)
            except (ValueError, OSError) as error:
                if on_error != "skip":
                    raise
                report.failures.append(f"{path}: {error}" if path not in str(error) else str(error))
                continue
            report.files += 1
            report.audio_seconds += features.num_samples / 16000
            if hit:
                report.hits += 1
            else:
                report.computed += 1
                report.compute_seconds += time.perf_counter() - t0
            bar.set_postfix(hits=report.hits, computed=report.computed, refresh=False)
        report.wall_seconds = time.perf_counter() - start
        return report
