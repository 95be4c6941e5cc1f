"""Interpretability helpers: a component is replaced by its normalised mean in that channel only, and the
CPA statistics equal a direct computation from the projection heads."""

from __future__ import annotations

from dataclasses import replace
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from physioser.experiments.analysis import _cpa_statistics, _subset, _without_component
from physioser.model.config import load_config
from physioser.features import FeatureSet
from physioser.train import new_model

SMALL_VAP = "model.vap={n_bands: 16, channels_2d: [8], channels_1d: [32], kernels_1d: [3], dilations_1d: [1], dim: 32}"


def _data(n: int = 12) -> FeatureSet:
    g = torch.Generator().manual_seed(0)
    labels = np.arange(n) % 3
    return FeatureSet(rows=[None] * n, labels=labels, class_names=["a", "b", "c"],
                      backbone_segments=torch.randn(n, 2, 4, 12, generator=g), backbone_counts=torch.full((n, 4), 10.0),
                      quartets=[torch.randn(4, 16, 20 + i, generator=g).half() for i in range(n)])


def test_dropping_a_component_zeroes_that_channel_only() -> None:
    data = _subset(_data(), np.array([1, 3, 5]))
    assert len(data) == 3 and data.labels.tolist() == [1, 0, 2]
    dropped = _without_component(data, 2)
    for before, after in zip(data.quartets, dropped.quartets):
        assert torch.count_nonzero(after[2]) == 0
        assert torch.equal(after[[0, 1, 3]], before[[0, 1, 3]])
    assert torch.count_nonzero(data.quartets[0][2]) > 0  # the original is untouched


def test_cpa_statistics_match_a_direct_computation() -> None:
    data = _data()
    cfg = load_config("configs/physioser.yaml", [SMALL_VAP, "model.dim=16", "cpa.dim=8"])
    cfg = replace(cfg, class_names=["a", "b", "c"]).with_backbone_shape(2, 12)
    model = new_model(cfg, data, np.arange(len(data))).eval()
    stats = _cpa_statistics(model, data)
    with torch.no_grad():
        batch = data.collate(np.arange(len(data)))
        seen = []
        handle = model.cpa.register_forward_hook(lambda m, i, o: seen.append(i))
        model.forward_cached(batch)
        handle.remove()
        a = F.normalize(model.cpa.g_v(seen[0][0]), dim=-1)
        b = F.normalize(model.cpa.g_s(seen[0][1]), dim=-1)
        cos = (a @ b.t()).numpy()
    assert stats["matched_cos"] == pytest.approx(float(np.diag(cos).mean()), abs=1e-5)
    assert stats["retrieval_v_to_s"] == pytest.approx(float((cos.argmax(1) == np.arange(12)).mean()))
    assert stats["retrieval_chance"] == pytest.approx(1 / 12) and stats["n"] == 12
    assert stats["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-4)


def test_labelled_rows_of_a_real_corpus_in_its_own_and_the_four_classes() -> None:
    from physioser.experiments.common import load_labelled_rows
    from tests.conftest import corpus_dir

    root = corpus_dir("EMOVO").parent
    rows, labels, names, spans = load_labelled_rows(["EMOVO"], root)
    assert len(rows) == len(labels) == 588 and len(names) == 7 and np.bincount(labels).tolist() == [84] * 7
    rows, labels, names, spans = load_labelled_rows(["EMOVO"], root, classes=["neutral", "happy", "angry", "sad"])
    assert names == ["neutral", "happy", "angry", "sad"] and len(rows) == 336 and spans["EMOVO"].size == 336
