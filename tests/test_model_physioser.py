"""PhysioSER model: forward/backward on a tiny batch, the cached training path equals the
waveform inference path, and a checkpoint round trip reproduces the logits exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from physioser.model import Config, PhysioSER, build_backbone_for, build_model, load_model
from physioser.model.checkpoint import CheckpointError, save_model
from physioser.model.config import ConfigError, load_config
from physioser.model.physioser import CACHE_SEGMENTS
from physioser.model.pooling import merge_segments, segment_mean

SMALL_VAP = "model.vap={n_bands: 16, channels_2d: [8], channels_1d: [32], kernels_1d: [3], dilations_1d: [1], dim: 32}"


def _cfg(*overrides: str) -> tuple[Config, torch.nn.Module]:
    cfg = load_config("configs/physioser.yaml", [SMALL_VAP, "model.dim=32", "cpa.dim=16", *overrides])
    backbone = build_backbone_for(cfg)
    cfg = replace(cfg, class_names=["neutral", "happy", "angry", "sad"]).with_backbone_shape(backbone.num_layers, backbone.dim)
    return cfg, backbone


def _waves(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 12000, 20000])
    t = torch.arange(20000) / 16000
    x = 0.1 * torch.sin(2 * torch.pi * 140 * t)[None] * (1 + torch.rand(3, 1, generator=g)) + 0.02 * torch.randn(3, 20000, generator=g)
    x = x * (torch.arange(20000)[None] < lengths[:, None])
    return x.float(), lengths


def _cached_batch(model: PhysioSER, x: torch.Tensor, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
    """The training batch of these clips, built item by item as physioser.features caches it."""
    segs, counts, quartets = [], [], []
    with torch.no_grad():
        for b in range(len(x)):
            clip = x[b : b + 1, : lengths[b]]
            n = lengths[b : b + 1]
            hidden, hl = model.backbone(clip, n)
            m, c = segment_mean(torch.stack(hidden, 1)[0], hl.expand(len(hidden)), CACHE_SEGMENTS)
            segs.append(m)
            counts.append(c[0])
            q, ql = model.vap.frontend(clip, n)
            quartets.append(q[0, ..., : int(ql[0])])
    t = max(q.shape[-1] for q in quartets)
    quartet = torch.zeros(len(x), *quartets[0].shape[:2], t)
    for b, q in enumerate(quartets):
        quartet[b, ..., : q.shape[-1]] = q
    return {"labels": torch.tensor([0, 1, 2]), "backbone_segments": torch.stack(segs), "backbone_counts": torch.stack(counts),
            "quartet": quartet, "quartet_lengths": torch.tensor([q.shape[-1] for q in quartets])}


def test_forward_backward_tiny_batch() -> None:
    cfg, backbone = _cfg()
    torch.manual_seed(0)
    model = PhysioSER(cfg, backbone=backbone)
    x, lengths = _waves()
    out = model(x, lengths)
    assert out["logits"].shape == (3, 4) and out["probs"].shape == (3, 4)
    assert torch.allclose(out["probs"].sum(-1), torch.ones(3), atol=1e-6)
    assert out["embedding"].shape == (3, 32)
    model.train()
    res = model.forward_cached(_cached_batch(model, x, lengths))
    loss = torch.nn.functional.cross_entropy(res["logits"], torch.tensor([0, 1, 2])) + res["cpa"] + res["aux"]
    loss.backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any(n.startswith("backbone.") for n in trainable), "the backbone must stay frozen"
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert no_grad == [], f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("overrides", [("model.segments=4",), ("model.segments=2", "model.fusion.attention=moh"),
                                       ("model.head=linear", "cpa.weight=0", "model.projector=shared")])
def test_cached_training_path_equals_waveform_path(overrides) -> None:
    cfg, backbone = _cfg(*overrides)
    torch.manual_seed(1)
    model = PhysioSER(cfg, backbone=backbone).eval()
    x, lengths = _waves(2)
    batch = _cached_batch(model, x, lengths)
    model.set_layer_statistics(batch["backbone_segments"], batch["backbone_counts"])
    with torch.no_grad():
        direct = model(x, lengths)
        cached = model.forward_cached(batch)
    assert torch.allclose(direct["logits"], cached["logits"], atol=2e-4, rtol=1e-4)
    assert torch.allclose(direct["embedding"], cached["embedding"], atol=2e-4, rtol=1e-4)


def test_segment_pooling_nests() -> None:
    x = torch.randn(2, 23, 5)
    lengths = torch.tensor([23, 9])
    m4, c4 = segment_mean(x, lengths, 4)
    for k in (1, 2):
        mk, ck = segment_mean(x, lengths, k)
        merged, counts = merge_segments(m4, c4, k)
        assert torch.allclose(merged, mk, atol=1e-6) and torch.equal(counts, ck)
    assert torch.allclose(segment_mean(x, lengths, 1)[0][1, 0], x[1, :9].mean(0), atol=1e-6)


def test_checkpoint_round_trip_reproduces_logits_exactly(tmp_path) -> None:
    cfg, backbone = _cfg()
    torch.manual_seed(3)
    model = PhysioSER(cfg, backbone=backbone)
    with torch.no_grad():  # move every weight and buffer off its init so the check can fail
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
        model.layer_mean.normal_()
    model.eval()
    x, lengths = _waves(4)
    with torch.no_grad():
        before = model(x, lengths)["logits"]
    save_model(model, cfg, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.yaml").is_file()
    loaded = load_model(tmp_path)
    with torch.no_grad():
        after = loaded(x, lengths)["logits"]
    assert torch.equal(before, after)
    assert loaded.class_names == list(cfg.class_names)
    # a truncated file is a clear error, not garbage weights
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(tmp_path)


def test_config_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        load_config("configs/physioser.yaml", ["train.lrr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  branches: [vap, ears]\n")
    with pytest.raises(ConfigError, match="branches"):
        load_config(bad)
    assert load_config(None, ["train.lr=3e-4"]).train.lr == pytest.approx(3e-4)
    assert load_config(None, ["model.vap.n_bands=40"]).model.vap.n_bands == 40


def test_model_dir_saved_before_a_config_key_existed_still_loads(tmp_path) -> None:
    import yaml

    cfg, backbone = _cfg("model.projector=shared", "model.branches=[backbone]", "model.head=linear", "cpa.weight=0")
    model = PhysioSER(cfg, backbone=backbone).eval()
    save_model(model, cfg, tmp_path)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["model"]["projector"], saved["train"]["vap_crop_seconds"]  # keys added after the first models
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    x, lengths = _waves(5)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path)(x, lengths)["logits"], model(x, lengths)["logits"])
