"""Training data: cached, pooled backbone statistics and cached VAP quartets of corpus rows.

For each utterance the training path needs (see :class:`physioser.model.PhysioSER.forward_cached`):

* ``backbone_segments`` [L, 4, D]: the frozen backbone's hidden states of every layer, mean-pooled
  over 4 contiguous segments of the utterance, with ``backbone_counts`` [4] frames per segment.
  They are computed once from the backbone feature cache (``physioser features extract``)
  and kept in ``<cache>/pooled/<backbone spec key>/<corpus>-<rows hash>.safetensors``;
* ``quartet`` [4, F, T] (float16): the VAP front end's normalised quartet, cached in
  ``<cache>/quartets/<front-end hash>/<corpus>-<rows hash>.safetensors``.

With ``train.augment`` > 0, :func:`add_augmented_copies` appends the augmented copies of the training
rows (utterance statistics of augmented audio, :mod:`physioser.conditions.statistics`).

Both caches are keyed by everything that changes their content (backbone spec, front-end config,
the SHA-256 of every file), so a stale cache is never read and a moved corpus keeps its cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from physioser.cache_keys import audio_digests, rows_key
from physioser.model.config import Config
from physioser.model.physioser import CACHE_SEGMENTS
from physioser.model.pooling import segment_mean
from physioser.paths import cache_dir

__all__ = ["FeatureSet", "add_augmented_copies", "class_names_for", "select_rows", "build_feature_set"]


def class_names_for(cfg: Config, corpora: Sequence[str]) -> list[str]:
    """The class set: ``cfg.classes`` when given, else the corpus's own canonical class set
    (several corpora without explicit classes: the classes they all share, in canonical order)."""
    from physioser.data.labels import CANONICAL
    from physioser.data.registry import get_spec

    if cfg.classes:
        return list(cfg.classes)
    sets = [set(get_spec(c).class_set) for c in corpora]
    common = set.intersection(*sets)
    if not common:
        raise ValueError(f"corpora {list(corpora)} share no class; set classes: [...] explicitly")
    return [c for c in CANONICAL if c in common]


def select_rows(rows: Sequence, class_names: Sequence[str]) -> list:
    """Rows whose canonical label (4-class mapping applied when the class set is the 4-class set) is a class."""
    from physioser.data.labels import FOUR_CLASSES, to_four_class

    four = tuple(class_names) == FOUR_CLASSES or set(class_names) == set(FOUR_CLASSES)
    out = []
    for row in rows:
        label = to_four_class(row.canonical) if four else row.canonical
        if label in class_names:
            out.append(row)
    return out


def labels_of(rows: Sequence, class_names: Sequence[str]) -> np.ndarray:
    """Integer labels of ``rows`` in ``class_names`` (the four-class set folds the others into it)."""
    from physioser.data.labels import FOUR_CLASSES, to_four_class

    four = set(class_names) == set(FOUR_CLASSES)
    names = list(class_names)
    return np.array([names.index(to_four_class(r.canonical) if four else r.canonical) for r in rows], dtype=np.int64)


def _load_waveform(row, max_seconds: float | None) -> np.ndarray:
    from physioser.audio import load_audio

    x = load_audio(row.path)
    if max_seconds:
        n = int(max_seconds * 16000)
        if len(x) > n:
            start = (len(x) - n) // 2
            x = x[start : start + n]
    return x


RECORDING, AUGMENTED, WINDOW, AUGMENTED_WINDOW = "recording", "augmented", "window", "augmented window"
"""What a row of a :class:`FeatureSet` is: a recording, or a training copy of one made by
:func:`add_augmented_copies` (``train.augment``, ``train.stream_windows``, ``train.augmented_windows``)."""


@dataclass
class FeatureSet:
    """Rows with labels and their cached features; ``collate(indices)`` builds a padded batch."""

    rows: list
    labels: np.ndarray
    class_names: list[str]
    backbone_segments: torch.Tensor | None = None  # [N, L, 4, D] float32
    backbone_counts: torch.Tensor | None = None  # [N, 4] float32
    backbone_spread: torch.Tensor | None = None  # [N, L, D] float32 frame standard deviations (statistics pooling)
    quartets: list[torch.Tensor] | None = None  # N × [4, F, T_i] float16
    copy_kinds: np.ndarray | None = None  # [N] str: RECORDING or a kind of copy, where copies were added (else all recordings)

    def __len__(self) -> int:
        return len(self.rows)

    def kinds(self) -> np.ndarray:
        """[N] what each row is (:data:`RECORDING` or a kind of training copy)."""
        return np.full(len(self), RECORDING, dtype=object) if self.copy_kinds is None else self.copy_kinds

    @property
    def speakers(self) -> np.ndarray:
        return np.array([f"{r.corpus}/{r.speaker}" for r in self.rows])

    def collate(self, indices: Sequence[int], *, crop_frames: int = 0, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Padded batch of ``indices``; ``crop_frames > 0`` crops each quartet to a random window of
        at most that many frames (drawn from ``generator``)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        batch = {"labels": torch.as_tensor(self.labels[np.asarray(indices)], dtype=torch.long)}
        if self.backbone_segments is not None:
            batch["backbone_segments"] = self.backbone_segments[idx]
            batch["backbone_counts"] = self.backbone_counts[idx]
        if self.backbone_spread is not None:
            batch["backbone_spread"] = self.backbone_spread[idx]
        if self.quartets is not None:
            items = [self.quartets[i] for i in idx.tolist()]
            if crop_frames:
                cropped = []
                for q in items:
                    extra = q.shape[-1] - crop_frames
                    start = int(torch.randint(0, extra + 1, (1,), generator=generator)) if extra > 0 else 0
                    cropped.append(q[..., start : start + crop_frames])
                items = cropped
            lengths = torch.tensor([q.shape[-1] for q in items], dtype=torch.long)
            out = torch.zeros(len(items), *items[0].shape[:2], int(lengths.max()))
            for b, q in enumerate(items):
                out[b, :, :, : q.shape[-1]] = q.float()
            batch["quartet"] = out
            batch["quartet_lengths"] = lengths
        return batch


def _backbone_pooled(rows: Sequence, digests: Sequence[str], cfg: Config, progress: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Pooled statistics of the rows' backbone hidden states (via the backbone feature cache)."""
    from physioser.backbones import FeatureCache
    from physioser.model.factory import build_backbone_for

    backbone = build_backbone_for(cfg)
    shape = {"num_layers": int(backbone.num_layers), "dim": int(backbone.dim), "spec": backbone.spec_key()}
    key = rows_key(digests, {"spec": backbone.spec(), "segments": CACHE_SEGMENTS})
    corpus = "+".join(sorted({r.corpus for r in rows}))
    path = cache_dir() / "pooled" / backbone.spec_key() / f"{corpus}-{key}.safetensors"
    if path.is_file():
        data = load_file(str(path))
        return data["segments"], data["counts"], shape
    cache = FeatureCache()
    segments = torch.zeros(len(rows), backbone.num_layers, CACHE_SEGMENTS, backbone.dim)
    counts = torch.zeros(len(rows), CACHE_SEGMENTS)
    for i, row in enumerate(tqdm(rows, desc=f"pooling {backbone.name} features", disable=not progress, leave=False)):
        hidden = cache.get_or_compute(row.path, backbone).float()  # [L, T, D]
        lengths = torch.full((hidden.shape[0],), hidden.shape[1], dtype=torch.long)
        means, cnt = segment_mean(hidden, lengths, CACHE_SEGMENTS)
        segments[i] = means
        counts[i] = cnt[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"segments": segments, "counts": counts}, str(path))
    return segments, counts, shape


