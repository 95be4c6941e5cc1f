"""The frame-level Transformer research model (:mod:`physioser.model.research`) under the protocol of
``physioser eval``: same folds, same training loop (:func:`physioser.train.fit`: AdamW, warm-up +
cosine, early stopping on the speaker-disjoint validation split), same metrics.

Its input is one layer of a frozen backbone's cached hidden states (default: whisper-tiny.en's last
layer, 50 Hz), centre-cropped to ``max_frames`` (training: random crops of ``crop_frames``).
The attention variant of its blocks is the experimental variable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["FrameSet", "ResearchWrapper", "run_research"]


class FrameSet:
    """Rows, labels and per-utterance frames [T_i, D] (float16) with the ``collate`` of the training loop."""

    def __init__(self, rows: list, labels: np.ndarray, class_names: list[str], frames: list[torch.Tensor]) -> None:
        self.rows, self.labels, self.class_names, self.frames = rows, labels, class_names, frames

    def __len__(self) -> int:
        return len(self.rows)

    def collate(self, indices: Sequence[int], *, crop_frames: int = 0, generator: torch.Generator | None = None) -> dict:
        items = [self.frames[int(i)] for i in indices]
        if crop_frames:
            out = []
            for f in items:
                extra = f.shape[0] - crop_frames
                start = int(torch.randint(0, extra + 1, (1,), generator=generator)) if extra > 0 else 0
                out.append(f[start : start + crop_frames])
            items = out
        lengths = torch.tensor([f.shape[0] for f in items], dtype=torch.long)
        x = torch.zeros(len(items), int(lengths.max()), items[0].shape[1])
        for b, f in enumerate(items):
            x[b, : f.shape[0]] = f.float()
        return {"features": x, "lengths": lengths, "labels": torch.as_tensor(self.labels[np.asarray(indices)], dtype=torch.long)}


class ResearchWrapper(nn.Module):
    """ResearchSER with the training-path contract of :func:`physioser.train.fit` (``forward_cached``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward_cached(self, batch: dict) -> dict:
        from physioser.nn.attention import aux_loss

        x, padding, aux = self.model.encode(batch["features"], batch["lengths"])
        pooled = self.model.pool(x, padding)
        logits = self.model.classifier(self.model.drop(pooled))
        return {"logits": logits, "embedding": pooled, "aux": torch.as_tensor(aux_loss(aux), dtype=logits.dtype), "stats": {}}


def _frames(rows: Sequence, backbone: str, layer: int, max_frames: int, progress: bool) -> list[torch.Tensor]:
    from tqdm.auto import tqdm

    from physioser.backbones import FeatureCache, build_backbone

    bb = build_backbone(backbone)
    cache = FeatureCache()
    out = []
    for row in tqdm(rows, desc=f"{backbone} frames", disable=not progress, leave=False):
        h = cache.get_or_compute(row.path, bb)[layer]  # [T, D] float16
        if h.shape[0] > max_frames:
            start = (h.shape[0] - max_frames) // 2
            h = h[start : start + max_frames]
        out.append(h.contiguous().clone())
    return out


def run_research(corpus: str, *, attention: str = "mha", backbone: str = "whisper-tiny.en", layer: int = -1,
                 folds: Sequence[int] | None = None, overrides: Sequence[str] = (), max_frames: int = 600,
                 crop_frames: int = 150, corpora_root: Path | None = None, checkpoints: Path | None = None,
                 progress: bool = True) -> dict:
    """Train and test ResearchSER(attention) on every (or the given) fold of ``corpus``."""
    from physioser.experiments.common import DEFAULT_ROOT, load_labelled_rows, protocol_plan
    from physioser.paths import runs_dir
    from physioser.model.config import load_config
    from physioser.model.metrics import classification_metrics, summarize
    from physioser.model.research import ResearchConfig, ResearchSER
    from physioser.train import fit, predict

    rows, labels, class_names, spans = load_labelled_rows([corpus], corpora_root or DEFAULT_ROOT)
    cfg = load_config(None, ["model.branches=[backbone]", "cpa.weight=0", "train.vap_crop_seconds=0", *overrides])
    cfg = replace(cfg, name=f"research-{attention}", class_names=class_names)
    data = FrameSet(rows, labels, class_names, _frames(rows, backbone, layer, max_frames, progress))
    plan = protocol_plan(rows, spans, [corpus], seed=cfg.train.seed)
    if folds is not None:
        plan = [p for p in plan if p[0] in set(folds)]
    rcfg = ResearchConfig(input_dim=int(data.frames[0].shape[1]), num_classes=len(class_names), attention=attention)
    fold_results, histories = [], []
    ckpt_root = checkpoints or runs_dir() / f"research-{attention}-{corpus}"
    for k, tr, va, tests in plan:
        torch.manual_seed(cfg.train.seed)
        model = ResearchWrapper(ResearchSER(rcfg))
        # fit crops only VAP quartets; this view crops the frames of training batches (see _CroppedView)
        cropping = _CroppedView(data, crop_frames)
        res = fit(model, cropping, tr, va, cfg, ckpt_root / f"fold{k}", progress=progress)
        te = tests[corpus]
        m = classification_metrics(labels[te], predict(model, data, te)["logits"].argmax(1), class_names)
        m.update(fold=k, n_train=int(len(tr)), n_val=int(len(va)), test_speakers=sorted({rows[i].speaker for i in te}))
        fold_results.append(m)
        histories.append({"fold": k, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "seconds": res.seconds})
    conf = np.sum([np.array(f["confusion"]) for f in fold_results], axis=0)
    y_true = np.repeat(np.arange(len(class_names)), conf.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(len(class_names)), r) for r in conf])
    return {"model": f"research Transformer ({rcfg.layers} x {attention}, dim {rcfg.dim}) over {backbone} layer {layer} frames",
            "config": {**cfg.to_dict(), "research": rcfg.to_dict(), "backbone": {"name": backbone, "layer": layer}},
            "protocol": {"train_corpora": [corpus], "test_corpus": None, "folds": [p[0] for p in plan]},
            "class_names": class_names, "training": histories,
            "corpora": {corpus: {"summary": summarize(fold_results), "pooled": classification_metrics(y_true, y_pred, class_names),
                                 "folds": fold_results, "confusion": conf.tolist()}}}


class _CroppedView:
    """``data`` whose training batches are random crops of ``crop_frames`` frames. The training loop
    draws its batches with its generator; prediction (validation) collates without one and gets
    whole (centre-cropped to ``max_frames``) utterances."""

    def __init__(self, data: FrameSet, crop_frames: int) -> None:
        self.data, self.crop_frames = data, crop_frames
        self.labels, self.rows, self.class_names = data.labels, data.rows, data.class_names

    def __len__(self) -> int:
        return len(self.data)

    def collate(self, indices, *, crop_frames: int = 0, generator=None) -> dict:
        return self.data.collate(indices, crop_frames=self.crop_frames if generator is not None else 0, generator=generator)
