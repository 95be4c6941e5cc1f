"""Training-recipe sweep on pooled backbone statistics, sized for one GPU machine.

Three steps, so that the machine that trains needs neither the corpora nor the feature cache:

* ``pack`` (where the corpora and cache are): every row's per-layer frame mean and standard
  deviation (float16), its corpus, speaker and canonical label, and the fold plan of
  ``physioser eval`` for each corpus (intra-corpus, own class set; the same folds with every
  utterance of the other corpora in that class set added to training, task ``<corpus>+others``) and
  for leave-one-corpus-out (four classes) → one ``.npz`` (tens of MiB);
* ``run`` (on the GPU machine): every (variant, task, fold, seed) trains a :class:`PhysioSER` with
  :func:`physioser.train.fit` — the project's model and training loop — in a pool of worker
  processes, and stores the test logits under the strict protocol and, for statistics models, the
  adapted protocols (k = 5, 10, 20, all unlabelled utterances of each test speaker);
* ``score`` (anywhere): scikit-learn UA per fold, means over seeds and of the seed ensemble,
  paired per-fold differences → ``results.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

__all__ = ["pack", "run", "score", "probe", "ADAPT_KS", "TAUS"]

WITH_OTHERS = "+others"
"""Suffix of a pack task that trains on a corpus's training speakers plus every utterance of the other
corpora whose emotion is in the corpus's class set (tested on the same speakers as the corpus's own task)."""

ADAPT_KS = (0, 5, 10, 20, None)
"""Protocols stored per test row: k unlabelled utterances of the speaker (0 = strict, None = all)."""


def _plan_lists(plan) -> list[dict]:
    return [{"fold": int(k), "train": tr.tolist(), "val": va.tolist(), "test": {c: te.tolist() for c, te in tests.items()}}
            for k, tr, va, tests in plan]


def read_rows(corpora: list[str], corpora_root: Path) -> tuple[list, dict[str, np.ndarray]]:
    """Every row of ``corpora`` in order, and each corpus's span of row indices."""
    from physioser.data import read_corpus

    rows, spans = [], {}
    for name in corpora:
        own = read_corpus(name, Path(corpora_root) / name)
        spans[name] = np.arange(len(rows), len(rows) + len(own))
        rows += own
    return rows, spans


def task_plan(rows: list, spans: dict[str, np.ndarray], corpora: list[str], seed: int = 0) -> dict:
    """The pack's tasks (see the module doc): each corpus's folds of ``physioser eval``, the same with the
    other corpora added to training, and leave one corpus out."""
    from physioser.data.folds import _corpus_folds, speaker_split
    from physioser.data.labels import FOUR_CLASSES
    from physioser.features import class_names_for, select_rows

    tasks = {}
    for name in corpora:
        classes = class_names_for(SimpleNamespace(classes=None), [name])
        keep = set(map(id, select_rows([rows[i] for i in spans[name]], classes)))
        idx = np.array([i for i in spans[name] if id(rows[i]) in keep])
        folds = _corpus_folds([rows[i] for i in idx], name)
        plan = [(k, idx[np.asarray(f.train, dtype=np.int64)], idx[np.asarray(f.val, dtype=np.int64)],
                 {name: idx[np.asarray(f.test, dtype=np.int64)]}) for k, f in enumerate(folds)]
        tasks[name] = {"kind": "intra", "classes": classes, "folds": _plan_lists(plan)}
        others = np.array([i for c in corpora if c != name for i in spans[c] if _in_classes(rows[i].canonical, classes)], dtype=np.int64)
        if len(others):  # the same folds, every utterance of the other corpora in the corpus's classes added to training
            tasks[f"{name}{WITH_OTHERS}"] = {"kind": "intra", "classes": classes,
                                             "folds": _plan_lists([(k, np.concatenate([tr, others]), va, te) for k, tr, va, te in plan])}
    four = list(FOUR_CLASSES)
    in_four = _four_mask(rows, four)
    four_idx = {c: spans[c][in_four[spans[c]]] for c in corpora}
    for test in corpora if len(corpora) > 1 else []:  # leave one corpus out needs another corpus
        train = np.concatenate([four_idx[c] for c in corpora if c != test])
        tr, va = speaker_split(rows, train, 0.15, seed)
        tasks[f"to-{test}"] = {"kind": "loco", "classes": four,
                               "folds": _plan_lists([(0, tr, va, {test: four_idx[test]})])}
    return tasks


def pack_meta(backbone, corpora: list[str], rows: list, tasks: dict) -> dict:
    """The pack's ``meta``: backbone shape, corpora, tasks and each row's corpus, speaker, label and file name."""
    return {"backbone": backbone.name, "num_layers": int(backbone.num_layers), "dim": int(backbone.dim), "corpora": corpora,
            "tasks": tasks,
            "rows": [{"corpus": r.corpus, "speaker": r.speaker, "canonical": r.canonical, "path": str(Path(r.path).name)} for r in rows]}


def pack(corpora: list[str], out: Path, corpora_root: Path, backbone: str = "whisper-tiny.en", seed: int = 0) -> Path:
    """Write the pack (see the module doc) for ``corpora``; returns its path."""
    from physioser.backbones import FeatureCache, build_backbone

    bb = build_backbone(backbone)
    cache = FeatureCache()
    rows, spans = read_rows(corpora, corpora_root)
    mean = np.zeros((len(rows), bb.num_layers, bb.dim), np.float16)
    std = np.zeros_like(mean)
    for i, row in enumerate(rows):
        stats = cache.load_statistics(row.path, bb)
        if stats is None:
            cache.get_or_compute(row.path, bb)
            stats = cache.load_statistics(row.path, bb)
        mean[i], std[i] = stats[0].float().numpy(), stats[1].float().numpy()
    meta = pack_meta(bb, corpora, rows, task_plan(rows, spans, corpora, seed))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, mean=mean, std=std, meta=np.array(json.dumps(meta)))
    return out


def _four_mask(rows, four) -> np.ndarray:
    from physioser.data.labels import to_four_class

    return np.array([to_four_class(r.canonical) in four for r in rows])


def _label(canonical: str, classes: list[str]) -> int:
    from physioser.data.labels import FOUR_CLASSES, to_four_class

    return classes.index(to_four_class(canonical) if set(classes) == set(FOUR_CLASSES) else canonical)


def _feature_set(pack_data: dict, indices: np.ndarray, classes: list[str]):
    """A FeatureSet over ``indices`` of the pack (one cached segment per row: its utterance mean)."""
    import torch

    from physioser.features import FeatureSet

    meta = pack_data["meta"]
    rows = [SimpleNamespace(corpus=meta["rows"][i]["corpus"], speaker=meta["rows"][i]["speaker"]) for i in indices]
    labels = np.array([_label(meta["rows"][i]["canonical"], classes) for i in indices], dtype=np.int64)
    mean = torch.as_tensor(pack_data["mean"][indices].astype(np.float32))
    return FeatureSet(rows=rows, labels=labels, class_names=list(classes), backbone_segments=mean[:, :, None, :],
                      backbone_counts=torch.ones(len(indices), 1),
                      backbone_spread=torch.as_tensor(pack_data["std"][indices].astype(np.float32)))


