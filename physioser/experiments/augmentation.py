"""Noise and reverberation augmentation in training: its robust gain beside its clean-speech cost.

The recipe model (``configs/recipe.yaml``: whisper-tiny.en per-layer frame statistics, MLP head) on
the intra-corpus folds of ``physioser eval``, trained twice per fold and seed: on the clean training
clips, and on them plus one augmented copy of each (:class:`physioser.conditions.augment.Augmenter`,
seed 0, epoch 0: speed, a room, babble / fan / the training half of the real noise). Both are tested
on the same test speakers, clean and under the evaluation conditions (those of ``physioser
robustness``, seed 0, keyed by the clip's path under the corpora root), so every comparison is a
paired per-fold difference.

* ``pack``: the recipe pack of the corpora (:func:`physioser.experiments.recipe.pack`: clean
  statistics from the feature cache, the fold plan), plus the statistics of every clip under each
  condition, computed from the conditioned audio and cached per (corpus, condition) in
  ``<cache>/conditions/<backbone spec key>/`` (keyed by the rows' audio digests, the condition and
  its seed: the frame-level feature cache is keyed by file content, so it holds no conditioned audio);
* ``run``: the trainings (``--seeds``), test logits per condition → ``runs.json.gz``;
* ``report``: UA per fold and the paired differences → JSON and a markdown table.

    OMP_NUM_THREADS=1 python -m physioser.experiments.augmentation pack --out /tmp/aug/RAVDESS.npz -c RAVDESS --condition babble:10
    OMP_NUM_THREADS=1 python -m physioser.experiments.augmentation pack --out /tmp/aug/EMOVO.npz -c EMOVO
    OMP_NUM_THREADS=1 python -m physioser.experiments.augmentation run --pack /tmp/aug/RAVDESS.npz --out /tmp/aug/RAVDESS.json.gz
    OMP_NUM_THREADS=1 python -m physioser.experiments.augmentation run --pack /tmp/aug/EMOVO.npz --out /tmp/aug/EMOVO.json.gz
    python -m physioser.experiments.augmentation report /tmp/aug/RAVDESS.json.gz /tmp/aug/EMOVO.json.gz \\
        --out eval/results/robustness/augmentation.json
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from physioser.conditions.statistics import conditioned_statistics

EVAL_CONDITIONS = ("babble:10", "fan:10", "reverb:0.6")
AUGMENTED = "augmented"
"""The pack's name for the augmented training copy."""
RECIPE = "stats-mlp-reg-fixed"
"""The recipe's variant (``configs/recipe.yaml``) in :data:`physioser.experiments.recipe.VARIANTS`."""


def pack(corpora: list[str], out: Path, corpora_root: Path, noise_root: Path, conditions=EVAL_CONDITIONS, seed: int = 0) -> Path:
    """The recipe pack of ``corpora`` with ``mean_<condition>``/``std_<condition>`` arrays beside the
    clean ``mean``/``std`` (same rows, same order) for the augmented copy and each of ``conditions``."""
    from physioser.backbones import build_backbone
    from physioser.conditions.augment import Augmenter
    from physioser.conditions.spec import Condition
    from physioser.data import read_corpus
    from physioser.experiments import recipe

    recipe.pack(corpora, out, corpora_root, seed=seed)
    backbone = build_backbone("whisper-tiny.en")
    rows = [r for name in corpora for r in read_corpus(name, Path(corpora_root) / name)]  # recipe.pack's order
    augmenter = Augmenter(seed=seed, noise_root=noise_root, corpora_root=corpora_root)
    transforms = {AUGMENTED: lambda x, key, corpus: augmenter(x, key, corpus, epoch=0)}
    for spec in conditions:
        cond = Condition(spec, seed=seed, noise_root=noise_root, corpora_root=corpora_root)
        transforms[spec] = lambda x, key, corpus, c=cond: c.apply(x, key, corpus=corpus)
    with np.load(out, allow_pickle=False) as z:
        arrays = dict(z)
    arrays["meta"] = np.array(json.dumps({**json.loads(str(arrays["meta"])), "conditions": list(conditions)}))
    for name, transform in transforms.items():
        t0 = time.perf_counter()
        parts = [conditioned_statistics([r for r in rows if r.corpus == c], corpora_root, name, transform, backbone) for c in corpora]
        arrays[f"mean_{name}"] = np.concatenate([p[0] for p in parts])
        arrays[f"std_{name}"] = np.concatenate([p[1] for p in parts])
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez_compressed(out, **arrays)
    return out