def _backbone_spread(rows: Sequence, digests: Sequence[str], cfg: Config, progress: bool) -> torch.Tensor:
    """[N, L, D] standard deviation over time of every layer's frames (the feature cache's ``std``)."""
    from physioser.backbones import FeatureCache
    from physioser.model.factory import build_backbone_for

    backbone = build_backbone_for(cfg)
    key = rows_key(digests, {"spec": backbone.spec(), "statistic": "std"})
    corpus = "+".join(sorted({r.corpus for r in rows}))
    path = cache_dir() / "pooled" / backbone.spec_key() / f"{corpus}-{key}-std.safetensors"
    if path.is_file():
        return load_file(str(path))["std"]
    cache = FeatureCache()
    spread = torch.zeros(len(rows), backbone.num_layers, backbone.dim)
    for i, row in enumerate(tqdm(rows, desc=f"{backbone.name} frame deviations", disable=not progress, leave=False)):
        stats = cache.load_statistics(row.path, backbone)
        if stats is None:
            cache.get_or_compute(row.path, backbone)
            stats = cache.load_statistics(row.path, backbone)
        spread[i] = stats[1].float()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"std": spread}, str(path))
    return spread


def _quartets(rows: Sequence, digests: Sequence[str], cfg: Config, progress: bool) -> list[torch.Tensor]:
    """Cached VAP front-end quartets of the rows (computed and stored on first use)."""
    from physioser.vap import VAPFrontEnd

    vcfg = cfg.model.vap
    front = vcfg.frontend_key()  # every front-end field + FRONTEND_VERSION
    max_seconds = cfg.train.max_seconds
    fkey = hashlib.sha256(json.dumps([front, max_seconds], sort_keys=True, default=str).encode()).hexdigest()[:16]
    key = rows_key(digests, {"front": front, "max_seconds": max_seconds})
    corpus = "+".join(sorted({r.corpus for r in rows}))
    path = cache_dir() / "quartets" / fkey / f"{corpus}-{key}.safetensors"
    if path.is_file():
        data = load_file(str(path))
        offsets = data["offsets"].tolist()
        flat = data["quartets"]
        return [flat[..., offsets[i] : offsets[i + 1]] for i in range(len(rows))]
    frontend = VAPFrontEnd(vcfg).eval()
    items = []
    with torch.no_grad():
        for row in tqdm(rows, desc="VAP quartets", disable=not progress, leave=False):
            x = torch.from_numpy(_load_waveform(row, max_seconds))[None]
            q, n = frontend(x, torch.tensor([x.shape[1]]))
            items.append(q[0, :, :, : int(n[0])].to(torch.float16).contiguous())
    offsets = np.concatenate([[0], np.cumsum([q.shape[-1] for q in items])])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"quartets": torch.cat(items, dim=-1).contiguous(), "offsets": torch.as_tensor(offsets)}, str(path))
    return items


