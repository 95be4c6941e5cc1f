"""train.augment: augmented copies join the training rows only, with their clip's label and speaker;
the statistics of conditioned audio are cached per corpus and condition."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from physioser.features import FeatureSet, add_augmented_copies
from physioser.model.config import ConfigError, load_config
from tests.conftest import CORPORA_ROOT, corpus_dir

RECIPE = "configs/recipe.yaml"


def _tiny(n: int = 12, layers: int = 2, dim: int = 5) -> FeatureSet:
    g = torch.Generator().manual_seed(0)
    rows = [SimpleNamespace(corpus="C" if i < 8 else "D", speaker=f"s{i % 4}", path=f"/corpora/{'C' if i < 8 else 'D'}/{i}.flac",
                            canonical="happy") for i in range(n)]
    return FeatureSet(rows=rows, labels=np.arange(n) % 3, class_names=["a", "b", "c"],
                      backbone_segments=torch.randn(n, layers, 4, dim, generator=g),
                      backbone_counts=torch.arange(1, 4 * n + 1, dtype=torch.float32).reshape(n, 4),
                      backbone_spread=torch.rand(n, layers, dim, generator=g))


def _fake_statistics(calls: list):
    """augmented_statistics stand-in: copy e of clip i has mean 100·(e+1) + i and std e + 1."""

    def fake(corpus, folder, corpora_root, noise_root, backbone, copy=0, seed=0, progress=True):
        calls.append((corpus, str(folder), copy, seed))
        return {f"/corpora/{corpus}/{i}.flac": (np.full((2, 5), 100.0 * (copy + 1) + i, np.float16), np.full((2, 5), copy + 1.0, np.float16))
                for i in range(20)}

    return fake


def test_augment_is_a_validated_train_option():
    assert load_config(RECIPE).train.augment == 0
    assert load_config(RECIPE, ["train.augment=2"]).train.augment == 2
    for bad in ("-1", "1.5", "true", "17"):
        with pytest.raises(ConfigError, match="train.augment"):
            load_config(RECIPE, [f"train.augment={bad}"])
    with pytest.raises(ConfigError, match="train.augment, train.stream_windows and train.augmented_windows need"):
        load_config(RECIPE, ["train.augment=1", "model.branches=[vap, backbone]"])
    with pytest.raises(ConfigError, match="train.augment, train.stream_windows and train.augmented_windows need"):
        load_config(RECIPE, ["train.augment=1", "model.statistics=false"])


@pytest.mark.parametrize("copies", [1, 2])
def test_augmented_copies_join_the_training_rows_only_with_their_labels(monkeypatch, copies):
    import physioser.conditions.statistics as statistics
    import physioser.model.factory as factory

    calls: list = []
    monkeypatch.setattr(statistics, "augmented_statistics", _fake_statistics(calls))
    monkeypatch.setattr(factory, "build_backbone_for", lambda cfg: None)
    cfg = replace(load_config(RECIPE, [f"train.augment={copies}", "train.seed=3"]), class_names=["a", "b", "c"])
    data = _tiny()
    train, held_out = np.array([0, 2, 3, 5, 9, 10]), np.array([1, 4, 6, 7, 8, 11])
    out, tr = add_augmented_copies(data, train, cfg, "/corpora", "/noise", progress=False)

    n = len(data)
    assert len(out) == n + copies * len(train)
    assert tr[: len(train)].tolist() == train.tolist() and tr[len(train):].tolist() == list(range(n, len(out)))
    # the original rows are untouched; every copy is a training row's, with its label, speaker and frame counts
    assert torch.equal(out.backbone_segments[:n], data.backbone_segments) and np.array_equal(out.labels[:n], data.labels)
    sources = np.tile(train, copies)
    assert [out.rows[i] for i in range(n, len(out))] == [data.rows[i] for i in sources]
    assert np.array_equal(out.labels[n:], data.labels[sources])
    assert np.array_equal(out.speakers[n:], data.speakers[sources])
    assert torch.equal(out.backbone_counts[n:], data.backbone_counts[torch.as_tensor(sources)])
    assert not set(sources) & set(held_out.tolist())  # validation / held-out rows get no copy
    # a copy's statistics are its augmented audio's: every segment holds the utterance mean
    for j, i in enumerate(sources):
        e = j // len(train)
        assert torch.all(out.backbone_segments[n + j] == 100.0 * (e + 1) + i)
        assert torch.all(out.backbone_spread[n + j] == e + 1.0)
    # per corpus and copy, seeded by train.seed, from the corpus folder under the root
    assert sorted(calls) == sorted((c, f"/corpora/{c}", e, 3) for c in ("C", "D") for e in range(copies))
    # the statistics-pooling features of a copy are those of its utterance mean
    batch = out.collate(tr[len(train):len(train) + 2])
    w = batch["backbone_counts"] / batch["backbone_counts"].sum(1, keepdim=True)
    assert torch.allclose((batch["backbone_segments"] * w[:, None, :, None]).sum(2), batch["backbone_segments"][:, :, 0])


def test_no_augmentation_leaves_the_data_alone(monkeypatch):
    data = _tiny()
    cfg = replace(load_config(RECIPE), class_names=["a", "b", "c"])
    out, tr = add_augmented_copies(data, np.array([0, 1]), cfg, "/corpora", "/noise", progress=False)
    assert out is data and tr.tolist() == [0, 1]


def test_conditioned_statistics_are_cached_per_condition(tmp_path, monkeypatch):
    from physioser.backbones import build_backbone
    from physioser.conditions.statistics import clip_key, conditioned_statistics
    from physioser.data import read_corpus

    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path))
    root = corpus_dir("RAVDESS").parent
    rows = read_corpus("RAVDESS", root / "RAVDESS")[:3]
    backbone = build_backbone("fbank")
    keys: list = []

    def quieter(x, key, corpus):
        keys.append((key, corpus))
        return 0.5 * x

    mean, std = conditioned_statistics(rows, root, "half", quieter, backbone, progress=False)
    assert mean.shape == (3, backbone.num_layers, backbone.dim) and mean.dtype == np.float16 and np.isfinite(std).all()
    assert keys == [(clip_key(r, root), "RAVDESS") for r in rows] and keys[0][0].startswith("RAVDESS/")
    assert clip_key(rows[0], {"RAVDESS": str(root / "RAVDESS")}) == keys[0][0]
    again = conditioned_statistics(rows, root, "half", quieter, backbone, progress=False)
    assert len(keys) == 3 and np.array_equal(again[0], mean)  # read from the cache
    other, _ = conditioned_statistics(rows, root, "other", lambda x, key, corpus: x, backbone, progress=False)
    assert len(list((tmp_path / "conditions").rglob("*.npz"))) == 2 and not np.array_equal(other, mean)


def test_eval_and_benchmark_refuse_augmentation_they_do_not_apply(tmp_path):
    from physioser.benchmark import run_benchmark
    from physioser.evaluate import run_protocol

    cfg = load_config(RECIPE, ["train.augment=1"])
    with pytest.raises(ValueError, match="physioser train` only"):
        run_protocol(cfg, ["RAVDESS"], corpora_root=tmp_path, run_name="x", results_dir=tmp_path)
    with pytest.raises(ValueError, match="physioser train` only"):
        run_benchmark(cfg, tmp_path, tmp_path / "out")


def test_stream_windows_are_a_validated_train_option():
    assert load_config(RECIPE).train.stream_windows == 0
    assert load_config(RECIPE, ["train.stream_windows=2"]).train.stream_windows == 2
    for bad in ("-1", "17"):
        with pytest.raises(ConfigError, match="train.stream_windows"):
            load_config(RECIPE, [f"train.stream_windows={bad}"])
    with pytest.raises(ConfigError, match="train.augment, train.stream_windows and train.augmented_windows need"):
        load_config(RECIPE, ["train.stream_windows=1", "model.statistics=false"])


def test_stream_window_copies_follow_the_augmented_ones(monkeypatch):
    import physioser.conditions.statistics as statistics
    import physioser.model.factory as factory
    from physioser.runtime.contract import DEFAULT_WINDOW_S

    calls, windows = [], []

    def fake_windows(corpus, folder, corpora_root, backbone, window_s, copy=0, seed=0, progress=True):
        windows.append((corpus, window_s, copy, seed))
        return {f"/corpora/{corpus}/{i}.flac": (np.full((2, 5), -1.0 - i, np.float16), np.ones((2, 5), np.float16)) for i in range(20)}

    monkeypatch.setattr(statistics, "augmented_statistics", _fake_statistics(calls))
    monkeypatch.setattr(statistics, "window_statistics", fake_windows)
    monkeypatch.setattr(factory, "build_backbone_for", lambda cfg: None)
    cfg = replace(load_config(RECIPE, ["train.augment=1", "train.stream_windows=1", "train.seed=3"]), class_names=["a", "b", "c"])
    data, train = _tiny(), np.array([0, 2, 9])
    out, tr = add_augmented_copies(data, train, cfg, "/corpora", "/noise", progress=False)
    n = len(data)
    assert len(out) == n + 2 * len(train) and len(tr) == 3 * len(train)
    assert sorted(windows) == [("C", DEFAULT_WINDOW_S, 0, 3), ("D", DEFAULT_WINDOW_S, 0, 3)]
    assert [float(out.backbone_segments[n + j, 0, 0, 0]) for j in range(6)] == [100.0, 102.0, 109.0, -1.0, -3.0, -10.0]
    assert out.kinds().tolist() == ["recording"] * n + ["augmented"] * 3 + ["window"] * 3  # each row says what it is


def test_a_stream_window_is_a_seeded_window_of_the_clip_between_silences():
    from physioser.conditions.augment import StreamWindow

    clip = np.linspace(0.1, 0.9, 3 * 16000, dtype=np.float32)  # 3 s, every sample non-zero and distinct
    cut = StreamWindow(2.0, seed=1)
    windows = [cut(clip, "k", copy=e) for e in range(40)]
    assert all(len(w) == 32000 for w in windows)
    assert np.array_equal(cut(clip, "k", copy=5), windows[5]) and not np.array_equal(windows[0], windows[1])
    for w in windows:  # the window ends from 0.5 s into the clip to 1.5 s after it: clip samples, then silence
        voiced = np.flatnonzero(w)
        assert 8000 <= len(voiced) <= 32000 and np.all(np.diff(w[voiced]) > 0)
        end = int(np.searchsorted(clip, w[voiced[-1]])) + 1 + (len(w) - 1 - voiced[-1])  # window end, from the clip's start
        assert 8000 <= end <= 48000 + 24000
    short = cut(clip[:4000], "s")
    assert np.count_nonzero(short) == 4000  # a clip shorter than the window lies whole in it


def test_augmented_windows_are_a_validated_option_that_follows_the_stream_windows(monkeypatch):
    import physioser.conditions.statistics as statistics
    import physioser.model.factory as factory
    from physioser.runtime.contract import DEFAULT_WINDOW_S

    assert load_config(RECIPE).train.augmented_windows == 0
    with pytest.raises(ConfigError, match="train.augmented_windows"):
        load_config(RECIPE, ["train.augmented_windows=17"])
    with pytest.raises(ConfigError, match="train.augmented_windows need"):
        load_config(RECIPE, ["train.augmented_windows=1", "model.statistics=false"])
    calls = []

    def fake(corpus, folder, corpora_root, noise_root, backbone, window_s, copy=0, seed=0, progress=True):
        calls.append((corpus, str(noise_root), window_s, copy, seed))
        return {f"/corpora/{corpus}/{i}.flac": (np.full((2, 5), 50.0 + i, np.float16), np.ones((2, 5), np.float16)) for i in range(20)}

    monkeypatch.setattr(statistics, "window_statistics", lambda *a, **k: pytest.fail("no clean windows asked for"))
    monkeypatch.setattr(statistics, "augmented_window_statistics", fake)
    monkeypatch.setattr(factory, "build_backbone_for", lambda cfg: None)
    cfg = replace(load_config(RECIPE, ["train.augmented_windows=2", "train.seed=3"]), class_names=["a", "b", "c"])
    assert cfg.train.copies == 2
    data, train = _tiny(), np.array([0, 9])
    out, tr = add_augmented_copies(data, train, cfg, "/corpora", "/noise", progress=False)
    n = len(data)
    assert len(out) == n + 4 and tr.tolist() == [0, 9, n, n + 1, n + 2, n + 3]
    assert sorted(calls) == sorted((c, "/noise", DEFAULT_WINDOW_S, e, 3) for c in ("C", "D") for e in range(2))
    assert [float(out.backbone_segments[n + j, 0, 0, 0]) for j in range(4)] == [50.0, 59.0, 50.0, 59.0]
    assert out.kinds().tolist() == ["recording"] * n + ["augmented window"] * 4


def test_an_augmented_window_is_a_window_of_the_augmented_clip(tmp_path, monkeypatch):
    import physioser.data
    from physioser.backbones import build_backbone
    from physioser.conditions.statistics import augmented_window_statistics, window_statistics

    noise = CORPORA_ROOT.parent / "noise"
    if not noise.is_dir():
        pytest.skip(f"../shared/noise not found at {noise}")
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path))
    root = corpus_dir("RAVDESS").parent
    read = physioser.data.read_corpus
    rows = read("RAVDESS", root / "RAVDESS")[:4]
    monkeypatch.setattr(physioser.data, "read_corpus", lambda corpus, folder: rows if corpus == "RAVDESS" else read(corpus, folder))
    backbone = build_backbone("fbank")
    augmented = augmented_window_statistics("RAVDESS", root / "RAVDESS", root, noise, backbone, 2.0, progress=False)
    clean = window_statistics("RAVDESS", root / "RAVDESS", root, backbone, 2.0, progress=False)
    assert set(augmented) == {str(r.path) for r in rows}
    assert all(not np.array_equal(augmented[p][0], clean[p][0]) for p in augmented)  # other windows, augmented audio
    other = augmented_window_statistics("RAVDESS", root / "RAVDESS", root, noise, backbone, 2.0, copy=1, progress=False)
    assert all(not np.array_equal(other[p][0], augmented[p][0]) for p in augmented)
    again = augmented_window_statistics("RAVDESS", root / "RAVDESS", root, noise, backbone, 2.0, progress=False)
    assert all(np.array_equal(again[p][0], augmented[p][0]) for p in augmented)
    assert len(list((tmp_path / "conditions").rglob("*.npz"))) == 3