def _job(pack_data: dict, task_name: str, fold_i: int, seed: int, augmented: bool) -> dict:
    """Train the recipe on one fold (clean training rows, plus their augmented copies if
    ``augmented``); test logits on the fold's test rows clean and under every evaluation condition."""
    import torch

    from physioser.experiments.recipe import VARIANTS, _feature_set
    from physioser.model.config import load_config
    from physioser.train import fit, new_model, predict

    torch.set_num_threads(1)
    meta = pack_data["meta"]
    task, n = meta["tasks"][task_name], len(meta["rows"])
    fold = task["folds"][fold_i]
    (_, test), = fold["test"].items()
    blocks = ["clean", AUGMENTED, *meta["conditions"]]  # the stacked pack: block b holds rows b·n … (b+1)·n − 1
    stacked = {"mean": np.concatenate([pack_data["mean"]] + [pack_data[f"mean_{b}"] for b in blocks[1:]]),
               "std": np.concatenate([pack_data["std"]] + [pack_data[f"std_{b}"] for b in blocks[1:]]),
               "meta": {"rows": meta["rows"] * len(blocks)}}
    train = np.array(fold["train"] + fold["val"])  # as the recipe: a fixed schedule on training + validation speakers
    train_rows = np.concatenate([train, train + n]) if augmented else train
    tests = {b: np.array(test) + i * n for i, b in enumerate(blocks) if b != AUGMENTED}
    used = np.concatenate([train_rows, *tests.values()])
    data = _feature_set(stacked, used, task["classes"])
    local = {g: i for i, g in enumerate(used.tolist())}
    cfg = load_config(None, [*VARIANTS[RECIPE], f"train.seed={seed}", "train.device=cpu"])
    cfg = replace(cfg, class_names=task["classes"], corpora=meta["corpora"]).with_backbone_shape(meta["num_layers"], meta["dim"])
    t0 = time.perf_counter()
    tr = np.array([local[g] for g in train_rows.tolist()])
    model = new_model(cfg, data, tr)
    fit(model, data, tr, None, cfg, Path("/tmp"), progress=False, save=False)
    logits = {b: predict(model, data, np.array([local[g] for g in idx.tolist()]))["logits"].astype(np.float16).tolist()
              for b, idx in tests.items()}
    return {"task": task_name, "fold": fold["fold"], "seed": seed, "training": AUGMENTED if augmented else "clean",
            "trained_rows": len(tr), "labels": data.labels[[local[g] for g in tests["clean"].tolist()]].tolist(), "logits": logits,
            "seconds": round(time.perf_counter() - t0, 1)}


def run(pack_path: Path, out: Path, tasks: list[str], seeds: list[int], folds: list[int] | None = None) -> Path:
    """Every (task, fold, seed) trained both ways (``folds``: fold indices, default all), one after
    another; results written after each job."""
    with np.load(pack_path, allow_pickle=False) as z:
        pack_data = {k: z[k] for k in z.files if k != "meta"} | {"meta": json.loads(str(z["meta"]))}
    results = []
    for task in tasks:
        for fold_i in folds if folds is not None else range(len(pack_data["meta"]["tasks"][task]["folds"])):
            for seed in seeds:
                for augmented in (False, True):
                    results.append(_job(pack_data, task, fold_i, seed, augmented))
                    r = results[-1]
                    print(f"{task} fold {r['fold']} seed {seed} {r['training']}: {r['seconds']} s", flush=True)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(gzip.compress(json.dumps(results).encode()))
    return out