def build_feature_set(rows: Sequence, class_names: Sequence[str], cfg: Config, *, progress: bool = True) -> tuple[FeatureSet, dict]:
    """Features of ``rows`` for the branches of ``cfg``; returns (FeatureSet, backbone shape dict or {})."""
    rows = list(rows)
    labels = labels_of(rows, class_names)
    fs = FeatureSet(rows=rows, labels=labels, class_names=list(class_names))
    shape: dict = {}
    digests = audio_digests(rows)
    if cfg.model.uses("backbone"):
        fs.backbone_segments, fs.backbone_counts, shape = _backbone_pooled(rows, digests, cfg, progress)
        if cfg.model.statistics:
            fs.backbone_spread = _backbone_spread(rows, digests, cfg, progress)
    if cfg.model.uses("vap"):
        fs.quartets = _quartets(rows, digests, cfg, progress)
    return fs, shape


def gather_rows(corpora, class_names: list[str], corpora_root) -> tuple[list, dict[str, np.ndarray]]:
    """The rows of ``corpora`` (read from ``corpora_root/<name>``, or ``corpora_root[name]`` when it is a
    mapping of corpus folders) whose labels are in ``class_names``, concatenated, and {corpus: its indices
    in that list}. A corpus with no such row is an error."""
    from physioser.data import read_corpus

    rows, spans = [], {}
    for name in corpora:
        folder = Path(corpora_root[name]) if isinstance(corpora_root, dict) else Path(corpora_root) / name
        own = select_rows(read_corpus(name, folder), class_names)
        if not own:
            raise ValueError(f"{name}: no rows with classes {class_names} under {folder}")
        spans[name] = np.arange(len(rows), len(rows) + len(own))
        rows += own
    return rows, spans


def load_corpora(cfg: Config, corpora: Sequence[str], corpora_root: str | Path | dict, *, progress: bool = True) -> tuple[Config, FeatureSet, dict[str, np.ndarray]]:
    """Read ``corpora`` (folders under ``corpora_root``, or a {corpus: folder} mapping) and build one FeatureSet over all of them.

    Returns (config resolved with ``class_names`` and the backbone's ``num_layers``/``dim``, the
    FeatureSet, {corpus: its indices in the FeatureSet})."""
    class_names = class_names_for(cfg, corpora)
    cfg = replace(cfg, class_names=class_names, corpora=list(corpora))
    rows, spans = gather_rows(corpora, class_names, corpora_root)
    data, shape = build_feature_set(rows, class_names, cfg, progress=progress)
    if shape:
        cfg = cfg.with_backbone_shape(shape["num_layers"], shape["dim"])
    return cfg, data, spans


