"""Speaker adaptation on the training path (statistics pooling; the formula lives in
:mod:`physioser.runtime.adaptation`, shared with the stream).

* :func:`speaker_evidence` — what a speaker's state sums for cached rows: the model's standardised
  statistics, speaker features (minus the predicted emotion's offset) and predicted probabilities,
  computed with no speaker offset (strict pass);
* :func:`training_offsets` — for each training row, with probability ``adapt.train_prob``, the
  offset of ``k`` *other* random utterances of its speaker (``k`` drawn from ``adapt.train_k``,
  0 = all others), so that one model learns the strict (zero offset) and adapted inputs;
* :func:`speaker_reference` — the training speakers' mean evidence (of their recordings and of each
  kind of training copy apart) and emotion balance, that the ``referenced`` rule measures a test
  speaker against; :func:`write_speaker_reference` keeps it beside a trained model's weights, for the
  runtime;
* :func:`adapted_predictions` — test predictions under the adapted protocol with ``k`` random
  unlabelled utterances of each test speaker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from physioser.model.config import AdaptConfig
from physioser.runtime.adaptation import REFERENCE_FILE, SpeakerReference, evidence, mixing_weight, offsets_from_sums, speaker_offsets

__all__ = ["speaker_evidence", "speaker_reference", "write_speaker_reference", "training_offsets", "adapted_predictions", "RULES"]

RULES = ("balanced", "referenced", "compensated", "entropy", "plain")
"""Offset rules of :func:`adapted_predictions`: ``balanced`` = the model's (mixing weight from its
training speakers' emotion balance, runtime.adaptation); ``referenced`` = the same measured against
the nearest training speakers and with their balance (a :class:`SpeakerReference` from
:func:`speaker_reference`); ``compensated`` = balance 0 (the speaker mean of the emotion-compensated
statistics); ``entropy`` = balance 1 (the mixing weight from the speaker's predictions alone);
``plain`` = the plain speaker mean. The last three for comparison."""


@torch.no_grad()
def speaker_evidence(model, data, indices: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[n, 2F + C] :func:`~physioser.runtime.adaptation.evidence` of ``data[indices]`` (eval mode,
    zero offset; no label is read)."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for start in range(0, len(indices), batch_size):
        batch = data.collate(indices[start : start + batch_size])
        batch.pop("labels")
        batch = {k: v.to(device) for k, v in batch.items()}
        res = model.forward_cached(dict(batch, labels=torch.zeros(len(batch["backbone_counts"]), dtype=torch.long, device=device)))
        probs = F.softmax(res["logits"].float(), -1)
        rows.append(evidence(res["features"].float().cpu().numpy(),
                             model.speaker_features(res["features"], probs).float().cpu().numpy(), probs.cpu().numpy()))
    return np.concatenate(rows)


def speaker_reference(model, data, train_idx: np.ndarray) -> SpeakerReference:
    """The :class:`SpeakerReference` of the training rows ``data[train_idx]``: the mean evidence features
    and speaker features of each training speaker as each kind of row presents them (their recordings,
    and each kind of training copy, ``data.kinds()``, apart: a speaker heard in noise then finds the
    training speakers as the model heard them in noise), and the normalised entropy of the speaker's
    emotion labels (training labels only)."""
    train_idx = np.asarray(train_idx)
    rows = speaker_evidence(model, data, train_idx)
    dim, classes = model.class_offsets.shape[1], model.class_offsets.shape[0]
    speakers, kinds, labels = data.speakers[train_idx], data.kinds()[train_idx], np.asarray(data.labels)[train_idx]
    entries = sorted(set(zip(speakers.tolist(), kinds.tolist())))
    means = np.stack([rows[(speakers == s) & (kinds == k), : 2 * dim].mean(0) for s, k in entries])
    counts = np.stack([np.bincount(labels[speakers == s], minlength=classes) for s, _ in entries])
    return SpeakerReference(means, np.clip(mixing_weight(counts, 1.0), 0.0, 1.0))  # an entropy of 1 can round above it


def write_speaker_reference(model, data, train_idx: np.ndarray, model_dir: str | Path) -> Path | None:
    """Write ``model_dir``/:data:`~physioser.runtime.adaptation.REFERENCE_FILE`, the :func:`speaker_reference`
    of the training rows ``data[train_idx]`` (every row the model trained on, its augmented and stream-window
    copies included: each speaker as the model heard them, under each kind of condition it learnt); None
    (nothing written) for a model that is not speaker-adaptive."""
    if not getattr(model, "statistics", False):
        return None
    path = Path(model_dir) / REFERENCE_FILE
    speaker_reference(model, data, train_idx).save(path)
    return path


def training_offsets(rows: np.ndarray, speakers: Sequence[str], adapt: AdaptConfig, rng: np.random.Generator, dim: int,
                     balance: float) -> np.ndarray:
    """[n, F] offsets of the training rows for one epoch (zeros where a row stays strict), from their
    evidence ``rows`` [n, 2F + C]: each adapted row's offset is that of ``k`` other random rows of
    its speaker (see :func:`~physioser.runtime.adaptation.offsets_from_sums`)."""
    speakers = np.asarray(speakers)
    out = np.zeros((len(rows), dim))
    use = rng.random(len(rows)) < adapt.train_prob
    ks = np.asarray(adapt.train_k)
    tau = float(adapt.tau)
    for spk in np.unique(speakers[use]):
        idx = np.flatnonzero(speakers == spk)
        used = idx[use[idx]]
        if len(idx) < 2:
            continue
        # a random rank of every other row of the speaker; row i takes the k_i lowest (k = 0: all)
        scores = rng.random((len(used), len(idx)))
        scores[used[:, None] == idx[None, :]] = np.inf  # itself ranks last, never chosen
        rank = scores.argsort(1).argsort(1)
        k = ks[rng.integers(len(ks), size=len(used))]
        k = np.where((k == 0) | (k > len(idx) - 1), len(idx) - 1, k)
        weights = (rank < k[:, None]).astype(np.float64)  # [used, rows], k_i ones per row
        out[used] = offsets_from_sums(weights @ rows[idx], k.astype(np.float64), dim, tau, balance)
    return out


@torch.no_grad()
def adapted_predictions(model, data, test_idx: np.ndarray, ks: Sequence[int | None], tau: float, seed: int = 0,
                        batch_size: int = 256, rule: str = "balanced", reference: SpeakerReference | None = None) -> dict:
    """{k: logits [n, C]} of ``data[test_idx]`` with each test speaker's offset from ``k`` random
    utterances of theirs (k=None: all; 0: the strict protocol) under the offset ``rule`` (:data:`RULES`;
    ``referenced`` needs the training speakers' ``reference``). Test labels are never read."""
    if rule not in RULES:
        raise ValueError(f"unknown adaptation rule {rule!r}; expected one of {RULES}")
    if (rule == "referenced") != (reference is not None):
        raise ValueError("the 'referenced' rule, and only it, takes a speaker reference (speaker_reference)")
    rows = speaker_evidence(model, data, test_idx)
    dim = model.class_offsets.shape[1]
    if rule == "plain":
        rows[:, dim : 2 * dim] = rows[:, :dim]
    balance = {"balanced": float(model.speaker_balance), "compensated": 0.0}.get(rule, 1.0)
    speakers = data.speakers[test_idx]
    device = next(model.parameters()).device
    out = {}
    for k in ks:
        offsets = torch.as_tensor(speaker_offsets(rows, speakers, k, dim, tau, balance, seed=seed, reference=reference),
                                  dtype=torch.float32)
        logits = []
        for start in range(0, len(test_idx), batch_size):
            batch = {kk: v.to(device) for kk, v in data.collate(test_idx[start : start + batch_size]).items()}
            batch["speaker_offset"] = offsets[start : start + batch_size].to(device)
            logits.append(model.forward_cached(batch)["logits"].float().cpu())
        out[k] = torch.cat(logits).numpy()
    return out
