"""Interpretability of trained PhysioSER runs: quartet component attribution, learned backbone layer
weights and CPA alignment statistics, per corpus, mean ± std over the speaker-independent folds.

For a merged sweep run ``eval/results/experiments/<run>/results.json`` and its fold checkpoints
``<runs dir>/<run>/fold<k>/`` (written by ``physioser eval``), on each fold's *test* speakers:

* drop-one-component attribution: UA of the trained model with one quartet component replaced by
  its normalised mean (0) at test time, for M, ρ, f_inst and τ_g; importance = UA(full) − UA(drop);
  and the same with the whole quartet replaced (how much the fused model uses the VAP branch at all);
* layer weights: the softmax weights of the learned layer sum of the frozen backbone;
* CPA alignment: for the L2-normalised projections g_v(z_v), g_s(z_s) of the test utterances, the
  mean cosine of matched pairs (one utterance's two views), of unmatched pairs with the same label
  and with different labels, top-1 retrieval accuracy in both directions (chance = 1/N), and the
  learned logit scale.

Results go to ``eval/results/experiments/analysis/<run>.json`` with plots beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from physioser.experiments.common import DEFAULT_ROOT, EXPERIMENTS_DIR
from physioser.paths import runs_dir

__all__ = ["analyze_run", "plot_analyses", "ANALYSIS_DIR"]

ANALYSIS_DIR = EXPERIMENTS_DIR / "analysis"


def _subset(data, idx: np.ndarray):
    from physioser.features import FeatureSet

    return FeatureSet(
        rows=[data.rows[i] for i in idx], labels=data.labels[idx], class_names=data.class_names,
        backbone_segments=None if data.backbone_segments is None else data.backbone_segments[idx],
        backbone_counts=None if data.backbone_counts is None else data.backbone_counts[idx],
        quartets=None if data.quartets is None else [data.quartets[i] for i in idx],
    )


def _without_component(data, channel: int | slice):
    from dataclasses import replace

    quartets = []
    for q in data.quartets:
        q = q.clone()
        q[channel] = 0
        quartets.append(q)
    return replace(data, quartets=quartets)


def _cpa_statistics(model, data) -> dict:
    """Alignment of the CPA projections over all utterances of ``data`` (one fold's test set)."""
    from physioser.train import predict

    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = model.cpa.register_forward_hook(lambda mod, inputs, out: captured.append((inputs[0].detach(), inputs[1].detach())))
    try:
        predict(model, data)
    finally:
        handle.remove()
    z_v = torch.cat([c[0] for c in captured])
    z_s = torch.cat([c[1] for c in captured])
    with torch.no_grad():
        a, b = model.cpa.embed(z_v, z_s)
        cos = (a @ b.t()).numpy()
    n = cos.shape[0]
    labels = data.labels
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(n, dtype=bool)
    return {
        "matched_cos": float(np.diag(cos).mean()),
        "unmatched_same_label_cos": float(cos[same & off].mean()) if (same & off).any() else float("nan"),
        "unmatched_other_label_cos": float(cos[~same].mean()) if (~same).any() else float("nan"),
        "retrieval_v_to_s": float((cos.argmax(1) == np.arange(n)).mean()),
        "retrieval_s_to_v": float((cos.argmax(0) == np.arange(n)).mean()),
        "retrieval_chance": 1.0 / n,
        "logit_scale": float(model.cpa.logit_scale().detach()),
        "n": int(n),
    }


def analyze_run(run: str, *, results_root: Path = EXPERIMENTS_DIR, checkpoints_root: Path | None = None,
                corpora_root: Path = DEFAULT_ROOT, out_dir: Path = ANALYSIS_DIR, progress: bool = True) -> dict:
    """Attribution, layer weights and CPA statistics of every fold checkpoint of a merged intra-corpus run."""
    from physioser.data.folds import fold_plan
    from physioser.model.checkpoint import load_model
    from physioser.model.config import Config
    from physioser.features import load_corpora
    from physioser.model.metrics import classification_metrics, summarize
    from physioser.train import predict

    path = Path(results_root) / run / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the sweep (or merge its parts) first")
    res = json.loads(path.read_text())
    corpora = res["protocol"]["train_corpora"]
    if res["protocol"].get("test_corpus") or len(corpora) != 1:
        raise ValueError(f"{run}: analysis needs an intra-corpus run, got protocol {res['protocol']}")
    cfg, data, spans = load_corpora(Config.from_dict(res["config"]), corpora, corpora_root, progress=progress)
    plan = {p[0]: p for p in fold_plan(data, spans, corpora, seed=cfg.train.seed)}
    use_vap = cfg.model.uses("vap")
    components = cfg.model.vap.axes if use_vap else ()
    per_fold = []
    for k in res["protocol"]["folds"]:
        ckpt = Path(checkpoints_root or runs_dir()) / run / f"fold{k}"
        if not (ckpt / "model.safetensors").is_file():
            raise FileNotFoundError(f"{ckpt}/model.safetensors is missing: the checkpoints of {run} are needed")
        model = load_model(ckpt, with_backbone=False)
        test = _subset(data, plan[k][3][corpora[0]])
        ua = lambda d: classification_metrics(d.labels, predict(model, d)["logits"].argmax(1), d.class_names)["ua"]  # noqa: E731
        fold = {"fold": k, "ua": ua(test)}
        reported = {int(f["fold"]): f["ua"] for f in res["corpora"][corpora[0]]["folds"]}.get(k)
        # the checkpoint must reproduce the UA the run reported for this fold (else it was overwritten since)
        fold["reported_ua"] = reported
        fold["checkpoint_matches"] = reported is not None and abs(fold["ua"] - reported) < 1e-9
        if use_vap and model.use_vap:
            fold["drop"] = {c: ua(_without_component(test, i)) for i, c in enumerate(components)}
            fold["importance"] = {c: fold["ua"] - v for c, v in fold["drop"].items()}
            fold["importance_all"] = fold["ua"] - ua(_without_component(test, slice(None)))  # the whole quartet
        if getattr(model, "featurizer", None) is not None:
            fold["layer_weights"] = model.featurizer.layer_weights().detach().numpy().tolist()
        if model.cpa is not None:
            fold["cpa"] = _cpa_statistics(model, test)
        per_fold.append(fold)
    out: dict = {"run": run, "corpus": corpora[0], "config": cfg.name, "folds": per_fold,
                 "checkpoints_match_results": all(f["checkpoint_matches"] for f in per_fold),
                 "ua": summarize(per_fold, ["ua"])["ua"]}
    if any("importance" in f for f in per_fold):
        out["importance"] = {c: summarize([f["importance"] for f in per_fold], [c])[c] for c in components}
        out["importance_all"] = summarize(per_fold, ["importance_all"])["importance_all"]
    if any("layer_weights" in f for f in per_fold):
        w = np.array([f["layer_weights"] for f in per_fold])
        out["layer_weights"] = {"mean": w.mean(0).tolist(), "std": w.std(0).tolist()}
    if any("cpa" in f for f in per_fold):
        keys = [k for k in per_fold[0]["cpa"] if k != "n"]
        out["cpa"] = summarize([f["cpa"] for f in per_fold], keys)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / f"{run}.json").write_text(json.dumps(out, indent=1))
    return out


