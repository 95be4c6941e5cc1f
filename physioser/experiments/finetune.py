"""Fine-tuning the Whisper encoder under the recipe's head, against the same model frozen.

The recipe (``configs/recipe.yaml``) learns on the frozen encoder's per-layer frame statistics. Here
the top blocks of the encoder learn too, at a fraction of the head's learning rate, on the folds and
seeds of the recipe sweep (:mod:`physioser.experiments.recipe`), so that its report pairs them:

* ``pack`` (where the corpora are): every row's Whisper log-mel, eight bits per value (Whisper floors
  each clip's log-mel 2 units below its peak: a step of 2/255 ≈ 0.3 dB), the encoder's weights, and the
  recipe pack's rows and tasks → one ``.npz`` (RAVDESS: 43 MiB, whisper-tiny.en's weights included);
* ``run`` (on the GPU machine): every (variant, task, fold, seed) builds the recipe's
  :class:`~physioser.model.physioser.PhysioSER` head (standardised from the frozen encoder's statistics
  of the training rows, as :func:`physioser.train.new_model`), puts it on the encoder and trains both
  with :func:`physioser.train.fit`; test logits under the strict protocol, in the recipe's run format
  (``recipe report --finetune-runs RUNS...`` scores them beside the recipe and the probe).

Variants: ``ft-frozen`` (no encoder block learns: the paired control, same code and input),
``ft-top<N>`` (the top N blocks and the final layer norm learn at ``lr_scale`` × the head's rate),
``ft-all`` (every block).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from physioser.experiments.recipe import VARIANTS as RECIPE_VARIANTS
from physioser.experiments.recipe import _label, fold_rows, pack_meta, read_rows, task_plan
from physioser.model.pooling import frame_statistics

__all__ = ["pack", "run", "quantise", "dequantise", "encoder_statistics", "MelSet", "FineTuned", "VARIANTS", "MEL_RANGE"]

MEL_RANGE = 2.0
"""Span of a clip's Whisper log-mel below its peak (the floor at peak − 8 in log10, scaled by 1/4)."""
MAX_FRAMES = 1200
"""Mel frames kept per clip (12 s at 100 Hz, centred), as ``train.max_seconds`` crops the quartets."""


@dataclass(frozen=True)
class Variant:
    blocks: int  # top encoder blocks that learn (0: frozen; more than the encoder has: all)
    lr_scale: float  # their learning rate over the head's


VARIANTS: dict[str, Variant] = {
    "ft-frozen": Variant(0, 0.0),
    "ft-top1": Variant(1, 0.03),
    "ft-top2": Variant(2, 0.03),
    "ft-all": Variant(99, 0.03),
}
RECIPE = "stats-mlp-reg-fixed"
"""The head and schedule every variant trains with (``configs/recipe.yaml``)."""


def quantise(mel: np.ndarray) -> tuple[np.ndarray, float]:
    """One clip's log-mel [80, T] -> (uint8 [T, 80] steps below its peak, the peak)."""
    peak = float(mel.max())
    q = np.rint((peak - mel.T) * (255.0 / MEL_RANGE))
    return np.clip(q, 0, 255).astype(np.uint8), peak


def dequantise(q: np.ndarray, peak: float) -> np.ndarray:
    """uint8 [T, 80] and the peak -> log-mel [80, T] float32."""
    return (peak - q.T.astype(np.float32) * (MEL_RANGE / 255.0)).astype(np.float32)