def score(results: list[dict]) -> dict:
    """{task: {training: {condition: {"folds", "ua" (mean over seeds per fold)}}}}, over the (fold, seed)
    runs that both trainings completed (the comparison is paired)."""
    from sklearn.metrics import balanced_accuracy_score

    runs: dict = {}
    for r in results:
        runs.setdefault((r["task"], r["fold"], r["seed"]), {})[r["training"]] = r
    per: dict = {}
    for r in (r for pair in runs.values() if len(pair) == 2 for r in pair.values()):
        for cond, logits in r["logits"].items():
            ua = balanced_accuracy_score(r["labels"], np.asarray(logits, np.float32).argmax(1))
            per.setdefault(r["task"], {}).setdefault(r["training"], {}).setdefault(cond, {}).setdefault(r["fold"], []).append(ua)
    return {task: {training: {cond: {"folds": sorted(f), "ua": [float(np.mean(f[k])) for k in sorted(f)]}
                              for cond, f in conds.items()} for training, conds in trainings.items()}
            for task, trainings in per.items()}


def _diff(a: dict, b: dict) -> str:
    d = np.subtract(a["ua"], b["ua"])  # the same folds, in order (score)
    return f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > 0).sum())}/{len(d)})"


def table(scores: dict) -> str:
    """Markdown: per corpus, UA (mean over folds) of each training under each condition, the drop
    from clean, and the paired per-fold difference augmented − clean training ("—": not measured)."""
    conds = ["clean", *dict.fromkeys(c for s in scores.values() for c in s["clean"] if c != "clean")]
    lines = ["| corpus | training | " + " | ".join(conds) + " |", "|---|---|" + "---|" * len(conds)]
    for task, s in scores.items():
        for training in ("clean", AUGMENTED):
            clean = np.mean(s[training]["clean"]["ua"])
            cells = [f"{clean:.3f}"] + [f"{np.mean(s[training][c]['ua']):.3f} ({np.mean(s[training][c]['ua']) - clean:+.3f})"
                                        if c in s[training] else "—" for c in conds[1:]]
            lines.append(f"| {task} | {training} speech | " + " | ".join(cells) + " |")
        lines.append(f"| {task} | augmented − clean, per fold (mean ± std, folds ahead) | "
                     + " | ".join(_diff(s[AUGMENTED][c], s["clean"][c]) if c in s["clean"] else "—" for c in conds) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse

    from physioser.paths import corpora_root, noise_root

    ap = argparse.ArgumentParser(prog="python -m physioser.experiments.augmentation", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("-c", "--corpus", action="append", required=True)
    p.add_argument("--condition", action="append", default=None, help=f"evaluation condition (default: {', '.join(EVAL_CONDITIONS)})")
    p.add_argument("--noise-root", type=Path, default=noise_root(), help="default: $PHYSIOSER_NOISE or ../shared/noise")
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--task", action="append", default=None, help="corpus (default: every corpus of the pack)")
    r.add_argument("--seeds", default="0", help="comma-separated training seeds")
    r.add_argument("--folds", default=None, help="comma-separated fold indices (default: all)")
    w = sub.add_parser("report")
    w.add_argument("runs", type=Path, nargs="+", help="the runs' .json.gz files (e.g. one per task)")
    w.add_argument("--out", type=Path, required=True, help="JSON (a .md table is written beside it)")
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        print(pack(a.corpus, a.out, corpora_root(), a.noise_root, a.condition or EVAL_CONDITIONS))
    elif a.cmd == "run":
        with np.load(a.pack, allow_pickle=False) as z:
            corpora = json.loads(str(z["meta"]))["corpora"]
        print(run(a.pack, a.out, a.task or corpora, [int(x) for x in a.seeds.split(",")],
                  [int(f) for f in a.folds.split(",")] if a.folds else None))
    else:
        results = [r for path in a.runs for r in json.loads(gzip.decompress(path.read_bytes()))]
        scores = score(results)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"seconds": sum(r["seconds"] for r in results), "scores": scores}, indent=1) + "\n")
        a.out.with_suffix(".md").write_text(table(scores))
        print(table(scores))


if __name__ == "__main__":
    main()