_BASE = ["model.branches=[backbone]", "cpa.weight=0"]
_REG = ["model.head=mlp", "model.input_dropout=0.2", "train.mixup=0.4", "model.dropout=0.3"]
_FIXED = ["train.early_stopping=false", "train.epochs=60"]
_STATS = _BASE + ["model.statistics=true", *_REG]  # statistics pooling, regularised: the recipe before its schedule
_15EP = ["train.early_stopping=false", "train.epochs=15"]
VARIANTS: dict[str, list[str]] = {
    "means-linear": _BASE + ["model.head=linear"],
    "stats-linear": _BASE + ["model.statistics=true", "model.head=linear"],
    "stats-mlp-reg-fixed": _STATS + _FIXED,
    "stats-mlp-reg-fixed-adapt": _STATS + [*_FIXED, "adapt.train_prob=0.5"],
    "stats-mlp-reg-fixed-cw": _STATS + [*_FIXED, "train.class_weighting=true"],
    # for the +others tasks (about four times the rows): about as many optimiser steps as 60 epochs of one corpus
    "stats-mlp-reg-15ep": _STATS + _15EP,
    # the same trained with speaker offsets on half the rows (its adapted test features then match training)
    "stats-mlp-reg-15ep-adapt": _STATS + [*_15EP, "adapt.train_prob=0.5"],
    "stats-mlp-reg-15ep-cw": _STATS + [*_15EP, "train.class_weighting=true"],
    # the recipe with one regulariser or the schedule changed
    "stats-mlp-reg-120ep": _STATS + ["train.early_stopping=false", "train.epochs=120"],
    "stats-mlp-reg-drop5": _STATS + [*_FIXED, "model.dropout=0.5", "model.input_dropout=0.3"],
    "stats-mlp-reg-mix8": _STATS + [*_FIXED, "train.mixup=0.8"],
    "stats-mlp-reg-lr3": _STATS + [*_FIXED, "train.lr=3e-3"],
    # early-stopped on the validation speakers instead of the fixed schedule (leave-one-corpus-out: an unheard corpus)
    "stats-mlp-reg-es": _STATS + ["train.early_stopping=true", "train.epochs=60", "train.patience=5"],
    # the recipe without the frames' standard deviations (utterance means of every layer only)
    "means-mlp-reg-fixed": _BASE + [*_REG, *_FIXED],
    # the fused model's head (one attention block over the backbone's utterance tokens), early-stopped: the
    # no-branch twin of the physiology experiment
    "fusion-means-es": _BASE + ["model.head=fusion"],
    # the recipe on statistics standardised (or only centred) per corpus (CORPUS_STANDARDISED)
    "stats-mlp-reg-fixed-corpus": _STATS + _FIXED,
    "stats-mlp-reg-fixed-corpus-mean": _STATS + _FIXED,
}
"""The sweep's variants (config overrides); ``stats-mlp-reg-fixed`` is ``configs/recipe.yaml``."""

CORPUS_STANDARDISED = {"stats-mlp-reg-fixed-corpus": True, "stats-mlp-reg-fixed-corpus-mean": False}
"""Variants whose statistics are standardised per corpus before training and testing: each corpus's
mean over every one of its utterances removed (no label read) and, where True, divided by their
standard deviation, so that a held-out corpus is met in its own frame — adaptation to a new
language or recording set-up, reported beside the strict protocol."""

_PACK: dict = {}

TAUS = (1.0, 4.0, 16.0)
"""Shrinkage values whose adapted protocols are stored (key ``k@tau/rule``, rules of
:data:`physioser.model.adaptation.RULES`; runs made before the rules existed stored ``k@tau`` for the
compensated mean and ``k@tau/plain``)."""


def corpus_standardised(pack_data: dict, scale: bool = True) -> dict:
    """The pack's ``mean`` and ``std`` statistics [N, L, D], each corpus's centred on its own utterances'
    mean and, with ``scale``, divided by their standard deviation (see :data:`CORPUS_STANDARDISED`)."""
    corpora = np.array([r["corpus"] for r in pack_data["meta"]["rows"]])
    out = dict(pack_data)
    for key in ("mean", "std"):
        values = pack_data[key].astype(np.float32)
        for corpus in np.unique(corpora):
            rows = corpora == corpus
            values[rows] -= values[rows].mean(0)
            if scale:
                values[rows] /= values[rows].std(0) + 1e-4
        out[key] = values
    return out


def fold_rows(meta: dict, task_name: str, fold_i: int) -> tuple[dict, dict, str, list[int], np.ndarray]:
    """(task, fold, test corpus, its test rows, every row the fold uses, sorted) of a pack's ``meta``."""
    task = meta["tasks"][task_name]
    fold = task["folds"][fold_i]
    (test_corpus, test_rows), = fold["test"].items()
    return task, fold, test_corpus, test_rows, np.array(sorted(set(fold["train"]) | set(fold["val"]) | set(test_rows)))


def _job(args) -> dict:
    """One (variant, task, fold, seed): train, then test logits per protocol."""
    import torch

    from physioser.model.adaptation import RULES, adapted_predictions, speaker_reference
    from physioser.model.config import load_config
    from physioser.train import fit, new_model, predict

    variant, overrides, task_name, fold_i, seed, pack_path, work = args
    torch.set_num_threads(1)
    if not _PACK:
        with np.load(pack_path, allow_pickle=False) as z:
            _PACK.update(mean=z["mean"], std=z["std"], meta=json.loads(str(z["meta"])))
    meta = _PACK["meta"]
    task, fold, test_corpus, test_rows, used = fold_rows(meta, task_name, fold_i)
    local = {g: i for i, g in enumerate(used.tolist())}
    source = _PACK
    if variant in CORPUS_STANDARDISED:  # once per worker process, not per job
        key = f"standardised-{CORPUS_STANDARDISED[variant]}"
        if key not in _PACK:
            _PACK[key] = corpus_standardised(_PACK, CORPUS_STANDARDISED[variant])
        source = _PACK[key]
    data = _feature_set(source, used, task["classes"])
    cfg = load_config(None, [*overrides, f"train.seed={seed}", "train.device=" + os.environ.get("RECIPE_DEVICE", "auto")])
    trainval = not cfg.train.early_stopping  # as physioser eval: validation rows join the training rows
    tr = np.array([local[g] for g in fold["train"] + (fold["val"] if trainval else [])])
    va = None if trainval or not fold["val"] else np.array([local[g] for g in fold["val"]])
    te = np.array([local[g] for g in test_rows])
    cfg = replace(cfg, class_names=task["classes"], corpora=meta["corpora"]).with_backbone_shape(meta["num_layers"], meta["dim"])
    t0 = time.perf_counter()
    model = new_model(cfg, data, tr)
    res = fit(model, data, tr, va, cfg, Path(work) / f"{variant}-{task_name}-{fold_i}-{seed}", progress=False, save=False)
    out = {"variant": variant, "backbone": meta["backbone"], "corpora": meta["corpora"], "task": task_name, "fold": fold["fold"],
           "seed": seed, "test_corpus": test_corpus,
           "rows": test_rows, "labels": data.labels[te].tolist(), "best_epoch": res.best_epoch, "epochs": res.epochs_run,
           "seconds": time.perf_counter() - t0, "logits": {"0": predict(model, data, te)["logits"].astype(np.float16).tolist()}}
    if model.use_backbone and model.statistics:
        out["balance"] = float(model.speaker_balance)
        reference = speaker_reference(model, data, tr)
        for tau in TAUS:
            for rule in RULES:
                logits = adapted_predictions(model, data, te, [k for k in ADAPT_KS if k != 0], tau, seed=seed, rule=rule,
                                             reference=reference if rule == "referenced" else None)
                for k, v in logits.items():
                    out["logits"][f"{'all' if k is None else k}@{tau:g}/{rule}"] = v.astype(np.float16).tolist()
    return out


