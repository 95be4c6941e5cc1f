"""Whisper's 30 s padding experiment: statistics pool the clip's own frames of the padded encoding, and
the comparison pairs the two runs per fold."""

from __future__ import annotations

import numpy as np
import pytest

from physioser.experiments.padding import compare, padded_statistics


@pytest.fixture(scope="module")
def tiny():
    from physioser.backbones import build_backbone

    return build_backbone("whisper-tiny.en").eval()


def _cache(root):
    import torch

    from physioser.backbones import FeatureCache

    return FeatureCache(root, dtype=torch.float32)


def _clip(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(3 * t))) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_no_padding_gives_the_feature_cache_statistics(tiny, tmp_path) -> None:
    clip = _clip(1.3)
    entry = _cache(tmp_path).compute(clip, tiny)
    mean, std = padded_statistics(tiny, clip, 0.0)
    np.testing.assert_allclose(mean, entry.mean.numpy(), atol=1e-4)
    np.testing.assert_allclose(std, entry.std.numpy(), atol=1e-4)


def test_padded_statistics_pool_the_clips_frames_of_the_padded_encoding(tiny, tmp_path) -> None:
    import torch

    clip, seconds = _clip(1.3), 4.0
    padded = np.concatenate([clip, np.zeros(int(seconds * 16000) - len(clip), np.float32)])
    frames = _cache(tmp_path).compute(padded, tiny).hidden_states.numpy()  # [L, T, D]
    own = int(tiny.output_lengths(torch.tensor([len(clip)]))[0])
    mean, std = padded_statistics(tiny, clip, seconds)
    np.testing.assert_allclose(mean, frames[:, :own].mean(1), atol=1e-3)
    np.testing.assert_allclose(std, frames[:, :own].std(1), atol=1e-3)
    assert np.abs(mean - padded_statistics(tiny, clip, 0.0)[0]).max() > 1e-2  # the padding changes the clip's frames


def test_compare_pairs_the_two_runs_per_fold(tmp_path) -> None:
    import gzip
    import json

    labels = [0, 0, 1, 1]
    right, half = [[1, 0], [1, 0], [0, 1], [0, 1]], [[1, 0], [1, 0], [1, 0], [0, 1]]

    def run(name: str, folds: dict) -> object:
        results = [{"task": "RAVDESS", "fold": f, "seed": 0, "labels": labels, "logits": {"0": lg}} for f, lg in folds.items()]
        path = tmp_path / name
        path.write_bytes(gzip.compress(json.dumps({"variant": "v", "results": results}).encode()))
        return path

    text = "\n".join(compare(run("p.json.gz", {0: right, 1: half}), run("u.json.gz", {0: half, 1: half})))
    assert "| RAVDESS, strict | 0.750 ± 0.000 | 0.875 ± 0.125 | +0.125 ± 0.125 (1/2, worst +0.000) |" in text
