"""Speaker adaptation on the training path (statistics pooling; the formula lives in
:mod:`physioser.runtime.adaptation`, shared with the stream).

* :func:`speaker_features` — the model's speaker features (standardised statistics minus the
  predicted emotion's offset) of cached rows, computed with no speaker offset (strict pass);
* :func:`training_offsets` — for each training row, with probability ``adapt.train_prob``, the
  offset of ``k`` *other* random utterances of its speaker (``k`` drawn from ``adapt.train_k``,
  0 = all others), so that one model learns the strict (zero offset) and adapted inputs;
* :func:`adapted_predictions` — test predictions under the adapted protocol with ``k`` random
  unlabelled utterances of each test speaker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from physioser.model.config import AdaptConfig
from physioser.runtime.adaptation import speaker_offset, speaker_offsets

__all__ = ["speaker_features", "training_offsets", "adapted_predictions"]


def _zero_offset_outputs(model, data, indices: np.ndarray, batch_size: int):
    """The model's outputs on ``data[indices]`` batch by batch (eval mode, zero offset; no label is read)."""
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(indices), batch_size):
        batch = data.collate(indices[start : start + batch_size])
        batch.pop("labels")
        batch = {k: v.to(device) for k, v in batch.items()}
        yield model.forward_cached(dict(batch, labels=torch.zeros(len(batch["backbone_counts"]), dtype=torch.long, device=device)))


@torch.no_grad()
def _probs(model, data, indices: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[n, C] class probabilities of ``data[indices]`` at zero offset."""
    return torch.cat([F.softmax(res["logits"].float(), -1).cpu()
                      for res in _zero_offset_outputs(model, data, indices, batch_size)]).numpy()


@torch.no_grad()
def speaker_features(model, data, indices: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[n, F] speaker features of ``data[indices]`` (eval mode, zero offset; no label is read)."""
    return torch.cat([model.speaker_features(res["features"], F.softmax(res["logits"], -1)).float().cpu()
                      for res in _zero_offset_outputs(model, data, indices, batch_size)]).numpy()


def training_offsets(features: np.ndarray, speakers: Sequence[str], adapt: AdaptConfig, rng: np.random.Generator) -> np.ndarray:
    """[n, F] offsets of the training rows for one epoch (zeros where a row stays strict): each
    adapted row averages ``k`` other random rows of its speaker (see :func:`speaker_offset`)."""
    speakers = np.asarray(speakers)
    out = np.zeros_like(features)
    use = rng.random(len(features)) < adapt.train_prob
    ks = np.asarray(adapt.train_k)
    tau = float(adapt.tau)
    for spk in np.unique(speakers[use]):
        rows = np.flatnonzero(speakers == spk)
        rows_used = rows[use[rows]]
        if len(rows) < 2:
            continue
        # a random rank of every other row of the speaker; row i takes the k_i lowest (k = 0: all)
        scores = rng.random((len(rows_used), len(rows)))
        scores[rows_used[:, None] == rows[None, :]] = np.inf  # itself ranks last, never chosen
        rank = scores.argsort(1).argsort(1)
        k = ks[rng.integers(len(ks), size=len(rows_used))]
        k = np.where((k == 0) | (k > len(rows) - 1), len(rows) - 1, k)
        weights = (rank < k[:, None]).astype(features.dtype)  # [used, rows], k_i ones per row
        out[rows_used] = weights @ features[rows] / (k[:, None] + tau)
    return out


@torch.no_grad()
def adapted_predictions(model, data, test_idx: np.ndarray, ks: Sequence[int | None], tau: float, seed: int = 0,
                        batch_size: int = 256, compensate: bool = True) -> dict:
    """{k: logits [n, C]} of ``data[test_idx]`` with each test speaker's offset from ``k`` random
    utterances of theirs (k=None: all; 0: the strict protocol). Labels are never read.
    ``compensate=False`` averages the plain statistics (no predicted-emotion offsets), for comparison."""
    feats = speaker_features(model, data, test_idx)
    if not compensate:
        feats = feats + _probs(model, data, test_idx) @ model.class_offsets.cpu().numpy()
    speakers = data.speakers[test_idx]
    device = next(model.parameters()).device
    out = {}
    for k in ks:
        offsets = torch.as_tensor(speaker_offsets(feats, speakers, k, tau, seed=seed), dtype=torch.float32)
        logits = []
        for start in range(0, len(test_idx), batch_size):
            batch = {kk: v.to(device) for kk, v in data.collate(test_idx[start : start + batch_size]).items()}
            batch["speaker_offset"] = offsets[start : start + batch_size].to(device)
            logits.append(model.forward_cached(batch)["logits"].float().cpu())
        out[k] = torch.cat(logits).numpy()
    return out
