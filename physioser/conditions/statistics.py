"""Backbone statistics of conditioned audio: augmented training copies and evaluation conditions.

The frame-level feature cache (:class:`physioser.backbones.FeatureCache`) is keyed by file content,
so it holds no conditioned audio. :func:`conditioned_statistics` computes the utterance statistics
(frame mean and standard deviation of every backbone layer) of each row's audio after a transform and
caches them per (corpus, condition) in ``<cache>/conditions/<backbone spec key>/<corpus>-<name>-<key>.npz``,
the key covering the rows' audio digests (in order), the condition's name and the backbone spec. The
name must identify the transform: :func:`augmented_name` encodes the augmenter's seed and copy.

:func:`augmented_statistics`, :func:`window_statistics` and :func:`augmented_window_statistics` are what
training uses (``train.augment``, ``train.stream_windows``, ``train.augmented_windows``): the statistics of
:class:`physioser.conditions.augment.Augmenter`'s copies of every clip of a corpus, computed over the
whole corpus as read from its folder (so one cache file serves every split, class set and the
augmentation experiment, :mod:`physioser.experiments.augmentation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["augmented_name", "augmented_statistics", "augmented_window_statistics", "clip_key", "conditioned_statistics",
           "window_statistics"]


def clip_key(row, corpora_root: Path | dict) -> str:
    """The clip's key for the seeded conditions: its path under the corpora root (``<corpus folder>/…``);
    with a {corpus: folder} mapping, ``<corpus>/<path under its folder>``."""
    if isinstance(corpora_root, dict):
        return str(Path(row.corpus) / Path(row.path).relative_to(corpora_root[row.corpus]))
    return str(Path(row.path).relative_to(corpora_root))


def conditioned_statistics(rows: Sequence, corpora_root: Path | dict, name: str,
                           transform: Callable[[np.ndarray, str, str], np.ndarray], backbone,
                           progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) [N, L, D] float16 of the backbone's frames for every row's audio after
    ``transform(x, clip_key(row), corpus)``; cached under ``<cache>/conditions`` (see the module doc)."""
    from tqdm import tqdm

    from physioser.audio import load_audio
    from physioser.backbones import FeatureCache
    from physioser.cache_keys import audio_digests, rows_key
    from physioser.paths import cache_dir

    corpus = "+".join(sorted({r.corpus for r in rows}))
    key = rows_key(audio_digests(rows), {"condition": name, "spec": backbone.spec()})
    path = cache_dir() / "conditions" / backbone.spec_key() / f"{corpus}-{name.replace(':', '')}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["mean"], z["std"]
    cache = FeatureCache()
    mean = np.zeros((len(rows), backbone.num_layers, backbone.dim), np.float16)
    std = np.zeros_like(mean)
    for i, row in enumerate(tqdm(rows, desc=f"{corpus} {name}", disable=not progress, mininterval=10)):
        x = transform(load_audio(row.path), clip_key(row, corpora_root), row.corpus)
        features = cache.compute(x, backbone)
        mean[i], std[i] = features.mean.numpy(), features.std.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, mean=mean, std=std)
    tmp.replace(path)  # a reader never sees a half-written file
    return mean, std


def augmented_name(seed: int, copy: int) -> str:
    """Cache name of the augmenter's copy ``copy`` (its epoch) with ``seed``; ``augmented`` for (0, 0),
    the name the augmentation experiment has always used."""
    return "augmented" if (seed, copy) == (0, 0) else f"augmented-s{seed}-e{copy}"


def _augmenter(folder: Path, corpora_root: Path | dict, noise_root: Path, seed: int):
    from physioser.conditions.augment import Augmenter

    babble_root = Path(folder).parent if isinstance(corpora_root, dict) else Path(corpora_root)
    return Augmenter(seed=seed, noise_root=Path(noise_root), corpora_root=babble_root)


def augmented_statistics(corpus: str, folder: Path, corpora_root: Path | dict, noise_root: Path, backbone,
                         copy: int = 0, seed: int = 0, progress: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{audio path: (mean [L, D], std [L, D])} of every clip of ``corpus`` (read from ``folder``) after
    :class:`~physioser.conditions.augment.Augmenter` (``seed``, epoch ``copy``; babble from the other
    corpora under ``corpora_root``, real noise from ``noise_root``)."""
    augmenter = _augmenter(folder, corpora_root, noise_root, seed)
    return _corpus_statistics(corpus, folder, corpora_root, augmented_name(seed, copy),
                              lambda x, key, c: augmenter(x, key, c, epoch=copy), backbone, progress)


def augmented_window_statistics(corpus: str, folder: Path, corpora_root: Path | dict, noise_root: Path, backbone,
                                window_s: float, copy: int = 0, seed: int = 0,
                                progress: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{audio path: (mean [L, D], std [L, D])} of every clip of ``corpus`` augmented, then cut as the stream
    hears it: the Augmenter and the StreamWindow of :func:`augmented_statistics` and
    :func:`window_statistics`, drawn for the key ``<clip key>#window`` so that neither repeats an
    augmented copy or a clean window of the same clip."""
    from physioser.conditions.augment import StreamWindow

    augmenter, window = _augmenter(folder, corpora_root, noise_root, seed), StreamWindow(window_s, seed)

    def transform(x, key, c):
        key = f"{key}#window"
        return window(augmenter(x, key, c, epoch=copy), key, copy)

    return _corpus_statistics(corpus, folder, corpora_root, f"augmented-window{window_s:g}-s{seed}-e{copy}", transform, backbone,
                              progress)


def window_statistics(corpus: str, folder: Path, corpora_root: Path | dict, backbone, window_s: float,
                      copy: int = 0, seed: int = 0, progress: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{audio path: (mean [L, D], std [L, D])} of every clip of ``corpus`` (read from ``folder``) cut
    as the stream hears it (:class:`~physioser.conditions.augment.StreamWindow`, ``seed``, copy ``copy``)."""
    from physioser.conditions.augment import StreamWindow

    window = StreamWindow(window_s, seed)
    return _corpus_statistics(corpus, folder, corpora_root, f"window{window_s:g}-s{seed}-e{copy}",
                              lambda x, key, c: window(x, key, copy), backbone, progress)


def _corpus_statistics(corpus: str, folder: Path, corpora_root: Path | dict, name: str, transform, backbone,
                       progress: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from physioser.data import read_corpus

    rows = read_corpus(corpus, Path(folder))
    mean, std = conditioned_statistics(rows, corpora_root, name, transform, backbone, progress)
    return {str(r.path): (mean[i], std[i]) for i, r in enumerate(rows)}
