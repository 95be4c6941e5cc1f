"""Data-parallel training with ``torch.distributed``: torchrun launch, DistributedSampler sharding,
DDP gradient averaging, rank-0 logging and checkpointing.

:func:`physioser.train.fit` asks :func:`current` for the context of this process. Outside a
process group it gets ``None`` and trains as before. Inside one (``torchrun`` or
:func:`init_from_env`), every rank draws the same epoch permutation (same seed), keeps its
:class:`~torch.utils.data.DistributedSampler` shard of it (``shard``), runs the model through a
:class:`~torch.nn.parallel.DistributedDataParallel` wrapper of ``forward_cached`` (``forward``), so
gradients are averaged over ranks before each step, and only rank 0 shows progress and writes
checkpoints (``is_main``). Validation runs on every rank over the full validation split: the
weights are identical, so the early-stopping decisions are too.

Launch on several GPUs (one process per GPU, NCCL) or CPU processes (gloo)::

    torchrun --nproc_per_node 2 -m physioser.distributed -c RAVDESS --config configs/physioser.yaml --out runs/ddp
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistContext", "current", "init_from_env", "shutdown", "main"]


class _CachedForward(nn.Module):
    """Module whose ``forward`` is the wrapped model's ``forward_cached`` (what DDP can wrap)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model.forward_cached(batch)


@dataclass
class DistContext:
    """This process's place in the process group."""

    rank: int
    world_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _wrapped: dict = field(default_factory=dict, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def num_samples(self, n: int) -> int:
        """Items per rank and epoch of an ``n``-item epoch (DistributedSampler pads to equal shards)."""
        return -(-n // self.world_size)

    def shard(self, order: np.ndarray, epoch: int = 0) -> np.ndarray:
        """This rank's share of an epoch order that is identical on all ranks (DistributedSampler,
        shuffle off: the order is already shuffled; padded by wrapping so all ranks take equal steps)."""
        from torch.utils.data import DistributedSampler

        if dist.is_available() and dist.is_initialized():
            # guard against ranks whose generators drifted apart: everyone takes rank 0's order
            shared = torch.as_tensor(np.asarray(order), dtype=torch.int64, device=self.device)  # NCCL: on the GPU
            dist.broadcast(shared, src=0)
            order = shared.cpu().numpy()
        sampler = DistributedSampler(range(len(order)), num_replicas=self.world_size, rank=self.rank, shuffle=False)
        sampler.set_epoch(epoch)
        return np.asarray(order)[list(sampler)]

    def forward(self, model: nn.Module, batch: dict) -> dict:
        """``model.forward_cached(batch)`` through a DDP wrapper (gradients all-reduced on backward)."""
        key = id(model)
        if key not in self._wrapped:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # find_unused_parameters: heads and ablations leave some parameters without gradients
            self._wrapped[key] = nn.parallel.DistributedDataParallel(
                _CachedForward(model), device_ids=device_ids, find_unused_parameters=True
            )
        return self._wrapped[key](batch)

    def barrier(self) -> None:
        dist.barrier()


_CONTEXT: DistContext | None = None


def current() -> DistContext | None:
    """The context of this process when a process group is initialised, else None."""
    global _CONTEXT
    if not (dist.is_available() and dist.is_initialized()):
        return None
    if _CONTEXT is None or _CONTEXT.rank != dist.get_rank():
        _CONTEXT = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=_device())
    return _CONTEXT


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_from_env(backend: str | None = None) -> DistContext:
    """Initialise the process group from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT).

    ``backend``: ``nccl`` when CUDA is available, else ``gloo``."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"distributed training needs {missing} in the environment: launch with torchrun")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    ctx = current()
    assert ctx is not None
    return ctx


def shutdown() -> None:
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None
