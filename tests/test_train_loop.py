"""Training loop: schedule, resume continues from its step with identical weights, early stopping,
and a real run on two RAVDESS actors lowers the loss and beats chance on the training speakers."""

from __future__ import annotations

from dataclasses import replace
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from physioser.model.checkpoint import CheckpointError, load_state
from physioser.model.config import load_config
from physioser.features import FeatureSet
from physioser.model.metrics import classification_metrics
from physioser.train import fit, lr_factor, new_model, predict
from tests.conftest import corpus_dir

SMALL_VAP = "model.vap={n_bands: 16, channels_2d: [8], channels_1d: [32], kernels_1d: [3], dilations_1d: [1], dim: 32}"


def _synthetic(n: int = 48, seed: int = 0) -> FeatureSet:
    """Cached-feature data whose class is visible in both branches."""
    g = torch.Generator().manual_seed(seed)
    labels = np.arange(n) % 3
    shift = torch.as_tensor(labels, dtype=torch.float32)
    segments = torch.randn(n, 2, 4, 12, generator=g) + shift[:, None, None, None]
    quartets = [torch.randn(4, 16, 30 + i % 7, generator=g) * 0.5 + shift[i] for i in range(n)]
    return FeatureSet(rows=[None] * n, labels=labels, class_names=["a", "b", "c"], backbone_segments=segments,
                      backbone_counts=torch.full((n, 4), 10.0), quartets=[q.half() for q in quartets])


def _cfg(*overrides: str):
    cfg = load_config("configs/physioser.yaml", [SMALL_VAP, "model.dim=16", "cpa.dim=8", "train.batch_size=16",
                                                 "train.vap_crop_seconds=0.2", *overrides])
    return replace(cfg, class_names=["a", "b", "c"]).with_backbone_shape(2, 12)


def test_lr_schedule_warmup_then_cosine() -> None:
    f = [lr_factor(s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))
    assert f[-1] < 0.01


def test_resumed_run_continues_from_its_step(tmp_path) -> None:
    data = _synthetic()
    train, val = np.arange(36), np.arange(36, 48)
    cfg = _cfg("train.epochs=4", "train.patience=100", "train.device=cpu")  # bitwise: GPU kernels need not be deterministic
    full = new_model(cfg, data, train)
    res_full = fit(full, data, train, val, cfg, tmp_path / "full", progress=False)
    assert res_full.step == 4 * 3 and res_full.epochs_run == 4
    last_full = load_file(str(tmp_path / "full" / "last.safetensors"))

    part = new_model(cfg, data, train)
    res_a = fit(part, data, train, val, cfg, tmp_path / "part", progress=False, stop_after_epochs=2)
    assert res_a.step == 2 * 3 and json.loads((tmp_path / "part" / "last.json").read_text())["step"] == 6
    resumed = new_model(cfg, data, train)  # a fresh process: new weights, resumed from disk
    res_b = fit(resumed, data, train, val, cfg, tmp_path / "part", resume=True, progress=False)
    assert res_b.step == 12 and res_b.epochs_run == 4
    assert [h["step"] for h in res_b.history] == [3, 6, 9, 12]
    last_part = load_file(str(tmp_path / "part" / "last.safetensors"))
    for key, value in last_full.items():
        if key.startswith(("model.", "optim.")):
            assert torch.equal(value, last_part[key]), key
    with pytest.raises(CheckpointError, match="cannot resume"):
        fit(new_model(cfg, data, train), data, train, val, cfg, tmp_path / "nothing", resume=True, progress=False)


def test_early_stopping_keeps_the_best_epoch(tmp_path) -> None:
    data = _synthetic()
    cfg = _cfg("train.epochs=30", "train.patience=2", "model.branches=[backbone]", "model.head=linear", "cpa.weight=0")
    model = new_model(cfg, data, np.arange(36))
    res = fit(model, data, np.arange(36), np.arange(36, 48), cfg, tmp_path, progress=False)
    uas = [h["val_ua"] for h in res.history]
    assert res.epochs_run < 30 and res.epochs_run - res.best_epoch == 2
    assert res.best_val_ua == max(uas) == uas[res.best_epoch - 1]
    pred = predict(model, data, np.arange(36, 48))["logits"].argmax(1)
    assert classification_metrics(data.labels[36:48], pred, data.class_names)["ua"] == pytest.approx(res.best_val_ua)


@pytest.mark.corpora
@pytest.mark.slow
def test_two_ravdess_actors_loss_drops_and_beats_chance(tmp_path, monkeypatch) -> None:
    from physioser.data import read_corpus
    from physioser.features import build_feature_set, select_rows

    root = corpus_dir("RAVDESS")
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    classes = ["neutral", "happy", "angry", "sad"]
    rows = [r for r in select_rows(read_corpus("RAVDESS", root), classes) if r.speaker in ("01", "02")]
    assert len(rows) == 56
    cfg = load_config("configs/physioser.yaml", [SMALL_VAP, "model.dim=32", "cpa.dim=16", "train.epochs=12",
                                                 "train.patience=100", "train.batch_size=16", "train.lr=3e-3"])
    cfg = replace(cfg, classes=classes, class_names=classes)
    data, shape = build_feature_set(rows, classes, cfg, progress=False)
    cfg = cfg.with_backbone_shape(shape["num_layers"], shape["dim"])
    idx = np.arange(len(rows))
    model = new_model(cfg, data, idx)
    res = fit(model, data, idx, None, cfg, tmp_path / "run", progress=False)
    first, last = res.history[0]["ce"], res.history[-1]["ce"]
    assert last < 0.7 * first, f"cross-entropy went {first:.3f} -> {last:.3f}"
    pred = predict(model, data, idx)["logits"].argmax(1)
    ua = classification_metrics(data.labels, pred, classes)["ua"]
    assert ua > 0.5, f"UA on the training speakers {ua:.3f} is near chance (0.25)"


def test_training_device_is_validated() -> None:
    from physioser.model.config import ConfigError
    from physioser.train import training_device

    assert training_device("cpu") == torch.device("cpu")
    assert training_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="train.device"):
        _cfg("train.device=gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            training_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_path(tmp_path, monkeypatch) -> None:
    """Same forward as on the CPU; training on the GPU lowers the loss and writes CPU-loadable weights.
    (Trained weights are not compared: Adam turns rounding-level gradient differences into lr-sized steps.)"""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    data = _synthetic()
    idx = np.arange(len(data))
    cfg = _cfg("train.epochs=6", "train.patience=100", "train.device=cuda")
    model = new_model(cfg, data, idx)
    cpu_logits = predict(model, data)["logits"]
    np.testing.assert_allclose(predict(model.cuda(), data)["logits"], cpu_logits, atol=1e-4)
    result = fit(model, data, idx, None, cfg, tmp_path, progress=False)
    assert all(p.is_cuda for p in model.parameters())
    assert result.history[-1]["ce"] < result.history[0]["ce"]
    reloaded = new_model(cfg, data, idx)
    load_state(reloaded, tmp_path / "model.safetensors")
    np.testing.assert_allclose(predict(reloaded, data)["logits"], predict(model, data)["logits"], atol=1e-4)