def run(pack_path: Path, plan: list[tuple[str, list[str], str, list[int] | None, int]], out_dir: Path, *, workers: int = 8,
        work: Path = Path("/tmp/recipe"), job=_job) -> list[Path]:
    """``plan``: (variant, overrides, task, folds or None = all, seeds: a count or the seeds). Trains every job (``job``: one
    (variant, overrides, task, fold, seed, pack path, work folder) → its result) in a pool of
    ``workers`` processes; writes ``out_dir/<variant>.json.gz`` per variant."""
    import gzip
    import multiprocessing as mp

    with np.load(pack_path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    jobs = [(v, ov, t, f, s, str(pack_path), str(work)) for v, ov, t, folds, seeds in plan
            for f in (folds if folds is not None else range(len(meta["tasks"][t]["folds"])))
            for s in (range(seeds) if isinstance(seeds, int) else seeds)]
    jobs.sort(key=lambda j: -len(meta["tasks"][j[2]]["folds"][j[3]]["train"]))  # longest first
    results: dict[str, list] = {}
    overrides = {v: ov for v, ov, *_ in plan}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def write() -> list[Path]:  # after every job too, so that a run cut short keeps what it finished
        paths = []
        for variant, rs in results.items():
            path = out_dir / f"{variant}.json.gz"
            path.write_bytes(gzip.compress(json.dumps({"variant": variant, "overrides": overrides[variant], "results": rs}).encode()))
            paths.append(path)
        return paths

    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, r in enumerate(pool.imap_unordered(job, jobs)):
            results.setdefault(r["variant"], []).append(r)
            print(f"{i + 1}/{len(jobs)} jobs, {time.perf_counter() - t0:.0f} s", flush=True)
            write()
    return write()


def setting(variant: str, result: dict) -> str:
    """The name a run's scores go under: the variant, then its backbone and corpus count where they
    differ from whisper-tiny.en and the five corpora (runs that predate those fields: the defaults)."""
    parts = [variant]
    if result.get("backbone", "whisper-tiny.en") != "whisper-tiny.en":
        parts.append(result["backbone"])
    if len(result.get("corpora", CORPUS_ORDER)) != len(CORPUS_ORDER):
        parts.append(f"{len(result['corpora'])} corpora")
    return " · ".join(parts)


def score(paths: list[Path]) -> dict:
    """{setting: {task: {protocol: {"folds", "seed_mean", "ensemble", "seeds"}}}} (:func:`setting`):
    scikit-learn UA per fold, the mean over seeds, and the UA of the seed ensemble (mean of the
    seeds' probabilities)."""
    import gzip

    from sklearn.metrics import balanced_accuracy_score

    out: dict = {}
    groups: dict = {}  # (variant, task, fold) -> runs (seeds), over all files
    for path in paths:
        data = json.loads(gzip.decompress(Path(path).read_bytes()))
        for r in data["results"]:
            seeds = groups.setdefault((setting(data["variant"], r), r["task"], r["fold"]), [])
            if r["seed"] not in {x["seed"] for x in seeds}:
                seeds.append(r)
    for (variant, task, fold), rs in sorted(groups.items()):
        y = np.array(rs[0]["labels"])
        for proto in rs[0]["logits"]:
            logits = [np.asarray(r["logits"][proto], np.float32) for r in rs]
            per_seed = [balanced_accuracy_score(y, lg.argmax(1)) for lg in logits]
            probs = np.mean([_softmax(lg) for lg in logits], axis=0)
            cell = out.setdefault(variant, {}).setdefault(task, {}).setdefault(
                proto, {"folds": [], "seed_mean": [], "ensemble": [], "seeds": []})
            cell["folds"].append(fold)
            cell["seed_mean"].append(float(np.mean(per_seed)))
            cell["ensemble"].append(float(balanced_accuracy_score(y, probs.argmax(1))))
            cell["seeds"].append(len(rs))
    return out


def probe(pack_path: Path, tasks: list[str] | None = None) -> dict:
    """The linear probe of the issue on the pack's folds: per-layer utterance means, layers concatenated
    → StandardScaler → logistic regression (C by validation UA, refit on train + validation).
    {task: {"folds": [...], "ua": [...]}} (scikit-learn UA)."""
    from sklearn.metrics import balanced_accuracy_score

    from physioser.experiments.common import fit_logistic

    with np.load(pack_path, allow_pickle=False) as z:
        mean, meta = z["mean"].astype(np.float64), json.loads(str(z["meta"]))
    x = mean.reshape(len(mean), -1)
    out = {}
    for name in tasks or list(meta["tasks"]):
        task = meta["tasks"][name]
        labels = np.array([_label(r["canonical"], task["classes"]) if _in_classes(r["canonical"], task["classes"]) else -1
                           for r in meta["rows"]])
        cell = out.setdefault(name, {"folds": [], "ua": []})
        for fold in task["folds"]:
            (_, te), = fold["test"].items()
            tr, va = np.array(fold["train"]), np.array(fold["val"], dtype=np.int64)
            model, _ = fit_logistic(x[tr], labels[tr], x[va] if len(va) else None, labels[va] if len(va) else None)
            cell["folds"].append(fold["fold"])
            cell["ua"].append(float(balanced_accuracy_score(labels[te], model.predict(x[te]))))
    return out


def _in_classes(canonical: str, classes: list[str]) -> bool:
    try:
        _label(canonical, classes)
    except ValueError:
        return False
    return True


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


CORPUS_ORDER = ("RAVDESS", "EMOVO", "URDU", "KoreanEmotionTTS", "ASED")


def _paired(a: dict, b: dict) -> tuple[float, float, int, int]:
    """Per-fold differences a − b over the folds both have: (mean, std, folds a is ahead, folds)."""
    fa, fb = dict(zip(a["folds"], a["seed_mean"])), dict(zip(b["folds"], b["seed_mean"]))
    common = sorted(set(fa) & set(fb))
    d = np.array([fa[f] - fb[f] for f in common])
    return float(d.mean()), float(d.std()), int((d > 0).sum()), len(common)


def _cell(c: dict | None) -> str:
    if not c:
        return "—"
    return f"{np.mean(c['seed_mean']):.3f} ± {np.std(c['seed_mean']):.3f}"


def tables(scores: dict, probe_ua: dict, recipe: str, baseline: str) -> list[str]:
    """Markdown tables: strict UA by variant and corpus with the probe, paired per-fold differences,
    the adapted protocols of ``recipe`` and leave-one-corpus-out."""
    probe = _probe_cells(probe_ua)
    variants = [v for v in scores if scores[v]]  # a variant run only leaving corpora out has no row here
    lines = ["| model | " + " | ".join(CORPUS_ORDER) + " |", "|---" * (len(CORPUS_ORDER) + 1) + "|"]
    lines.append("| linear probe (layer means → LR, C by val UA) | " + " | ".join(_cell(probe.get(c)) for c in CORPUS_ORDER) + " |")
    for v in variants:
        row = []
        for c in CORPUS_ORDER:
            cell = scores[v].get(c, {}).get("0")
            lo, hi = (min(cell["seeds"]), max(cell["seeds"])) if cell else (0, 0)
            seeds = f", {lo}{'' if lo == hi else f'–{hi}'} seed{'s' if hi > 1 else ''}, {len(cell['folds'])} folds" if cell else ""
            row.append(_cell(cell) + (f" ({seeds[2:]})" if cell else ""))
        lines.append(f"| {v} | " + " | ".join(row) + " |")
    lines += ["", f"Paired per-fold differences of `{recipe}` (mean over seeds per fold; mean ± std over folds, folds ahead / folds):", "",
              "| against | " + " | ".join(CORPUS_ORDER) + " |", "|---" * (len(CORPUS_ORDER) + 1) + "|"]
    for name, other in [("linear probe", probe), *[(v, {c: scores[v][c]["0"] for c in scores[v] if "0" in scores[v][c]})
                                                     for v in variants if v != recipe]]:
        row = []
        for c in CORPUS_ORDER:
            mine = scores[recipe].get(c, {}).get("0")
            theirs = other.get(c)
            if not mine or not theirs:
                row.append("—")
                continue
            m, s, ahead, n = _paired(mine, theirs)
            row.append(f"{m:+.3f} ± {s:.3f} ({ahead}/{n})")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def adapted_table(cells: dict, protocols: list[tuple[str, str]]) -> list[str]:
    """Adapted UA by protocol (rows) and corpus, with the paired difference to the strict protocol."""
    lines = ["| protocol | " + " | ".join(CORPUS_ORDER) + " |", "|---" * (len(CORPUS_ORDER) + 1) + "|"]
    for label, key in protocols:
        row = []
        for c in CORPUS_ORDER:
            cell = cells.get(c, {}).get(key)
            if not cell:
                row.append("—")
                continue
            text = f"{np.mean(cell['seed_mean']):.3f}"
            if key != "0":
                m, _, ahead, n = _paired(cell, cells[c]["0"])
                text += f" ({m:+.3f}, {ahead}/{n} folds up, worst fold {min(np.subtract(cell['seed_mean'], cells[c]['0']['seed_mean'])):+.3f})"
            row.append(text)
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def _pm(cell: dict | None) -> str:
    return "—" if not cell else f"{np.mean(cell['seed_mean']):.3f} ± {np.std(cell['seed_mean']):.3f}"


def _folds_seeds(cell: dict | None) -> str:
    if not cell:
        return "—"
    lo, hi = min(cell["seeds"]), max(cell["seeds"])
    return f"{len(cell['folds'])} × {lo}{'' if lo == hi else f'–{hi}'}"


def _diff(a: dict | None, b: dict | None) -> str:
    """Paired per-fold difference a − b: mean ± std over folds (folds a is ahead / folds, worst fold)."""
    if not a or not b:
        return "—"
    fa, fb = dict(zip(a["folds"], a["seed_mean"])), dict(zip(b["folds"], b["seed_mean"]))
    d = np.array([fa[f] - fb[f] for f in sorted(set(fa) & set(fb))])
    return f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > 0).sum())}/{len(d)}, worst {d.min():+.3f})"


