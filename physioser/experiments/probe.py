"""Linear probes on cached features: a quick sanity table beside the trained models.

* backbone probe: per-layer utterance means of a frozen backbone's hidden states, all layers
  concatenated → StandardScaler → logistic regression (the issue's "backbone-only baseline measured
  here" recipe). The means come from the same pooled cache the training path reads
  (:func:`physioser.features.build_feature_set`), weighted by the frames of each segment;
* quartet probe: utterance mean and std over time of the cached, normalised VAP quartet, per
  component and band (:func:`physioser.vap.quartet_statistics`), restricted to any subset of the
  components {M, ρ, f_inst, τ_g} — which components carry emotion information, per corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["QUARTET_SUBSETS", "backbone_means", "quartet_stats", "run_probe", "run_quartet_probe"]

QUARTET_SUBSETS: dict[str, tuple[str, ...]] = {
    "M": ("M",), "rho": ("rho",), "f_inst": ("f_inst",), "tau_g": ("tau_g",),
    "amplitude": ("M", "rho"), "phase": ("f_inst", "tau_g"), "full": ("M", "rho", "f_inst", "tau_g"),
}
"""Component subsets of the quartet probe: each alone, the amplitude and phase pairs, all four."""


def _config(overrides: Sequence[str]):
    from physioser.model.config import load_config

    return load_config(None, list(overrides))


def backbone_means(rows: Sequence, class_names: Sequence[str], backbone: str, *, progress: bool = True) -> np.ndarray:
    """[N, L·D] per-layer utterance means of ``backbone``'s cached hidden states, layers concatenated."""
    from physioser.features import build_feature_set

    cfg = _config([f"backbone.name={backbone}", "model.branches=[backbone]", "cpa.weight=0"])
    fs, _ = build_feature_set(rows, class_names, cfg, progress=progress)
    w = fs.backbone_counts / fs.backbone_counts.sum(1, keepdim=True).clamp(min=1.0)  # [N, 4]
    means = (fs.backbone_segments * w[:, None, :, None]).sum(2)  # [N, L, D]
    return means.reshape(len(rows), -1).numpy().astype(np.float64)


def quartet_stats(rows: Sequence, class_names: Sequence[str], *, overrides: Sequence[str] = (), progress: bool = True) -> tuple[np.ndarray, tuple[str, ...]]:
    """([N, 4, F, 2] mean/std over time of each row's cached normalised quartet, component names)."""
    from physioser.features import build_feature_set
    from physioser.vap import quartet_statistics

    cfg = _config(["model.branches=[vap]", "cpa.weight=0", *overrides])
    fs, _ = build_feature_set(rows, class_names, cfg, progress=progress)
    stats = []
    for q in fs.quartets:
        qf = q.float()[None]
        stats.append(quartet_statistics(qf, torch.tensor([qf.shape[-1]]))[0])
    return torch.stack(stats).numpy().astype(np.float64), cfg.model.vap.axes


def run_probe(backbone: str, corpora: Sequence[str], *, test_corpus: str | None = None, classes: Sequence[str] | None = None,
              corpora_root: Path | None = None, seed: int = 0, with_quartet: bool = False, progress: bool = True) -> dict:
    """Linear probe of ``backbone`` under the protocol of ``physioser eval``; ``with_quartet`` concatenates
    the quartet statistics (all four components) to the backbone features — the VAP branch's
    information at the linear level, per backbone."""
    from physioser.data.labels import FOUR_CLASSES
    from physioser.experiments.common import DEFAULT_ROOT, load_labelled_rows, protocol_plan, score_folds

    if test_corpus is not None and not classes:
        classes = list(FOUR_CLASSES)
    names = list(corpora) + ([test_corpus] if test_corpus else [])
    rows, labels, class_names, spans = load_labelled_rows(names, corpora_root or DEFAULT_ROOT, classes)
    x = backbone_means(rows, class_names, backbone, progress=progress)
    if with_quartet:
        q, _ = quartet_stats(rows, class_names, progress=progress)
        x = np.concatenate([x, q.reshape(len(rows), -1)], axis=1)
    plan = protocol_plan(rows, spans, corpora, test_corpus=test_corpus, seed=seed)
    res = score_folds(x, labels, rows, plan, class_names)
    return {"model": f"linear probe: {backbone} per-layer utterance means, layers concatenated"
                     + (" + quartet statistics" if with_quartet else "") + f" ({x.shape[1]}) -> "
                     "StandardScaler -> logistic regression (C by val UA)",
            "backbone": backbone, "protocol": {"train_corpora": list(corpora), "test_corpus": test_corpus,
                                               "folds": [p[0] for p in plan]},
            "class_names": class_names, **res}


def run_quartet_probe(corpus: str, subsets: dict[str, Sequence[str]], *, corpora_root: Path | None = None,
                      seed: int = 0, progress: bool = True) -> dict:
    """Linear probes on quartet statistics restricted to component subsets, e.g.
    ``{"full": "M rho f_inst tau_g".split(), "amplitude": ["M", "rho"], "phase": ["f_inst", "tau_g"]}``.

    Returns {"subsets": {name: score_folds result}, "components": names, ...} on the corpus's own folds.
    """
    from physioser.experiments.common import DEFAULT_ROOT, load_labelled_rows, protocol_plan, score_folds

    rows, labels, class_names, spans = load_labelled_rows([corpus], corpora_root or DEFAULT_ROOT)
    stats, names = quartet_stats(rows, class_names, progress=progress)
    plan = protocol_plan(rows, spans, [corpus], seed=seed)
    out = {}
    for subset, comps in subsets.items():
        unknown = sorted(set(comps) - set(names))
        if unknown:
            raise ValueError(f"unknown quartet components {unknown}; the quartet has {list(names)}")
        idx = [names.index(c) for c in comps]
        out[subset] = score_folds(stats[:, idx].reshape(len(rows), -1), labels, rows, plan, class_names)
    return {"model": "linear probe on quartet statistics (mean, std over time per component and band) -> "
                     "StandardScaler -> logistic regression (C by val UA)",
            "components": list(names), "subset_components": {k: list(v) for k, v in subsets.items()},
            "protocol": {"train_corpora": [corpus], "test_corpus": None, "folds": [p[0] for p in plan]},
            "class_names": class_names, "subsets": out}