def add_augmented_copies(data: FeatureSet, train_idx: np.ndarray, cfg: Config, corpora_root: str | Path | dict,
                         noise_root: str | Path, *, progress: bool = True) -> tuple[FeatureSet, np.ndarray]:
    """``data`` with ``cfg.train.augment`` augmented copies, ``cfg.train.stream_windows`` stream windows
    and ``cfg.train.augmented_windows`` stream windows of augmented audio of each row of ``train_idx``
    appended (same row, label and speaker; backbone statistics of the copy's audio), and the training
    indices extended by the copies. Rows outside ``train_idx`` (validation, test) get no copy.

    Copy e of a clip is :class:`physioser.conditions.augment.Augmenter` (seed ``cfg.train.seed``,
    epoch e) of its audio, window copy e :class:`physioser.conditions.augment.StreamWindow` (the
    stream's default window), augmented window copy e both in turn; the statistics are computed per
    corpus over the corpus folder's clips and cached (:mod:`physioser.conditions.statistics`). A
    copy's segment means all hold its utterance mean (with the clean row's frame counts), which is
    what statistics pooling reads."""
    from physioser.conditions.statistics import augmented_statistics, augmented_window_statistics, window_statistics
    from physioser.model.factory import build_backbone_for
    from physioser.runtime.contract import DEFAULT_WINDOW_S

    t = cfg.train
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if not t.copies or not len(train_idx):
        return data, train_idx
    if data.quartets is not None or data.backbone_spread is None:
        raise ValueError("augmented copies need statistics pooling on the backbone branch alone "
                         "(train.augment, train.stream_windows, train.augmented_windows)")
    backbone = build_backbone_for(cfg)
    corpora = list(dict.fromkeys(data.rows[i].corpus for i in train_idx))
    folders = {c: Path(corpora_root[c]) if isinstance(corpora_root, dict) else Path(corpora_root) / c for c in corpora}
    root = {c: str(f) for c, f in folders.items()} if isinstance(corpora_root, dict) else Path(corpora_root)
    sources = [(AUGMENTED, lambda c, e=e: augmented_statistics(c, folders[c], root, Path(noise_root), backbone, copy=e,
                                                               seed=t.seed, progress=progress)) for e in range(t.augment)]
    sources += [(WINDOW, lambda c, e=e: window_statistics(c, folders[c], root, backbone, DEFAULT_WINDOW_S, copy=e, seed=t.seed,
                                                          progress=progress)) for e in range(t.stream_windows)]
    sources += [(AUGMENTED_WINDOW, lambda c, e=e: augmented_window_statistics(c, folders[c], root, Path(noise_root), backbone,
                                                                              DEFAULT_WINDOW_S, copy=e, seed=t.seed, progress=progress))
                for e in range(t.augmented_windows)]
    copies = len(sources)
    segments, spreads, labels, rows, kinds, new_idx = [], [], [], [], [], []
    n = len(data)
    for kind, source in sources:
        stats = {c: source(c) for c in corpora}
        for i in train_idx.tolist():
            row = data.rows[i]
            found = stats[row.corpus].get(str(row.path))
            if found is None:
                raise ValueError(f"{row.path}: not among the clips of {row.corpus} under {folders[row.corpus]}, so no augmented copy")
            mean, std = (torch.from_numpy(a.astype(np.float32)) for a in found)
            segments.append(mean[:, None, :].expand(-1, data.backbone_segments.shape[2], -1))
            spreads.append(std)
            labels.append(data.labels[i])
            rows.append(row)
            kinds.append(kind)
            new_idx.append(n + len(new_idx))
    out = replace(data, rows=list(data.rows) + rows, labels=np.concatenate([data.labels, np.array(labels, dtype=data.labels.dtype)]),
                  copy_kinds=np.concatenate([data.kinds(), np.array(kinds, dtype=object)]),
                  backbone_segments=torch.cat([data.backbone_segments, torch.stack(segments)]),
                  backbone_counts=torch.cat([data.backbone_counts, data.backbone_counts[torch.as_tensor(np.tile(train_idx, copies))]]),
                  backbone_spread=torch.cat([data.backbone_spread, torch.stack(spreads)]))
    return out, np.concatenate([train_idx, np.array(new_idx, dtype=np.int64)])