RULE_NAMES = {  # the rules of physioser.model.adaptation.RULES, as the report names them
    "balanced": "mixed by balance × prediction entropy (the adaptation)", "compensated": "compensated speaker mean",
              "entropy": "mixed by prediction entropy alone (balance 1)", "plain": "plain speaker mean"}


def rules_section(scores: dict, recipe: str = "stats-mlp-reg-fixed") -> list[str]:
    """Markdown: the adaptation rules (:data:`physioser.model.adaptation.RULES`) of ``recipe`` by k with
    paired differences to strict and to the compensated rule, whisper-base against whisper-tiny.en, and
    leave one corpus out — from runs that store ``k@tau/rule`` protocols (one to a few seeds per fold)."""
    base = next((v for v in scores if v.startswith(recipe + " · whisper-base") and any(not t.startswith("to-") for t in scores[v])), None)
    tiny = scores.get(recipe, {})
    ks = ("5", "10", "20", "all")
    cols = "| " + " | ".join(CORPUS_ORDER) + " |"
    sep = "|---" * (len(CORPUS_ORDER) + 1) + "|"
    lines = ["## Adaptation rules and whisper-base, re-run on a 2-core CPU", "",
             f"`{recipe}` (= `configs/recipe.yaml`) retrained on the same folds (folds and seeds per fold as the first "
             "row of the first table says; ASED on the first of its 25 folds only) and tested under every "
             "offset rule of `physioser.model.adaptation.RULES`, all with τ = 1, on the same model: `balanced` = the "
             "adaptation (`physioser.runtime.adaptation`: the plain and the emotion-compensated speaker means mixed with "
             "weight = the training speakers' emotion balance × the normalised entropy of the speaker's mean prediction), "
             "`compensated` = the previous rule, `entropy` = the weight from the predictions alone, `plain` = the plain "
             "speaker mean. Cells: UA mean ± std over folds; Δ: paired per-fold difference, mean ± std over folds (folds "
             "ahead / folds, worst fold). Per-fold scores: `eval/results/recipe/rules.json`.", "",
             "Commands: `python -m physioser.experiments.recipe pack --out P.npz --corpora-root ../shared/corpora [-b "
             "whisper-base -c RAVDESS -c EMOVO -c URDU -c KoreanEmotionTTS]`; `OMP_NUM_THREADS=1 RECIPE_DEVICE=cpu python -m "
             "physioser.experiments.recipe run --pack P.npz --out R --variant stats-mlp-reg-fixed --task T [--folds F] "
             "--seeds S --workers 2`; `python -m physioser.experiments.recipe report --probe eval/results/recipe/probe.json "
             "--out eval/results/RECIPE.md --scores eval/results/recipe/scores.json --rule-runs R/*.json.gz --rule-scores "
             "eval/results/recipe/rules.json`.", "",
             "### UA by rule and k (whisper-tiny.en, intra-corpus)", "", "| protocol " + cols, sep,
             "| folds × seeds | " + " | ".join(_folds_seeds(tiny.get(c, {}).get("0")) for c in CORPUS_ORDER) + " |",
             "| strict (k = 0) | " + " | ".join(_pm(tiny.get(c, {}).get("0")) for c in CORPUS_ORDER) + " |"]
    for rule in RULE_NAMES:
        for k in ks if rule in ("balanced", "compensated") else ("10", "all"):
            key = f"{k}@1/{rule}"
            lines.append(f"| {RULE_NAMES[rule]}, k = {k} | " + " | ".join(
                _pm(tiny.get(c, {}).get(key)) for c in CORPUS_ORDER) + " |")
    lines += ["", "Paired per-fold differences of the adaptation (`balanced`):", "", "| against " + cols, sep]
    for other, label in (("0", "strict"), *[(f"{{k}}@1/{r}", RULE_NAMES[r]) for r in ("compensated", "plain")]):
        for k in ks:
            theirs = other.format(k=k)
            lines.append(f"| {label}, k = {k} | " + " | ".join(
                _diff(tiny.get(c, {}).get(f"{k}@1/balanced"), tiny.get(c, {}).get(theirs)) for c in CORPUS_ORDER) + " |")
    if base:
        four = [c for c in CORPUS_ORDER if c in scores[base]]
        cols4 = "| " + " | ".join(four) + " |"
        sep4 = "|---" * (len(four) + 1) + "|"
        lines += ["", "### whisper-base against whisper-tiny.en (the recipe on each; intra-corpus, same folds)", "",
                  "| | " + " | ".join(four) + " |", sep4]
        for key, label in (("0", "strict"), ("10@1/balanced", "adapted k = 10"), ("all@1/balanced", "adapted k = all")):
            lines.append(f"| whisper-tiny.en, {label} | " + " | ".join(_pm(tiny.get(c, {}).get(key)) for c in four) + " |")
            lines.append(f"| whisper-base, {label} | " + " | ".join(_pm(scores[base][c].get(key)) for c in four) + " |")
            lines.append(f"| Δ base − tiny.en, {label} | " + " | ".join(
                _diff(scores[base][c].get(key), tiny.get(c, {}).get(key)) for c in four) + " |")
    loco = [(v, name) for v, name in ((recipe, "whisper-tiny.en, five corpora"), (recipe + " · 4 corpora", "whisper-tiny.en, four corpora"),
                                      (recipe + " · whisper-base", "whisper-base, five corpora"),
                                      (recipe + " · whisper-base · 4 corpora", "whisper-base, four corpora")) if v in scores]
    lines += ["", "### Leave one corpus out (four classes; train on the other corpora of the set, test on every utterance "
              "of the held-out one)", "", "| model, protocol " + cols + " mean |", sep + "---|"]
    for v, name in loco:
        cells = {t[3:]: c for t, c in scores.get(v, {}).items() if t.startswith("to-")}
        if not cells:
            continue
        for key, label in (("0", "strict"), ("10@1/balanced", "adapted k = 10"), ("10@1/compensated", "compensated k = 10")):
            vals = [np.mean(cells[c][key]["seed_mean"]) if c in cells and key in cells[c] else None for c in CORPUS_ORDER]
            got = [v_ for v_ in vals if v_ is not None]
            lines.append(f"| {name}, {label} | " + " | ".join("—" if v_ is None else f"{v_:.3f}" for v_ in vals)
                         + f" | {np.mean(got):.3f} |")
    return lines


def _probe_cells(probe_ua: dict) -> dict:
    """:func:`probe`'s {task: {"folds", "ua"}} as score cells (one "seed" per fold)."""
    return {t: {"folds": v["folds"], "seed_mean": v["ua"], "seeds": [1] * len(v["ua"])} for t, v in probe_ua.items()}


def _on(cell: dict | None, folds: list) -> dict | None:
    """``cell`` restricted to ``folds`` (None where it has none of them)."""
    if not cell:
        return None
    keep = [i for i, f in enumerate(cell["folds"]) if f in set(folds)]
    return {k: [cell[k][i] for i in keep] for k in ("folds", "seed_mean", "seeds")} if keep else None


OTHERS_VARIANTS = {"stats-mlp-reg-15ep": "+ other corpora", "stats-mlp-reg-15ep-adapt": "+ other corpora, offsets in training"}
"""The variants trained on ``<corpus>+others`` tasks and their row labels in :func:`others_section`."""