def plot_analyses(analyses: list[dict], out_dir: Path = ANALYSIS_DIR) -> list[Path]:
    """Bar plot of component importance and line plot of layer weights, one series per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    imp = [a for a in analyses if "importance" in a]
    if imp:
        comps = list(imp[0]["importance"])
        fig, ax = plt.subplots(figsize=(7, 3.2))
        width = 0.8 / len(imp)
        for i, a in enumerate(imp):
            ax.bar(np.arange(len(comps)) + i * width, [a["importance"][c]["mean"] for c in comps], width,
                   yerr=[a["importance"][c]["std"] for c in comps], capsize=2, label=a["run"])
        ax.set_xticks(np.arange(len(comps)) + 0.4 - width / 2, comps)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel("UA(full) − UA(component dropped)")
        ax.set_title("Quartet component attribution on test speakers (mean ± std over folds)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / "component_importance.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    lw = [a for a in analyses if "layer_weights" in a]
    if lw:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for a in lw:
            m, s = np.array(a["layer_weights"]["mean"]), np.array(a["layer_weights"]["std"])
            ax.errorbar(np.arange(len(m)), m, yerr=s, marker="o", capsize=2, label=a["run"])
        ax.set_xlabel("backbone layer (0 = input embedding)")
        ax.set_ylabel("softmax layer weight")
        ax.set_title("Learned backbone layer weights (mean ± std over folds)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / "layer_weights.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