def pack(corpora: list[str], out: Path, corpora_root: Path, backbone: str = "whisper-tiny.en", seed: int = 0,
         progress: bool = True) -> Path:
    """Write the pack (see the module doc) for ``corpora``; returns its path."""
    from tqdm import tqdm

    from physioser.backbones import FeatureCache, build_backbone

    bb = build_backbone(backbone)
    if not hasattr(bb, "encode_mel"):
        raise ValueError(f"{backbone}: fine-tuning needs a Whisper encoder (log-mel input)")
    loader = FeatureCache().loader
    rows, spans = read_rows(corpora, corpora_root)
    mels, peaks, offsets = [], np.zeros(len(rows), np.float32), np.zeros(len(rows) + 1, np.int64)
    for i, row in enumerate(tqdm(rows, desc="log-mel", unit="clip", disable=not progress)):
        wave = torch.as_tensor(loader(row.path), dtype=torch.float32)[None]
        with torch.inference_mode():
            mel, frames = bb.log_mel(wave, torch.tensor([wave.shape[1]]))
        mel = mel[0, :, : int(frames[0])].numpy()
        start = max(0, (mel.shape[1] - MAX_FRAMES) // 2)
        q, peaks[i] = quantise(mel[:, start : start + MAX_FRAMES])
        mels.append(q)
        offsets[i + 1] = offsets[i] + len(q)
    shape = {"name": bb.name, "n_mels": int(bb.conv1.in_channels),
             "dim": int(bb.dim), "heads": int(bb.blocks[0].heads), "layers": len(bb.blocks),
             "hidden": int(bb.blocks[0].fc1.out_features), "max_frames": int(bb.positions.shape[0])}
    meta = pack_meta(bb, corpora, rows, task_plan(rows, spans, corpora, seed))
    meta["encoder"] = shape
    weights = {f"encoder/{k}": v.to(torch.float16).numpy() for k, v in bb.state_dict().items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, mel=np.concatenate(mels), offsets=offsets, peaks=peaks, meta=np.array(json.dumps(meta)), **weights)
    return out


class MelSet:
    """Rows of a pack as the training loop reads them: ``collate(rows)`` → padded log-mel [B, 80, T],
    its frame lengths and the labels."""

    def __init__(self, mel: np.ndarray, offsets: np.ndarray, peaks: np.ndarray, indices: np.ndarray, labels: np.ndarray) -> None:
        self.mel, self.offsets, self.peaks, self.indices = mel, offsets, peaks, np.asarray(indices)
        self.labels = np.asarray(labels)

    def __len__(self) -> int:
        return len(self.indices)

    def collate(self, rows, crop_frames: int = 0, generator=None) -> dict:
        """The training loop's batch call; clips are never cropped (``crop_frames``, ``generator`` unused)."""
        clips = [dequantise(self.mel[self.offsets[g] : self.offsets[g + 1]], float(self.peaks[g])) for g in self.indices[np.asarray(rows)]]
        lengths = [c.shape[1] for c in clips]
        batch = np.zeros((len(clips), clips[0].shape[0], max(lengths)), np.float32)
        for i, c in enumerate(clips):
            batch[i, :, : c.shape[1]] = c
        return {"mel": torch.from_numpy(batch), "mel_lengths": torch.tensor(lengths, dtype=torch.long),
                "labels": torch.as_tensor(self.labels[np.asarray(rows)], dtype=torch.long)}


def encoder_statistics(encoder: nn.Module, mel: torch.Tensor, mel_lengths: torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame mean and standard deviation [B, L, D] of the last ``layers`` hidden states of log-mel [B, 80, T]."""
    hidden = encoder.encode_mel(mel, mel_lengths)
    lengths = torch.div(mel_lengths - 1, 2, rounding_mode="floor") + 1
    means, spreads = frame_statistics(torch.stack(hidden[-layers:], 0), lengths)
    return means.transpose(0, 1), spreads.transpose(0, 1)


class FineTuned(nn.Module):
    """The recipe's PhysioSER ``head`` (statistics pooling of every layer) on a Whisper ``encoder``
    whose top ``blocks`` blocks (and final layer norm) learn at ``lr_scale`` × the head's rate.
    ``forward_cached`` reads :class:`MelSet` batches, so :func:`physioser.train.fit` trains it."""

    def __init__(self, head: nn.Module, encoder: nn.Module, blocks: int, lr_scale: float) -> None:
        super().__init__()
        self.head, self.encoder, self.encoder_lr_scale = head, encoder, lr_scale
        encoder.freeze()
        learning = list(encoder.blocks)[len(encoder.blocks) - min(blocks, len(encoder.blocks)) :]
        for module in learning + ([encoder.final_norm] if learning else []):
            module.requires_grad_(True)

    def lr_scale(self, name: str) -> float:
        return self.encoder_lr_scale if name.startswith("encoder.") else 1.0

    def forward_cached(self, batch: dict) -> dict:
        statistics = encoder_statistics(self.encoder, batch["mel"], batch["mel_lengths"], self.head.num_layers)
        features = self.head._standardised_statistics(*statistics)
        mix = (batch["mixup_perm"], batch["mixup_lam"]) if "mixup_perm" in batch else None
        out = self.head._head([self.head._statistics_part(features, None)], mix)
        return {"logits": out["logits"], "embedding": out["embedding"], "features": features, "stats": {},
                "aux": out["logits"].new_zeros(())}


_PACK: dict = {}


def _encoder(meta: dict, weights: dict) -> nn.Module:
    from physioser.backbones.whisper import WhisperEncoder

    encoder = WhisperEncoder(**meta["encoder"])
    encoder.load_state_dict({k: torch.as_tensor(v.astype(np.float32)) for k, v in weights.items()})
    return encoder


@torch.no_grad()
def _frozen_statistics(encoder: nn.Module, data: MelSet, idx: np.ndarray, layers: int, batch_size: int = 64):
    """Per-layer frame statistics [N, L, D] (mean, standard deviation) of ``data[idx]`` before training."""
    device = next(encoder.parameters()).device
    parts = []
    for start in range(0, len(idx), batch_size):
        batch = data.collate(idx[start : start + batch_size])
        parts.append([t.float().cpu() for t in encoder_statistics(encoder, batch["mel"].to(device), batch["mel_lengths"].to(device), layers)])
    return torch.cat([m for m, _ in parts]), torch.cat([s for _, s in parts])


def _job(args) -> dict:
    """One (variant, overrides of the recipe's config, task, fold, seed, pack, work folder) of
    :func:`physioser.experiments.recipe.run`'s pool."""
    from physioser.features import FeatureSet
    from physioser.model.config import load_config
    from physioser.train import fit, new_model, predict, training_device

    variant, overrides, task_name, fold_i, seed, pack_path, work = args
    spec = VARIANTS[variant]
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if not _PACK:
        with np.load(pack_path, allow_pickle=False) as z:
            _PACK.update(mel=z["mel"], offsets=z["offsets"], peaks=z["peaks"], meta=json.loads(str(z["meta"])),
                         weights={k[len("encoder/"):]: z[k] for k in z.files if k.startswith("encoder/")})
    meta = _PACK["meta"]
    task, fold, test_corpus, test_rows, used = fold_rows(meta, task_name, fold_i)
    local = {g: i for i, g in enumerate(used.tolist())}
    labels = np.array([_label(meta["rows"][g]["canonical"], task["classes"]) for g in used], dtype=np.int64)
    data = MelSet(_PACK["mel"], _PACK["offsets"], _PACK["peaks"], used, labels)
    cfg = load_config(None, [*RECIPE_VARIANTS[RECIPE], *overrides, f"train.seed={seed}",
                             "train.device=" + os.environ.get("RECIPE_DEVICE", "auto")])
    tr = np.array([local[g] for g in fold["train"] + fold["val"]])  # the recipe's fixed schedule: validation rows train
    te = np.array([local[g] for g in test_rows])
    cfg = replace(cfg, class_names=task["classes"], corpora=meta["corpora"]).with_backbone_shape(meta["num_layers"], meta["dim"])
    device = training_device(cfg.train.device)
    t0 = time.perf_counter()
    encoder = _encoder(meta, _PACK["weights"]).to(device)
    means, spreads = _frozen_statistics(encoder, data, tr, meta["num_layers"])
    rows = [SimpleNamespace(corpus=meta["rows"][g]["corpus"], speaker=meta["rows"][g]["speaker"]) for g in used[tr]]
    frozen = FeatureSet(rows=rows, labels=labels[tr], class_names=list(task["classes"]), backbone_segments=means[:, :, None, :],
                        backbone_counts=torch.ones(len(tr), 1), backbone_spread=spreads)
    head = new_model(cfg, frozen, np.arange(len(tr)))
    model = FineTuned(head, encoder, spec.blocks, spec.lr_scale)
    res = fit(model, data, tr, None, cfg, Path(work) / f"{variant}-{task_name}-{fold_i}-{seed}", progress=False, save=False)
    # no "corpora" field: an intra-corpus model does not depend on the pack's other corpora, so its scores go under
    # the variant's name whatever pack it came from (recipe.setting)
    return {"variant": variant, "backbone": meta["backbone"], "pack_corpora": meta["corpora"], "task": task_name, "fold": fold["fold"],
            "seed": seed, "test_corpus": test_corpus, "rows": test_rows, "labels": labels[te].tolist(), "best_epoch": res.best_epoch,
            "epochs": res.epochs_run, "seconds": time.perf_counter() - t0,
            "logits": {"0": predict(model, data, te)["logits"].astype(np.float16).tolist()}}


def run(pack_path: Path, plan: list, out_dir: Path, *, workers: int = 8, work: Path = Path("/tmp/finetune")) -> list[Path]:
    """``plan``: (variant, task, folds or None = all, seeds); see :func:`physioser.experiments.recipe.run`."""
    from physioser.experiments import recipe

    return recipe.run(pack_path, [(v, [], t, f, s) for v, t, f, s in plan], out_dir, workers=workers, work=work, job=_job)


def main(argv: list[str] | None = None) -> None:
    """``python -m physioser.experiments.finetune pack|run`` (see the module doc)."""
    import argparse

    from physioser.experiments.recipe import CORPUS_ORDER, pack_and_run_parsers, run_selection

    ap = argparse.ArgumentParser(prog="python -m physioser.experiments.finetune", description=__doc__.splitlines()[0])
    pack_and_run_parsers(ap, VARIANTS)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        print(pack(a.corpus or list(CORPUS_ORDER), a.out, a.corpora_root, a.backbone))
    else:
        folds, seeds = run_selection(a)
        print(run(a.pack, [(v, t, folds, seeds) for v in a.variant for t in a.task], a.out, workers=a.workers))


if __name__ == "__main__":
    main()