def others_section(intra: dict, rules: dict, others: dict, probe_ua: dict, recipe: str = "stats-mlp-reg-fixed") -> list[str]:
    """Markdown: the :data:`OTHERS_VARIANTS` trained on a corpus's training speakers plus every utterance
    of the other corpora in its class set (tasks ``<corpus>+others``, same test speakers) against
    ``recipe`` trained on the corpus alone, strict and adapted, on the folds both have (per-fold
    differences paired)."""
    mine = {v: {t[: -len(WITH_OTHERS)]: c for t, c in others.get(v, {}).items() if t.endswith(WITH_OTHERS)}
            for v in OTHERS_VARIANTS if v in others}
    first = next(iter(mine.values()), {})
    cols = "| " + " | ".join(CORPUS_ORDER) + " |"
    sep = "|---" * (len(CORPUS_ORDER) + 1) + "|"

    def row(label: str, cells) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    def folds(c: str) -> list:
        return first.get(c, {}).get("0", {}).get("folds", [])

    probe = _probe_cells(probe_ua)
    lines = ["## Training on the other corpora too", "",
             f"`stats-mlp-reg-15ep` = `{recipe}` (the recipe) for 15 epochs, trained on a corpus's training speakers plus "
             "every utterance of the other four corpora whose emotion is in the corpus's class set (task `<corpus>+others` "
             "of the pack: the same folds and test speakers as the corpus alone; 3,170-4,814 training utterances instead of "
             "160-1,186, so 15 epochs are about the optimiser steps of 60 epochs on one corpus)"
             + ("; `stats-mlp-reg-15ep-adapt` = the same trained with speaker offsets on half the rows (`adapt.train_prob=0.5`), "
                "so that the adapted test features are what it was trained on" if "stats-mlp-reg-15ep-adapt" in mine else "")
             + ". Against the recipe on the corpus alone (strict: "
             "`eval/results/recipe/scores.json`; adapted, the adaptation `balanced` with k unlabelled utterances of each "
             "test speaker: `eval/results/recipe/rules.json`) on the folds both have. Cells: UA mean ± std over those folds; Δ: paired per-fold difference, mean ± std "
             "(folds ahead / folds, worst fold). Per-fold scores: `eval/results/recipe/others.json`.", "",
             "Commands: `OMP_NUM_THREADS=1 RECIPE_DEVICE=cpu python -m physioser.experiments.recipe run --pack pack.npz "
             "--out others/V --variant V --task <corpus>+others [--folds F] --seeds 2 --workers 1` (ASED `--folds "
             "0,6,7,9,12,18,22,24`; 2-core CPU, 25-45 s a training); `python -m physioser.experiments.recipe report --probe eval/results/recipe/probe.json --out "
             "eval/results/RECIPE.md --scores eval/results/recipe/scores.json --rule-scores eval/results/recipe/rules.json "
             "--others-runs others/*/*.json.gz --others-scores eval/results/recipe/others.json`.", "",
             "| model, protocol " + cols, sep,
             row("folds × seeds (+ other corpora)", [_folds_seeds(first.get(c, {}).get("0")) for c in CORPUS_ORDER])]
    for key, label, base in (("0", "strict", intra), ("10@1/balanced", "adapted k = 10", rules),
                             ("all@1/balanced", "adapted k = all", rules)):
        alone = [_on(base.get(recipe, {}).get(c, {}).get(key), folds(c)) for c in CORPUS_ORDER]
        lines.append(row(f"one corpus, {label}", [_pm(a) for a in alone]))
        for v, cells in mine.items():
            more = [cells.get(c, {}).get(key) for c in CORPUS_ORDER]
            lines += [row(f"{OTHERS_VARIANTS[v]}, {label}", [_pm(m) for m in more]),
                      row(f"Δ {OTHERS_VARIANTS[v]}, {label}", [_diff(m, a) for m, a in zip(more, alone)])]
    for v, cells in mine.items():
        lines.append(row(f"Δ {OTHERS_VARIANTS[v]}, strict, against the linear probe",
                         [_diff(cells.get(c, {}).get("0"), probe.get(c)) for c in CORPUS_ORDER]))
    return lines


REFERENCE_MODELS = (("stats-mlp-reg-fixed", "one corpus", "{}"), ("stats-mlp-reg-15ep", "+ other corpora", "{}" + WITH_OTHERS),
                    ("stats-mlp-reg-fixed", "corpus left out", "to-{}"),
                    ("stats-mlp-reg-fixed · whisper-base", "whisper-base, one corpus", "{}"),
                    ("stats-mlp-reg-15ep · whisper-base", "whisper-base, + other corpora", "{}" + WITH_OTHERS),
                    ("stats-mlp-reg-fixed · whisper-base", "whisper-base, corpus left out", "to-{}"))
"""The models of :func:`reference_section` (setting, label, task of a corpus): the recipe on a corpus alone,
trained with the other corpora, and trained on the other corpora only (leave one corpus out), on
whisper-tiny.en and whisper-base; models with no scores are left out."""


def reference_section(scores: dict) -> list[str]:
    """Markdown: the ``referenced`` offset rule against the model's ``balanced`` one and strict, on the
    same models (runs that store ``k@1/referenced``), for each of :data:`REFERENCE_MODELS` (per-fold
    differences paired)."""
    cols = "| " + " | ".join(CORPUS_ORDER) + " |"
    sep = "|---" * (len(CORPUS_ORDER) + 1) + "|"
    lines = ["## Offsets measured against similar training speakers", "",
             "A speaker's offset is the plain and the emotion-compensated speaker means mixed by the training speakers' emotion "
             "balance × the entropy of the speaker's mean prediction (`balanced`, the adaptation above). In a model trained on "
             "several corpora both means are measured from the origin of the whole training set, so they also remove the "
             "language and recording set-up, and one balance stands for every corpus. `referenced` (`physioser.runtime."
             "adaptation.SpeakerReference`) measures both means against the mean of the 5 training speakers nearest to the "
             "speaker (Euclidean, standardised statistics; their means from the model's own evidence on the training rows) "
             "and mixes them by those speakers' emotion balance (training labels only), by which it also scales the offset: "
             "speakers like those, each heard in few emotions, are adapted little. Same models, same k random utterances "
             "of each test speaker, τ = 1; `stats-mlp-reg-fixed` on the corpus alone, `stats-mlp-reg-15ep` with the other "
             "corpora (see above), `stats-mlp-reg-fixed` on the other four corpora only (four classes; leave one corpus out, "
             "one fold, so no spread); whisper-tiny.en unless named; folds and seeds as each model's first row says. Cells: UA mean ± std over folds "
             "(mean over seeds per fold); Δ: paired per-fold difference (folds ahead / folds, worst fold). Per-fold scores: "
             "`eval/results/recipe/reference.json`.", "",
             "Commands: `OMP_NUM_THREADS=1 RECIPE_DEVICE=cpu python -m physioser.experiments.recipe run --pack pack.npz --out "
             "ref/V --variant V --task T --seeds 2 --workers 2` with V = `stats-mlp-reg-fixed` and T = the corpus, V = "
             "`stats-mlp-reg-15ep` and T = `<corpus>+others` (ASED `--folds 0,6,7,9,12,18,22,24`), V = `stats-mlp-reg-fixed` and "
             "T = `to-<corpus>`; whisper-base: the first on RAVDESS, EMOVO and URDU and the last with `--pack base.npz` (`recipe "
             "pack --out base.npz -b whisper-base --corpora-root ../shared/corpora`; 2-core CPU); `python -m "
             "physioser.experiments.recipe report ... --reference-runs ref/*/*.json.gz --reference-scores "
             "eval/results/recipe/reference.json`.", "", "| model, protocol " + cols, sep]
    for variant, label, task in REFERENCE_MODELS:
        cells = {c: scores.get(variant, {}).get(task.format(c), {}) for c in CORPUS_ORDER}
        if not any(cells.values()):
            continue
        lines.append(f"| {label}, folds × seeds | " + " | ".join(_folds_seeds(cells[c].get("0")) for c in CORPUS_ORDER) + " |")
        for key, name in (("0", "strict"), ("10@1/balanced", "balanced, k = 10"), ("10@1/referenced", "referenced, k = 10"),
                          ("all@1/balanced", "balanced, k = all"), ("all@1/referenced", "referenced, k = all")):
            lines.append(f"| {label}, {name} | " + " | ".join(_pm(cells[c].get(key)) for c in CORPUS_ORDER) + " |")
        for a, b, name in (("10@1/balanced", "0", "balanced − strict, k = 10"), ("10@1/referenced", "0", "referenced − strict, k = 10"),
                           ("10@1/referenced", "10@1/balanced", "referenced − balanced, k = 10"),
                           ("all@1/referenced", "all@1/balanced", "referenced − balanced, k = all")):
            lines.append(f"| Δ {label}, {name} | " + " | ".join(_diff(cells[c].get(a), cells[c].get(b)) for c in CORPUS_ORDER) + " |")
    return lines


