"""Data-parallel training: two processes — CPU (gloo) everywhere, and one GPU each (NCCL) where two
GPUs exist — train PhysioSER on a tiny real subset (two RAVDESS actors) and end with identical
weights although each saw only its own shard of every epoch; only rank 0 writes checkpoints; the
shards of an epoch partition it."""

from __future__ import annotations

from dataclasses import replace
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from physioser.distributed import DistContext
from tests.conftest import corpus_dir

SMALL_VAP = "model.vap={n_bands: 16, channels_2d: [8], channels_1d: [32], kernels_1d: [3], dilations_1d: [1], dim: 32}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_partition_an_epoch_and_pad_to_equal_length() -> None:
    order = np.random.default_rng(0).permutation(np.arange(100, 111))  # 11 items, 2 ranks
    shards = [DistContext(rank=r, world_size=2).shard(order, epoch=3) for r in range(2)]
    assert [len(s) for s in shards] == [6, 6] == [DistContext(rank=0, world_size=2).num_samples(11)] * 2
    assert set(np.concatenate(shards)) == set(order)
    assert len(set(shards[0]) & set(shards[1])) == 1  # one item repeated to pad the shorter shard


def _state(model) -> dict:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, backend: str, data, cfg, train_idx, val_idx, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from physioser.distributed import init_from_env, shutdown
    from physioser.train import fit, new_model

    ctx = init_from_env(backend)
    assert ctx.device == (torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu"))
    import physioser.train as train_module

    reload = train_module.load_state

    def spy(model, path):  # the weights each rank trained to, before fit reloads rank 0's best checkpoint
        save_file(_state(model), os.path.join(out_dir, f"trained_rank{rank}.safetensors"))
        return reload(model, path)

    train_module.load_state = spy
    if rank:  # only rank 0 may write checkpoints

        def forbidden(*args, **kwargs):
            raise AssertionError(f"rank {rank} wrote a checkpoint")

        train_module.save_model = train_module.save_train_state = forbidden
    try:
        model = new_model(cfg, data, train_idx)
        res = fit(model, data, train_idx, val_idx, cfg, os.path.join(out_dir, "run"), progress=False)
        state = _state(model)
        state["_steps"] = torch.tensor([res.step])
        save_file(state, os.path.join(out_dir, f"final_rank{rank}.safetensors"))
        assert ctx.world_size == world
        assert all(p.device == ctx.device for p in model.parameters())
    finally:
        shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    "gloo",
    pytest.param("nccl", marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL check needs two GPUs")),
])
def test_two_ranks_agree_on_the_final_weights(backend, tmp_path, monkeypatch) -> None:
    root = corpus_dir("RAVDESS")
    monkeypatch.setenv("PHYSIOSER_CACHE", str(tmp_path / "cache"))
    from physioser.data import read_corpus
    from physioser.model.config import load_config
    from physioser.features import build_feature_set, select_rows

    classes = ["neutral", "happy", "angry", "sad"]
    rows = [r for r in select_rows(read_corpus("RAVDESS", root), classes) if r.speaker in ("01", "02")]
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), size=40, replace=False))]
    assert len({r.speaker for r in rows}) == 2
    cfg = load_config("configs/physioser.yaml", [
        SMALL_VAP, "backbone.name=fbank", "model.dim=16", "cpa.dim=8", "train.batch_size=8", "train.epochs=3",
        "train.patience=100", "train.vap_crop_seconds=0.5", f"classes=[{','.join(classes)}]",
    ])
    data, shape = build_feature_set(rows, classes, cfg, progress=False)
    cfg = replace(cfg, class_names=classes).with_backbone_shape(shape["num_layers"], shape["dim"])
    train_idx, val_idx = np.arange(0, 32), np.arange(32, 40)

    mp.spawn(_worker, args=(2, _free_port(), backend, data, cfg, train_idx, val_idx, str(tmp_path)), nprocs=2, join=True)

    # the weights each rank ended training with agree (DDP averaged every step's gradients), although
    # the two ranks saw disjoint halves of every epoch
    ta = load_file(str(tmp_path / "trained_rank0.safetensors"))
    tb = load_file(str(tmp_path / "trained_rank1.safetensors"))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), f"ranks disagree on {key}"
    a = load_file(str(tmp_path / "final_rank0.safetensors"))
    b = load_file(str(tmp_path / "final_rank1.safetensors"))
    # each rank took ceil(32 / 2) / 8 = 2 steps per epoch, not the 4 of one process over all 32
    assert int(a["_steps"]) == int(b["_steps"]) == 3 * 2
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"ranks disagree on {key}"
    # training moved the weights away from the seeded initialisation
    from physioser.train import new_model

    init = new_model(cfg, data, train_idx).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in init if init[k].is_floating_point())
    # rank 0's checkpoint holds the weights both ranks ended with (fit reloads the best epoch)
    best = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert best and all(torch.equal(v, a[k]) for k, v in best.items())


def test_context_of_a_later_rank() -> None:
    ctx = DistContext(rank=2, world_size=3)
    assert not ctx.is_main and ctx.num_samples(10) == 4 and len(ctx.shard(np.arange(10))) == 4