def finetune_section(scores: dict, recipe_scores: dict, probe_ua: dict) -> list[str]:
    """Markdown: strict UA of the fine-tuning variants (:mod:`physioser.experiments.finetune`) by corpus
    beside the recipe and the probe, and their paired per-fold differences to ``ft-frozen`` (same code
    and input) and to the probe."""
    strict = {v: {c: cells[c]["0"] for c in CORPUS_ORDER if "0" in cells.get(c, {})} for v, cells in scores.items()}
    probe = _probe_cells(probe_ua)
    recipe = {c: recipe_scores[c]["0"] for c in CORPUS_ORDER if c in recipe_scores}
    def backbone(v: str) -> str:  # the suffix setting() gives another backbone's runs ("" for whisper-tiny.en)
        return v.partition(" · ")[2]

    def control(v: str) -> str:  # the frozen encoder of the same backbone
        return " · ".join(filter(None, ("ft-frozen", backbone(v))))

    names = sorted(strict, key=lambda v: (backbone(v), v != control(v), v.replace("all", "~")))  # per backbone: the control first
    head = "| model | " + " | ".join(CORPUS_ORDER) + " |"
    rule = "|---" * (len(CORPUS_ORDER) + 1) + "|"
    ref = strict.get("ft-frozen", {})

    def on_folds(cell: dict | None, corpus: str) -> dict | None:  # a reference cell on the folds ft-frozen ran
        return _on(cell, ref[corpus]["folds"]) if corpus in ref else None

    lines = ["## Fine-tuning the encoder's top blocks", "",
             "`stats-mlp-reg-fixed` (the recipe's head, config and schedule) on whisper-tiny.en run from eight-bit log-mel "
             "(`physioser.experiments.finetune`): `ft-frozen` = no encoder block learns (the paired control: the same code "
             "and input as the others), `ft-top1` / `ft-top2` = the top one / two blocks and the final layer norm learn, "
             "`ft-all` = every block learns, at 0.03 × the head's learning rate (weight decay as the head). Folds of "
             "`physioser eval` as above; cells: strict UA mean ± std over folds (mean over seeds per fold); the probe and the "
             "recipe on the same folds; (folds × seeds). `· whisper-base`: the same on whisper-base (`pack --backbone "
             "whisper-base`), paired with its own `ft-frozen`. Per-fold scores: `eval/results/recipe/finetune.json`.", "",
             "Commands (one H200 GPU, 15-16 worker processes; a pack per carried transfer): `python -m "
             "physioser.experiments.finetune pack --out A.npz --corpora-root ../shared/corpora -c RAVDESS` (and `-c EMOVO "
             "-c URDU`, `-c KoreanEmotionTTS`, `-c ASED`; CPU, seconds); `OMP_NUM_THREADS=1 RECIPE_DEVICE=cuda python -m "
             "physioser.experiments.finetune run --pack A.npz --out R --variant ft-frozen --variant ft-top2 --task RAVDESS "
             "--seeds 3 --workers 15` (Korean `--folds 0,6,12,18,24`; ASED `--folds 0,6,7,9,12,18,22,24 --seeds 1`); "
             "`python -m physioser.experiments.recipe report ... --finetune-runs R/*.json.gz --finetune-scores "
             "eval/results/recipe/finetune.json`.", "",
             head, rule, "| linear probe | " + " | ".join(_pm(on_folds(probe.get(c), c)) for c in CORPUS_ORDER) + " |",
             "| `stats-mlp-reg-fixed` (the recipe, cached statistics) | " + " | ".join(_pm(on_folds(recipe.get(c), c)) for c in CORPUS_ORDER) + " |"]
    lines += [f"| {v} | " + " | ".join(_pm(cell) + f" ({_folds_seeds(cell)})" if (cell := strict[v].get(c)) else "—"
                                       for c in CORPUS_ORDER) + " |" for v in names]
    lines += ["", "Paired per-fold differences (mean ± std over folds, folds ahead / folds, worst fold):", "", head, rule,
              "| ft-frozen − the recipe (reproduction) | " + " | ".join(_diff(ref.get(c), recipe.get(c)) for c in CORPUS_ORDER) + " |"]
    lines += [f"| {v} − {control(v)} | " + " | ".join(_diff(strict[v].get(c), strict.get(control(v), {}).get(c)) for c in CORPUS_ORDER) + " |"
              for v in names if v != control(v)]
    lines += [f"| {v} − linear probe | " + " | ".join(_diff(strict[v].get(c), probe.get(c)) for c in CORPUS_ORDER) + " |"
              for v in ("ft-frozen", "ft-top2") if v in strict]
    return lines


ENSEMBLE_PROTOCOLS = {"0": "strict", "10@1/balanced": "adapted k = 10"}


def backbone_ensemble(runs_a: list[Path], runs_b: list[Path]) -> dict:
    """Two models against one, for two backbones' runs of one variant on the same folds (seeds 0 and 1 of
    each): {name: {task: {protocol: {"folds", "seed_mean"}}}} with names ``a``, ``b`` (one model, mean
    over the two seeds), ``a×2``, ``b×2`` (the two seeds' mean probabilities) and ``a+b`` (one seed of
    each, mean over the two such pairs); scikit-learn UA per fold."""
    import gzip

    from sklearn.metrics import balanced_accuracy_score

    def load(paths: list[Path]) -> dict:
        runs: dict = {}
        for path in paths:
            for r in json.loads(gzip.decompress(Path(path).read_bytes()))["results"]:
                runs.setdefault((r["task"], r["fold"]), {})[r["seed"]] = r
        return runs

    a, b = load(runs_a), load(runs_b)
    out: dict = {}
    for key in sorted(set(a) & set(b)):
        if not {0, 1} <= set(a[key]) & set(b[key]):
            continue
        y = np.array(a[key][0]["labels"])
        if any(r["labels"] != a[key][0]["labels"] for r in (*a[key].values(), *b[key].values())):
            raise ValueError(f"{key}: the two backbones' runs test different rows")
        for proto in ENSEMBLE_PROTOCOLS:
            p = {(name, s): _softmax(np.asarray(runs[key][s]["logits"][proto], np.float32)) for name, runs in (("a", a), ("b", b)) for s in (0, 1)}
            ua = lambda *models: balanced_accuracy_score(y, np.mean([p[m] for m in models], axis=0).argmax(1))  # noqa: E731
            for name, value in (("a", np.mean([ua(("a", 0)), ua(("a", 1))])), ("b", np.mean([ua(("b", 0)), ua(("b", 1))])),
                                ("a×2", ua(("a", 0), ("a", 1))), ("b×2", ua(("b", 0), ("b", 1))),
                                ("a+b", np.mean([ua(("a", 0), ("b", 0)), ua(("a", 1), ("b", 1))]))):
                cell = out.setdefault(name, {}).setdefault(key[0], {}).setdefault(proto, {"folds": [], "seed_mean": [], "seeds": []})
                cell["folds"].append(key[1])
                cell["seed_mean"].append(float(value))
                cell["seeds"].append(2)
    return out


def ensemble_section(cells: dict, probe_ua: dict, names: tuple[str, str] = ("whisper-tiny.en", "whisper-base")) -> list[str]:
    """Markdown of :func:`backbone_ensemble`'s cells: UA per model and protocol, paired differences."""
    corpora = [c for c in CORPUS_ORDER if c in cells.get("a+b", {})]
    label = {"a": f"{names[0]}, one model", "b": f"{names[1]}, one model", "a×2": f"{names[0]}, two seeds",
             "b×2": f"{names[1]}, two seeds", "a+b": f"{names[0]} + {names[1]}"}
    probe = _probe_cells(probe_ua)
    lines = ["## Two backbones together", "",
             f"The recipe (`stats-mlp-reg-fixed`) trained on each backbone's cached statistics, seeds 0 and 1, on the folds of "
             f"{', '.join(corpora)} (all folds; Korean: the 5 diagonal cells of its grid; ASED: the 8 folds of the tables above; "
             f"2-core CPU). An ensemble averages two models' probabilities: two seeds of one backbone, or one "
             f"seed of each backbone (the mean over the two such pairs), so that every ensemble has two models. Cells: UA mean ± std "
             f"over folds; Δ: paired per-fold differences (folds ahead / folds, worst fold). Per-fold scores: "
             f"`eval/results/recipe/ensemble.json`.", "",
             "Commands: `python -m physioser.experiments.recipe pack --out base.npz -b whisper-base --corpora-root "
             "../shared/corpora`; `OMP_NUM_THREADS=1 RECIPE_DEVICE=cpu python -m physioser.experiments.recipe run --pack base.npz "
             "--out E/base --variant stats-mlp-reg-fixed --task RAVDESS --task EMOVO --task URDU --seeds 2 --workers 2`, the same "
             "with `--task KoreanEmotionTTS --folds 0,6,12,18,24` and `--task ASED --folds 0,6,7,9,12,18,22,24` (and `--pack "
             "pack.npz --out E/tiny` for whisper-tiny.en; leave one corpus out: `--task to-RAVDESS ... --task to-ASED`); `python -m "
             "physioser.experiments.recipe report ... --ensemble-runs E/tiny*/*.json.gz --ensemble-with E/base*/*.json.gz "
             "--ensemble-scores eval/results/recipe/ensemble.json`.", "",
             "| model, protocol | " + " | ".join(corpora) + " |", "|---" * (len(corpora) + 1) + "|"]
    for proto, protocol in ENSEMBLE_PROTOCOLS.items():
        lines += [f"| {label[n]}, {protocol} | " + " | ".join(_pm(cells[n][c].get(proto)) for c in corpora) + " |" for n in label]
    for proto, protocol in ENSEMBLE_PROTOCOLS.items():
        for other in ("a×2", "b×2"):
            lines.append(f"| Δ {label['a+b']} − {label[other]}, {protocol} | "
                         + " | ".join(_diff(cells["a+b"][c].get(proto), cells[other][c].get(proto)) for c in corpora) + " |")
    lines.append(f"| Δ {label['a+b']} − linear probe ({names[0]}), strict | "
                 + " | ".join(_diff(cells["a+b"][c].get("0"), probe.get(c)) for c in corpora) + " |")
    held_out = [c for c in CORPUS_ORDER if f"to-{c}" in cells.get("a+b", {})]
    if held_out:
        lines += ["", "Leave one corpus out (tasks `to-<corpus>` with `--seeds 2`; UA of the held-out corpus; Δ: mean ± std over "
                  "the held-out corpora, corpora ahead):", "",
                  "| model, protocol | " + " | ".join(held_out) + " | mean | Δ tiny.en + base − this |",
                  "|---" * (len(held_out) + 3) + "|"]
        for proto, protocol in ENSEMBLE_PROTOCOLS.items():
            pair = np.array([cells["a+b"][f"to-{c}"][proto]["seed_mean"][0] for c in held_out])
            for n in ("a×2", "b×2", "a+b"):
                ua = np.array([cells[n][f"to-{c}"][proto]["seed_mean"][0] for c in held_out])
                d = pair - ua
                delta = f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > 0).sum())}/{len(d)})" if n != "a+b" else ""
                lines.append(f"| {label[n]}, {protocol} | " + " | ".join(f"{v:.3f}" for v in ua) + f" | {ua.mean():.3f} | {delta} |")
    return lines


def _scores(runs: list[Path], scores_json: Path) -> dict:
    """The scores stored in ``scores_json``, each (variant, task) that ``runs`` score replaced or added, written back."""
    scores = json.loads(Path(scores_json).read_text()) if Path(scores_json).is_file() else {}
    if not runs:
        return scores
    for variant, tasks in score(runs).items():
        scores.setdefault(variant, {}).update(tasks)
    scores_json.parent.mkdir(parents=True, exist_ok=True)
    scores_json.write_text(json.dumps(scores, indent=0))
    return scores


KOREAN_LABELS = (
    "KoreanEmotionTTS's angry and sad clips were swapped by the project's reader until the fix described in "
    "`docs/corpora.md` (it followed the corpus README, which the recordings contradict). A model trained on Korean alone "
    "is unaffected, the two classes only trading names, so the intra-corpus tables stand. Every model trained on Korean "
    "together with other corpora learnt Korean anger as sadness: the leave-one-corpus-out rows and the tables of training "
    "with the other corpora below are rerun with the corrected labels; rows not rerun since (left out of training: "
    "`stats-mlp-reg-es`, `fusion-means-es`, `stats-mlp-reg-fixed-adapt` and the four-corpus sets; with the other corpora: "
    "whisper-base and `stats-mlp-reg-15ep-adapt`) were withdrawn and are in the project's history only.")
"""The note on the Korean label fix at the head of the report."""


def write_report(runs: list[Path], probe_json: Path, out: Path, scores_json: Path, rule_runs: list[Path] = (),
                 rule_scores_json: Path | None = None, others_runs: list[Path] = (), others_scores_json: Path | None = None,
                 finetune_runs: list[Path] = (), finetune_scores_json: Path | None = None, ensemble_runs: list[Path] = (),
                 ensemble_with: list[Path] = (), ensemble_scores_json: Path | None = None, reference_runs: list[Path] = (),
                 reference_scores_json: Path | None = None) -> Path:
    """Score ``runs`` (run's ``.json.gz`` files) into the per-fold scores of ``scores_json`` (a (variant, task)
    they cover replaces the stored one) and write the tables to ``out`` (markdown). ``rule_runs`` /
    ``rule_scores_json`` the same for the section on adaptation rules and backbones (:func:`rules_section`),
    ``others_runs`` / ``others_scores_json`` for the section on training with the other corpora
    (:func:`others_section`, which needs ``rule_scores_json`` for its adapted baseline), ``finetune_runs`` /
    ``finetune_scores_json`` for fine-tuning the encoder (:func:`finetune_section`), ``ensemble_runs`` (whisper-tiny.en)
    with ``ensemble_with`` (whisper-base) / ``ensemble_scores_json`` for the two backbones together (:func:`ensemble_section`),
    ``reference_runs`` / ``reference_scores_json`` for offsets measured against similar training speakers (:func:`reference_section`)."""
    scores = _scores(runs, scores_json)
    probe_ua = json.loads(Path(probe_json).read_text())
    recipe = "stats-mlp-reg-fixed"
    intra = {v: {t: c for t, c in tasks.items() if not t.startswith("to-")} for v, tasks in scores.items()}
    lines = ["# Training recipe and speaker adaptation", "",
             f"Written by `python -m physioser.experiments.recipe report` from the runs' test logits (per-fold UA by "
             f"scikit-learn in `eval/results/recipe/scores.json`). Every model is a `PhysioSER` with the whisper-tiny.en "
             f"backbone branch, trained by `physioser.train.fit` on the folds of `physioser eval` (intra-corpus: each corpus's "
             f"own classes; Korean and ASED speaker- and sentence-disjoint) from per-layer frame statistics packed from the "
             f"feature cache. UA per fold = mean over seeds; a cell = mean ± std over folds. Variants (overrides of "
             f"`physioser/model/config.py`, `VARIANTS` in `physioser/experiments/recipe.py`): `means-linear` = the previous "
             f"backbone-only recipe (segment means, per-layer projections, linear head, early stopping); `stats-linear` = + "
             f"frame standard deviations (statistics pooling); `{recipe}` = statistics pooling + MLP head, dropout 0.3 on the "
             f"head and 0.2 on the input statistics, mixup 0.4, fixed 60-epoch schedule on training + validation speakers "
             f"(= `configs/recipe.yaml`); `-adapt` = the same trained with speaker offsets on half the rows; `-mix8` / `-drop5` / "
             f"`-lr3` / `-120ep` = the recipe with mixup 0.8 / dropout 0.5 on the head and 0.3 on the input statistics / "
             f"learning rate 3e-3 / 120 epochs.", "",
             "Commands: `python -m physioser.experiments.recipe pack --out pack.npz --corpora-root ../shared/corpora` (CPU); "
             "`python -m physioser.experiments.recipe run --pack pack.npz --out runs --variant V --task T --seeds S --workers 16` "
             "(on the 16 CPU cores of an H200 GPU machine, RECIPE_DEVICE=cpu; seeds and folds as the tables say; Korean with "
             "one seed on this project's 2-core CPU); `python -m physioser.experiments.recipe probe --pack pack.npz --out "
             "probe.json`; `python -m physioser.experiments.recipe report runs/*.json.gz --probe probe.json --out "
             "eval/results/RECIPE.md --scores eval/results/recipe/scores.json` (with no runs given, the tables come from the "
             "scores stored there).", "",
             KOREAN_LABELS, "",
             "## Strict protocol (k = 0): UA by variant and corpus", ""]
    lines += tables(intra, {t: v for t, v in probe_ua.items() if not t.startswith("to-")}, recipe, "means-linear")
    for v in (recipe, "stats-mlp-reg-fixed-adapt"):
        lines += ["", f"## Adapted protocols of `{v}` (k unlabelled utterances of each test speaker; compensated speaker "
                  f"mean unless named)", ""]
        protos = [("strict (k = 0)", "0")] + [(f"k = {k}, τ = 1", f"{k}@1") for k in (5, 10, 20, "all")]
        protos += [("k = 10, τ = 4", "10@4"), ("k = 10, τ = 16", "10@16"),
                   ("k = 10, τ = 1, plain speaker mean (no emotion compensation)", "10@1/plain"),
                   ("k = all, τ = 1, plain speaker mean", "all@1/plain")]
        lines += adapted_table(intra.get(v, {}), protos)
    lines += ["", "## Leave one corpus out (four classes; train on the other four corpora, test on every utterance of the fifth)", "",
              "`means-mlp-reg-fixed` = the recipe without the frames' standard deviations; `stats-mlp-reg-15ep` = the recipe "
              "for 15 epochs; `stats-mlp-reg-fixed-corpus` (`-corpus-mean`) = the recipe on statistics standardised "
              "(centred) per corpus by the mean and standard deviation of all of that corpus's utterances, held-out corpus included, "
              "no label read (`CORPUS_STANDARDISED`): adapted to the new corpus, not strict. Δ: per held-out corpus (UA averaged over seeds) against the recipe, strict; "
              "mean ± std over the corpora both cover. Commands: `OMP_NUM_THREADS=1 RECIPE_DEVICE=cpu python -m "
              "physioser.experiments.recipe run --pack pack.npz --out R --variant V --task to-RAVDESS --task to-EMOVO --task "
              "to-URDU --task to-KoreanEmotionTTS --task to-ASED --seeds 3 --workers 1` (2-core CPU; whisper-base: `--pack "
              "base.npz --seeds 2`, the pack of `recipe pack --out base.npz -b whisper-base --corpora-root ../shared/corpora`); "
              "`recipe report R/*.json.gz ...` adds their scores to the stored ones. The adapted rows adapt each held-out "
              "speaker from 10 of their utterances against the 5 nearest training speakers (`referenced`, below).", ""]
    header = "| model | " + " | ".join(CORPUS_ORDER) + f" | mean | Δ vs `{recipe}`, strict (held-out corpora ahead) |"
    lines += [header, "|---" * (len(CORPUS_ORDER) + 3) + "|"]
    rows = [("linear probe", {c: {"seed_mean": probe_ua[f"to-{c}"]["ua"]} for c in CORPUS_ORDER if f"to-{c}" in probe_ua})]
    for v in scores:
        variant = v.split(" · ")[0]  # the setting less its backbone and corpus count
        first = "each corpus standardised on its own utterances" if CORPUS_STANDARDISED.get(variant) else (
            "each corpus centred on its own utterances" if variant in CORPUS_STANDARDISED else "strict")
        for key, label in (("0", first), ("10@1/referenced", "adapted k = 10 against the training speakers")):
            cells = {t[3:]: c[key] for t, c in scores[v].items() if t.startswith("to-") and key in c}
            if cells:
                rows.append((f"{v}, {label}", cells))
    reference = dict(rows).get(f"{recipe}, strict", {})
    for label, cells in rows:
        vals = [np.mean(cells[c]["seed_mean"]) if c in cells else None for c in CORPUS_ORDER]
        seeds = max(max(cells[c].get("seeds", [0])) for c in cells)
        mean = f"{np.mean(vals):.3f}" if all(v is not None for v in vals) else "—"
        label += f" ({seeds} seed{'s' if seeds > 1 else ''})" if seeds else ""
        both = [c for c in CORPUS_ORDER if c in cells and c in reference]
        d = np.array([np.mean(cells[c]["seed_mean"]) - np.mean(reference[c]["seed_mean"]) for c in both])
        delta = f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > 0).sum())}/{len(d)})" if len(d) and cells is not reference else ""
        lines.append(f"| {label} | " + " | ".join("—" if v is None else f"{v:.3f}" for v in vals) + f" | {mean} | {delta} |")
    if rule_scores_json is not None:
        rules = _scores(list(rule_runs), rule_scores_json)
        lines += ["", *rules_section(rules)]
        if others_scores_json is not None:
            intra_probe = {t: v for t, v in probe_ua.items() if not t.startswith("to-")}
            lines += ["", *others_section(scores, rules, _scores(list(others_runs), others_scores_json), intra_probe, recipe)]
    if ensemble_scores_json is not None:
        if ensemble_runs:
            ensemble_scores_json.write_text(json.dumps(backbone_ensemble(list(ensemble_runs), list(ensemble_with)), indent=0))
        lines += ["", *ensemble_section(json.loads(ensemble_scores_json.read_text()), probe_ua)]
    if finetune_scores_json is not None:
        lines += ["", *finetune_section(_scores(list(finetune_runs), finetune_scores_json), scores[recipe], probe_ua)]
    if reference_scores_json is not None:
        lines += ["", *reference_section(_scores(list(reference_runs), reference_scores_json))]
    out.write_text("\n".join(lines) + "\n")
    return out


def pack_parser(sub) -> object:
    """The ``pack`` subcommand's parser: --out, --corpora-root, -c (default: every corpus), -b."""
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--corpora-root", type=Path, required=True)
    p.add_argument("-c", "--corpus", action="append", default=None)
    p.add_argument("-b", "--backbone", default="whisper-tiny.en")
    return p


def pack_and_run_parsers(ap, variants) -> object:
    """The ``pack`` and ``run`` subcommands (shared with :mod:`physioser.experiments.finetune`); returns
    the subparsers for more."""
    sub = ap.add_subparsers(dest="cmd", required=True)
    pack_parser(sub)
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--variant", action="append", required=True, choices=sorted(variants))
    r.add_argument("--task", action="append", required=True, help="corpus (intra) or to-<corpus> (leave one out)")
    r.add_argument("--folds", default=None, help="comma-separated fold ids (default: all)")
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--first-seed", type=int, default=0, help="seeds first-seed ... first-seed + seeds - 1 (adding seeds to a run)")
    r.add_argument("--workers", type=int, default=8)
    return sub


def run_selection(args) -> tuple[list[int] | None, list[int]]:
    """(folds or None = all, seeds) of parsed ``run`` arguments."""
    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    return folds, list(range(args.first_seed, args.first_seed + args.seeds))


def main(argv: list[str] | None = None) -> None:
    """``python -m physioser.experiments.recipe pack|run|probe|report`` (see the module doc)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m physioser.experiments.recipe", description=__doc__.splitlines()[0])
    sub = pack_and_run_parsers(ap, VARIANTS)
    q = sub.add_parser("probe")
    q.add_argument("--pack", type=Path, required=True)
    q.add_argument("--out", type=Path, required=True)
    w = sub.add_parser("report")
    w.add_argument("runs", type=Path, nargs="*")
    w.add_argument("--probe", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--scores", type=Path, required=True)
    w.add_argument("--rule-runs", type=Path, nargs="*", default=[])
    w.add_argument("--rule-scores", type=Path, default=None)
    w.add_argument("--others-runs", type=Path, nargs="*", default=[])
    w.add_argument("--others-scores", type=Path, default=None)
    w.add_argument("--finetune-runs", type=Path, nargs="*", default=[])
    w.add_argument("--finetune-scores", type=Path, default=None)
    w.add_argument("--ensemble-runs", type=Path, nargs="*", default=[], help="whisper-tiny.en runs, seeds 0 and 1")
    w.add_argument("--ensemble-with", type=Path, nargs="*", default=[], help="whisper-base runs of the same folds and seeds")
    w.add_argument("--ensemble-scores", type=Path, default=None)
    w.add_argument("--reference-runs", type=Path, nargs="*", default=[])
    w.add_argument("--reference-scores", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        print(pack(a.corpus or list(CORPUS_ORDER), a.out, a.corpora_root, a.backbone))
    elif a.cmd == "run":
        folds, seeds = run_selection(a)
        print(run(a.pack, [(v, VARIANTS[v], t, folds, seeds) for v in a.variant for t in a.task], a.out, workers=a.workers))
    elif a.cmd == "probe":
        a.out.write_text(json.dumps(probe(a.pack)))
    else:
        print(write_report(a.runs, a.probe, a.out, a.scores, a.rule_runs, a.rule_scores, a.others_runs, a.others_scores,
                           a.finetune_runs, a.finetune_scores, a.ensemble_runs, a.ensemble_with, a.ensemble_scores,
                           a.reference_runs, a.reference_scores))


if __name__ == "__main__":
    main()
