"""Does the VAP branch earn its place? Variants of the VAP-only model and of the fused model, trained on
packed cached features, with drop-one-component attribution on every test fold.

Three steps, so the training can run on a machine without the corpora (a GPU machine that receives
at most a few tens of MB per call)::

    python -m physioser.experiments.physiology pack OUT_DIR -c RAVDESS ...   # here, from the caches
    python -m physioser.experiments.physiology run PACK_DIR... --out RESULTS.jsonl -e vap-only -e ...
    python -m physioser.experiments.physiology run PACK_DIR... --leave-one-out --out RESULTS.jsonl -e physioser ...
    python -m physioser.experiments.physiology tables RESULTS.jsonl ...      # markdown tables

``pack`` writes one ``<corpus>.npz`` per corpus: the cached VAP quartets (utterance-normalised, so
stored as int8 at 0.1 std resolution: quantisation noise ~0.03 std), the cached whisper-tiny.en
layer means per utterance (float16; with ``model.segments = 0`` the model reads nothing else of the
backbone), labels, speakers and the fold plan of ``physioser eval`` (same folds, same validation
speakers). ``run`` trains each (variant, corpus, fold, seed) job with :func:`physioser.train.fit` in
a pool of processes and appends one JSON line per job: test UA, the learning curve (running training
UA and validation UA per epoch) and the test UA with each quartet component (and all four) replaced
by its utterance mean (zero after the utterance normalisation): the attribution of that component.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

LOCO = "to-"  # job corpus "to-<corpus>": leave that corpus out of training and test on it
SCALE = 10.0  # int8 quartet = round(10 x normalised value), clipped at +-12.7 std
COMPONENTS = ("M", "rho", "f_inst", "tau_g")


@dataclass(frozen=True)
class Variant:
    name: str
    config: str  # configs/<config>.yaml
    overrides: tuple[str, ...] = ()
    band_norm: bool = False  # re-normalise the quartet per component and band (= normalize: utterance_band)
    note: str = ""


_STRONG = ("train.lr=3e-3", "train.weight_decay=0.05", "train.epochs=60", "train.patience=15")
_RECIPE = ("train.lr=3e-3", "train.weight_decay=0.05", "train.epochs=60", "train.early_stopping=false", "model.head=mlp",
           "model.dropout=0.3", "train.mixup=0.4")
VARIANTS = {v.name: v for v in [
    Variant("vap-only", "vap_only", (), note="VAP encoder as shipped (small: 2-D [16,16], 1-D [64], dim 64), linear head"),
    Variant("vap-only-stats", "vap_only", ("model.vap.input_stats=true",), note="+ the quartet's mean/std per band beside the pooled features"),
    Variant("vap-only-meanstd", "vap_only", ("model.vap.pooling_type=mean_std",), note="mean+std pooling instead of attentive"),
    Variant("vap-only-band", "vap_only", (), band_norm=True, note="per-band utterance normalisation"),
    Variant("vap-only-schedule", "vap_only", _STRONG, note="lr 3e-3, weight decay 0.05, 60 epochs, patience 15"),
    Variant("vap-only-wide", "vap_only", ("model.vap={n_bands: 32, channels_2d: [32, 64], channels_1d: [128, 128], "
                                          "kernels_1d: [5, 3], dilations_1d: [1, 2], dim: 128}",),
            note="wider and deeper: 2-D [32,64], 1-D [128,128] k 5,3 dil 1,2 (receptive field 9 -> 17 frames)"),
    Variant("vap-only-nocrop", "vap_only", ("train.vap_crop_seconds=0",), note="no random 2 s crops in training"),
    Variant("vap-only-stats-schedule", "vap_only", ("model.vap.input_stats=true", *_STRONG), note="input stats + schedule"),
    Variant("vap-only-best", "vap_only", ("model.vap={n_bands: 32, channels_2d: [32, 64], channels_1d: [128, 128], kernels_1d: [5, 3], "
                                          "dilations_1d: [1, 2], dim: 128, input_stats: true}", *_STRONG),
            note="wide + input stats + schedule"),
    Variant("vap-only-recipe", "vap_only", ("model.vap={n_bands: 32, channels_2d: [32, 64], channels_1d: [128, 128], kernels_1d: [5, 3], "
                                            "dilations_1d: [1, 2], dim: 128, input_stats: true}", *_RECIPE),
            note="vap-only-best with the backbone recipe's regularisation: MLP head, dropout 0.3, mixup 0.4, fixed 60 epochs"),
    Variant("vap-only-stats-recipe", "vap_only", ("model.vap.input_stats=true", *_RECIPE),
            note="shipped encoder + input stats with the backbone recipe's regularisation"),
    Variant("vap-only-stats-recipe-cw", "vap_only", ("model.vap.input_stats=true", *_RECIPE, "train.class_weighting=true"),
            note="vap-only-stats-recipe + class-weighted loss"),
    Variant("vap-only-stats-recipe-long", "vap_only", ("model.vap.input_stats=true", *_RECIPE, "train.epochs=120"),
            note="vap-only-stats-recipe for 120 epochs"),
    Variant("vap-only-stats-recipe-drop", "vap_only", ("model.vap.input_stats=true", *_RECIPE, "model.dropout=0.5",
                                                       "model.vap.dropout=0.3"),
            note="vap-only-stats-recipe with dropout 0.5 on the head and 0.3 in the encoder"),
    Variant("no-branch", "physioser", ("model.branches=[backbone]", "cpa.weight=0"),
            note="the PhysioSER model without the VAP branch (same fusion head, whisper-tiny.en)"),
    Variant("physioser", "physioser", (), note="PhysioSER as shipped (VAP + whisper-tiny.en + CPA 0.1 + MHA fusion)"),
    Variant("physioser-bd", "physioser", ("model.branch_dropout=0.3",), note="+ branch dropout 0.3"),
    Variant("physioser-aux", "physioser", ("train.vap_aux_weight=0.5",), note="+ auxiliary VAP-only loss 0.5"),
    Variant("physioser-bd-aux", "physioser", ("model.branch_dropout=0.3", "train.vap_aux_weight=0.5"),
            note="+ branch dropout 0.3 + auxiliary loss 0.5"),
    Variant("physioser-gated", "physioser", ("model.late_fusion=gated", "train.vap_aux_weight=0.5"),
            note="gated late fusion of VAP logits (+ auxiliary loss 0.5)"),
    Variant("physioser-stats-bd-aux", "physioser", ("model.vap.input_stats=true", "model.branch_dropout=0.3",
                                                    "train.vap_aux_weight=0.5"), note="input stats + branch dropout + aux"),
    Variant("physioser-cpa0", "physioser", ("cpa.weight=0",), note="CPA off"),
]}


# -- pack (here, from the caches) ---------------------------------------------------------------
def pack(out_dir: Path, corpora: list[str], corpora_root: Path, only: dict[str, list[int]] | None = None,
         backbone: str = "whisper-tiny.en") -> None:
    """``only``: {corpus: fold ids} to keep (e.g. Korean's 5 diagonal cells of its 5 x 5 grid)."""
    from physioser.data.folds import fold_plan
    from physioser.features import load_corpora
    from physioser.model.config import load_config

    out_dir.mkdir(parents=True, exist_ok=True)
    for corpus in corpora:
        cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "physioser.yaml", [f"backbone.name={backbone}"])
        cfg, data, spans = load_corpora(cfg, [corpus], corpora_root, progress=False)
        lengths = np.array([q.shape[-1] for q in data.quartets])
        flat = np.concatenate([q.float().numpy() for q in data.quartets], axis=-1)
        w = data.backbone_counts / data.backbone_counts.sum(1, keepdim=True).clamp(min=1.0)
        means = (data.backbone_segments * w[:, None, :, None]).sum(2)  # [N, L, D] utterance means per layer
        plan = [p for p in fold_plan(data, spans, [corpus], seed=0) if not only or corpus not in only or p[0] in only[corpus]]
        folds = {f"fold{k}_{part}": idx for k, tr, va, te in plan for part, idx in (("train", tr), ("val", va), ("test", te[corpus]))}
        np.savez_compressed(
            out_dir / f"{corpus}.npz",
            quartets=np.clip(np.round(flat * SCALE), -127, 127).astype(np.int8), lengths=lengths,
            backbone=means.numpy().astype(np.float16), backbone_name=np.array(backbone), labels=data.labels,
            speakers=np.array([r.speaker for r in data.rows]), class_names=np.array(data.class_names),
            folds=np.array([k for k, *_ in plan]), **folds,
        )
        print(f"{corpus}: {len(data)} utterances, {flat.shape[-1]} frames, {len(plan)} folds", flush=True)


# -- run (anywhere with torch) ----------------------------------------------------------------
_PACKS: dict = {}


def _pack_file(pack_dirs: tuple[str, ...], corpus: str) -> Path:
    """``<corpus>.npz`` of the first of ``pack_dirs`` that holds it."""
    for folder in pack_dirs:
        if (Path(folder) / f"{corpus}.npz").is_file():
            return Path(folder) / f"{corpus}.npz"
    raise FileNotFoundError(f"no {corpus}.npz in {', '.join(pack_dirs)}")


def _load(pack_dirs: tuple[str, ...], corpus: str) -> dict:
    key = (pack_dirs, corpus)
    if key not in _PACKS:
        import torch

        with np.load(_pack_file(pack_dirs, corpus)) as z:
            d = {k: z[k] for k in z.files}
        flat = torch.from_numpy(d["quartets"].astype(np.float32) / SCALE)
        offsets = np.concatenate([[0], np.cumsum(d["lengths"])])
        d["quartet_list"] = [flat[..., offsets[i] : offsets[i + 1]] for i in range(len(d["lengths"]))]
        _PACKS[key] = d
    return _PACKS[key]


def _packed_corpora(pack_dirs: tuple[str, ...]) -> list[str]:
    return sorted({npz.stem for p in pack_dirs for npz in Path(p).glob("*.npz")})


def _leave_one_out(pack_dirs: tuple[str, ...], test: str) -> dict:
    """A pack-like dict for leave-one-corpus-out: the four classes, fold 0 = training on every other packed
    corpus (15 % of each corpus's speakers for validation, as ``physioser eval``), test = all of ``test``."""
    from types import SimpleNamespace

    from physioser.data.folds import speaker_split
    from physioser.data.labels import FOUR_CLASSES, to_four_class

    corpora = _packed_corpora(pack_dirs)
    if test not in corpora or len(corpora) < 2:
        raise ValueError(f"leave-one-corpus-out on {test} needs its pack and another corpus's; packed: {', '.join(corpora)}")
    quartets, backbone, labels, rows, held_out = [], [], [], [], []
    for corpus in corpora:
        d = _load(pack_dirs, corpus)
        four = np.array([FOUR_CLASSES.index(f) if (f := to_four_class(str(n))) else -1 for n in d["class_names"]])
        keep = np.flatnonzero(four[d["labels"]] >= 0)
        held_out += [corpus == test] * len(keep)
        quartets += [d["quartet_list"][i] for i in keep]
        backbone.append(d["backbone"][keep])
        labels.append(four[d["labels"][keep]])
        rows += [SimpleNamespace(corpus=corpus, speaker=str(d["speakers"][i])) for i in keep]
    held_out = np.array(held_out)
    train, val = speaker_split(rows, np.flatnonzero(~held_out), 0.15, seed=0)
    return {"quartet_list": quartets, "backbone": np.concatenate(backbone), "labels": np.concatenate(labels),
            "class_names": np.array(FOUR_CLASSES), "backbone_name": _load(pack_dirs, test)["backbone_name"],
            "training_corpora": [c for c in corpora if c != test],
            "fold0_train": train, "fold0_val": val, "fold0_test": np.flatnonzero(held_out)}


def _band_normalised(quartets):
    out = []
    for q in quartets:
        mean, std = q.mean(-1, keepdim=True), q.std(-1, keepdim=True, unbiased=False)
        out.append((q - mean) / (std + 1e-5))
    return out


def run_job(pack_dirs: tuple[str, ...], variant: str, corpus: str, fold: int, seed: int, device: str) -> dict:
    """One training; ``corpus`` = ``to-<corpus>`` trains on the other packed corpora and tests on that one."""
    import torch

    from physioser.features import FeatureSet
    from physioser.model.config import load_config
    from physioser.model.metrics import classification_metrics
    from physioser.train import fit, new_model, predict

    torch.set_num_threads(1)
    v = VARIANTS[variant]
    loco = corpus.startswith(LOCO)
    d = _leave_one_out(pack_dirs, corpus.removeprefix(LOCO)) if loco else _load(pack_dirs, corpus)
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / f"{v.config}.yaml", [*v.overrides, f"train.seed={seed}", f"train.device={device}"])
    class_names = [str(c) for c in d["class_names"]]
    backbone = torch.from_numpy(d["backbone"].astype(np.float32))
    corpora = d["training_corpora"] if loco else [corpus]
    cfg = replace(cfg, class_names=class_names, corpora=corpora).with_backbone_shape(backbone.shape[1], backbone.shape[2])
    rows = [None] * len(d["labels"])
    data = FeatureSet(rows=rows, labels=d["labels"], class_names=class_names)
    if cfg.model.uses("backbone"):
        data.backbone_segments = backbone[:, :, None, :]
        data.backbone_counts = torch.ones(len(rows), 1)
    if cfg.model.uses("vap"):
        data.quartets = _band_normalised(d["quartet_list"]) if v.band_norm else d["quartet_list"]
    tr, va, te = (d[f"fold{fold}_{p}"] for p in ("train", "val", "test"))
    if not cfg.train.early_stopping:  # a fixed schedule: the validation rows join the training rows (as physioser eval)
        tr, va = np.concatenate([tr, va]), None
    started = time.time()
    model = new_model(cfg, data, tr)
    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "physiology-runs" / f"{variant}-{corpus}-{fold}-{seed}"
    result = fit(model, data, tr, va, cfg, out_dir, progress=False)
    labels = data.labels[te]
    ua = lambda ds: classification_metrics(labels, predict(model, ds, te)["logits"].argmax(1), class_names)["ua"]  # noqa: E731
    record = {"variant": variant, "backbone": str(d.get("backbone_name", "whisper-tiny.en")), "corpus": corpus, "fold": int(fold), "seed": int(seed), "ua": ua(data),
              "best_epoch": result.best_epoch, "epochs": result.epochs_run, "seconds": round(time.time() - started, 1),
              "curve": [{"epoch": h["epoch"], "train_ua": round(h["train_ua"], 4), "val_ua": round(h.get("val_ua", -1), 4)}
                        for h in result.history]}
    if data.quartets is not None:
        drops = {name: [c] for c, name in enumerate(COMPONENTS)} | {"all": [0, 1, 2, 3]}
        record["without"] = {}
        for name, channels in drops.items():
            quartets = list(data.quartets)
            for i in te:
                q = quartets[i].clone()
                q[channels] = 0.0
                quartets[i] = q
            record["without"][name] = ua(replace(data, quartets=quartets))
        if getattr(model, "late_fusion", "none") == "gated":
            record["gate_mean"] = float(np.mean(predict_gates(model, data, te)))
    return record


def predict_gates(model, data, indices) -> np.ndarray:
    import torch

    from physioser.train import _to_device

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.forward_cached(_to_device(data.collate(indices[s : s + 64]), device))["gate"].cpu()
                          for s in range(0, len(indices), 64)]).numpy()


def _worker(args: tuple) -> dict:
    try:
        return run_job(*args)
    except Exception as error:  # one failed job must not lose the others' results
        return {"variant": args[1], "corpus": args[2], "fold": args[3], "seed": args[4], "error": repr(error)}


def run(pack_dirs: list[Path], variants: list[str], seeds: list[int], out: Path, workers: int, device: str, deadline_s: float,
        leave_one_out: bool = False) -> None:
    """Every (variant, seed, corpus, fold) job over the packs, or with ``leave_one_out`` one job per
    (variant, seed, held-out corpus)."""
    import multiprocessing as mp

    dirs = tuple(str(p) for p in pack_dirs)
    jobs = []
    for variant in variants:
        for seed in seeds if not variant.startswith("vap-only") else seeds[:1]:
            for corpus in _packed_corpora(dirs):
                if leave_one_out:
                    jobs.append((dirs, variant, LOCO + corpus, 0, seed, device))
                    continue
                with np.load(_pack_file(dirs, corpus)) as z:
                    folds = z["folds"].tolist()
                jobs += [(dirs, variant, corpus, k, seed, device) for k in folds]
    started = time.time()
    done = 0
    with mp.get_context("spawn").Pool(workers) as pool, open(out, "a") as sink:
        for record in pool.imap_unordered(_worker, jobs):
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            done += 1
            if time.time() - started > deadline_s:
                print(f"deadline: {done}/{len(jobs)} jobs written", flush=True)
                pool.terminate()
                break
    print(f"{done}/{len(jobs)} jobs in {time.time() - started:.0f} s", flush=True)


# -- tables (here) ----------------------------------------------------------------------------
CORPUS_ORDER = ("RAVDESS", "EMOVO", "URDU", "KoreanEmotionTTS")


def _load_records(paths: list[Path]) -> list[dict]:
    records = [r for p in paths for r in map(json.loads, p.read_text().splitlines()) if "error" not in r]
    for r in records:
        r.setdefault("backbone", "whisper-tiny.en")  # the first runs' packs did not name it
    return records


def _per_fold(records: list[dict], variant: str, key=lambda r: r["ua"], unit: str = "fold") -> dict[tuple[str, int], float]:
    """{(corpus, fold): value averaged over seeds} of one variant; ``unit="seed"``: {(corpus, seed): value
    averaged over folds} (leave-one-corpus-out has one fold per corpus, so its spread is over seeds)."""
    acc: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r["variant"] == variant:
            acc.setdefault((r["corpus"], r[unit]), []).append(key(r))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def reference_folds(run: str, results_dir: Path, subset: str | None = None) -> dict[tuple[str, int], float]:
    """Per-fold UA of a committed LR run (``handcrafted``, ``probe-<backbone>``; ``quartet-probe`` with ``subset="full"``)."""
    out = {}
    for corpus in CORPUS_ORDER:
        path = results_dir / f"{run}-{corpus}" / "results.json"
        if path.is_file():
            d = json.loads(path.read_text())
            d = d["subsets"][subset] if subset else d
            out.update({(corpus, int(f["fold"])): float(f["ua"]) for f in d["corpora"][corpus]["folds"]})
    return out


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "—"


def _paired(a: dict, b: dict) -> str:
    keys = sorted(set(a) & set(b))
    if not keys:
        return "—"
    d = np.array([a[k] - b[k] for k in keys])
    return f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > 0).sum())}/{len(d)} better)"


def ua_table(rows: list[tuple[str, dict]], reference: tuple[str, dict] | None = None, corpora: tuple[str, ...] = CORPUS_ORDER) -> list[str]:
    """Markdown: UA mean ± std over folds per corpus, mean over corpora, and (with ``reference``) the
    paired per-fold difference to it on the folds both cover."""
    head = ["model", *corpora, "mean over corpora"] + ([f"paired Δ vs {reference[0]}"] if reference else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, folds in rows:
        per = [[v for (c, _), v in folds.items() if c == corpus] for corpus in corpora]
        cells = [f"{_cell(v)} ({len(v)})" if v else "—" for v in per]
        mean = np.mean([np.mean(v) for v in per if v]) if any(per) else float("nan")
        line = [name, *cells, f"{mean:.3f}"] + ([_paired(folds, reference[1])] if reference else [])
        lines.append("| " + " | ".join(line) + " |")
    return lines


def attribution_table(records: list[dict], variants: list[str], corpora: tuple[str, ...] = CORPUS_ORDER) -> list[str]:
    """Drop-one-component attribution: UA(full) - UA(component replaced by its utterance mean), mean ±
    std over (fold, seed) runs; * where the mean exceeds twice its standard error."""
    head = ["model", "corpus", "runs", *COMPONENTS, "all four"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in variants:
        for corpus in (*corpora, "all"):
            rs = [r for r in records if r["variant"] == variant and "without" in r and corpus in ("all", r["corpus"])]
            if not rs:
                continue
            cells = []
            for name in (*COMPONENTS, "all"):
                d = np.array([r["ua"] - r["without"][name] for r in rs])
                mark = "*" if d.mean() > 2 * d.std(ddof=1) / np.sqrt(len(d)) else ""
                cells.append(f"{d.mean():+.3f} ± {d.std():.3f}{mark}")
            lines.append("| " + " | ".join([variant, corpus, str(len(rs)), *cells]) + " |")
    return lines


def curve_table(records: list[dict], variants: list[str]) -> list[str]:
    """Learning curves in brief: running training UA and validation UA at the best epoch and at the last
    one, test UA, epochs run (means over runs)."""
    head = ["model", "runs", "train UA @best", "val UA @best", "train UA @last", "val UA @last", "test UA", "best / last epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in variants:
        rs = [r for r in records if r["variant"] == variant]
        if not rs:
            continue
        best = [next(c for c in r["curve"] if c["epoch"] == r["best_epoch"]) for r in rs]
        last = [r["curve"][-1] for r in rs]
        m = lambda xs, k: f"{np.mean([x[k] for x in xs]):.3f}"  # noqa: E731
        lines.append("| " + " | ".join([variant, str(len(rs)), m(best, "train_ua"), m(best, "val_ua"), m(last, "train_ua"),
                                        m(last, "val_ua"), f"{np.mean([r['ua'] for r in rs]):.3f}",
                                        f"{np.mean([r['best_epoch'] for r in rs]):.1f} / {np.mean([r['epochs'] for r in rs]):.1f}"]) + " |")
    return lines


def tables(paths: list[Path], results_dir: Path) -> str:
    records = _load_records(paths)
    within = [r for r in records if not r["corpus"].startswith(LOCO)]
    left_out = [r for r in records if r["corpus"].startswith(LOCO)]
    out = (_vap_tables(within, results_dir) + _fused_tables(within, CORPUS_ORDER, "fold")) if within else []
    if left_out:
        out += (["", "### Leave one corpus out (four classes; trained on the other packed corpora, tested on every utterance of "
                 "the named one)", ""] if within else []) + _fused_tables(left_out, tuple(LOCO + c for c in CORPUS_ORDER), "seed")
    return "\n".join(out)


def _vap_tables(records: list[dict], results_dir: Path) -> list[str]:
    vap = [v for v in VARIANTS if v.startswith("vap-only") and any(r["variant"] == v for r in records)]
    if not vap:
        return []
    probe = reference_folds("quartet-probe", results_dir, "full")
    hand = reference_folds("handcrafted", results_dir)
    covered = {k for v in vap for k in _per_fold(records, v)}
    out = ["#### VAP-only variants vs the linear baselines (one seed; paired Δ vs the quartet-statistics probe)", ""]
    out += ua_table([("LR on quartet mean/std (probe)", {k: v for k, v in probe.items() if k in covered}),
                     ("LR on MFCC/F0/RMS statistics (handcrafted)", {k: v for k, v in hand.items() if k in covered})]
                    + [(v, _per_fold(records, v)) for v in vap], ("probe", probe))
    return out + ["", "Paired Δ vs handcrafted: " + "; ".join(f"{v} {_paired(_per_fold(records, v), hand)}" for v in vap), ""]


def _fused_tables(records: list[dict], corpora: tuple[str, ...], unit: str) -> list[str]:
    """``unit``: what a cell's spread is over ("fold": per-fold UA averaged over seeds; "seed")."""
    present = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
    fused = [v for v in present if not v.startswith("vap-only")]
    backbones = sorted({r["backbone"] for r in records if r["variant"] in fused})
    spread = "UA per fold averaged over seeds, mean ± std over folds" if unit == "fold" else "UA mean ± std over seeds"
    out = [f"#### Fused models on {', '.join(backbones)} ({spread}; paired Δ vs the same model without the VAP branch)", ""]
    out += ua_table([(v, _per_fold(records, v, unit=unit)) for v in fused], ("no-branch", _per_fold(records, "no-branch", unit=unit)), corpora)
    seeds = sorted({r["seed"] for r in records if r["variant"] == "no-branch"})
    out += ["", f"Per (fold, seed) pairs, seeds {seeds}: " + "; ".join(
        f"{v} {_paired(*(dict(((r['corpus'], r['fold'], r['seed']), r['ua']) for r in records if r['variant'] == x) for x in (v, 'no-branch')))}"
        for v in fused if v != "no-branch"), ""]
    out += ["#### Drop-one-component attribution (test UA lost when a component is replaced by its utterance mean)", ""]
    out += attribution_table(records, [v for v in present if v != "no-branch"], corpora)
    return out + ["", "#### Learning curves in brief", ""] + curve_table(records, present)


def probe_pairs(a: str, b: str, results_dir: Path) -> str:
    """Markdown: two committed linear-probe runs (``probe-<a>-*`` vs ``probe-<b>-*``) per corpus on the
    same folds, the paired per-fold difference b - a, and what the quartet statistics add to each."""
    lines = [f"| corpus | {a} probe | {b} probe | paired Δ {b} − {a} | {a} + quartet | {b} + quartet | Δ quartet on {b} |",
             "|---|---|---|---|---|---|---|"]
    every_a, every_b = {}, {}
    for corpus in CORPUS_ORDER:
        runs = {name: reference_folds(name, results_dir) for name in (f"probe-{a}", f"probe-{b}", f"probe-{a}+quartet", f"probe-{b}+quartet")}
        fa, fb, qa, qb = ({k: v for k, v in r.items() if k[0] == corpus} for r in runs.values())
        if not fa or not fb:
            continue
        every_a.update(fa)
        every_b.update(fb)
        cell = lambda x: _cell(list(x.values())) if x else "—"  # noqa: E731
        lines.append(f"| {corpus} | {cell(fa)} | {cell(fb)} | {_paired(fb, fa)} | {cell(qa)} | {cell(qb)} | "
                     f"{_paired(qb, fb) if qb else '—'} |")
    lines.append(f"| all folds | | | {_paired(every_b, every_a)} | | | |")
    return "\n".join(lines)


def speaker_offsets_removed(x: np.ndarray, speakers: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Unsupervised speaker adaptation at the linear level: each speaker's mean feature vector over ``k``
    of their utterances drawn at random (all when they have fewer) subtracted from all of them. Reads
    no label."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for speaker in np.unique(speakers):
        own = np.flatnonzero(speakers == speaker)
        pick = own if len(own) <= k else rng.choice(own, size=k, replace=False)
        out[own] -= x[pick].mean(0)
    return out


def probe_adapt(backbones: list[str], corpora: list[str], k: int) -> tuple[str, dict]:
    """What the quartet statistics add to a backbone probe under the strict protocol and with speaker
    adaptation (``k`` unlabelled utterances per speaker), paired per fold. Returns (markdown, results)."""
    from physioser.experiments.common import load_labelled_rows, protocol_plan, score_folds
    from physioser.experiments.probe import backbone_means, quartet_stats

    lines = ["| backbone | corpus | probe strict | + quartet strict (paired Δ) | probe adapted | + quartet adapted (paired Δ) |",
             "|---|---|---|---|---|---|"]
    results: dict = {}
    for corpus in corpora:
        rows, labels, class_names, spans = load_labelled_rows([corpus])
        plan = protocol_plan(rows, spans, [corpus])
        speakers = np.array([r.speaker for r in rows])
        q, _ = quartet_stats(rows, class_names, progress=False)
        for backbone in backbones:
            x = backbone_means(rows, class_names, backbone, progress=False)
            feats = {"probe": x, "quartet": np.concatenate([x, q.reshape(len(rows), -1)], axis=1)}
            folds = {}
            for protocol in ("strict", "adapted"):
                for name, f in feats.items():
                    f = speaker_offsets_removed(f, speakers, k) if protocol == "adapted" else f
                    res = score_folds(f, labels, rows, plan, class_names)["corpora"][corpus]["folds"]
                    folds[f"{name}-{protocol}"] = {(corpus, int(r["fold"])): float(r["ua"]) for r in res}
            results[f"{backbone}/{corpus}"] = {key: {str(k2[1]): v for k2, v in d.items()} for key, d in folds.items()}
            cell = lambda key: _cell(list(folds[key].values()))  # noqa: E731
            lines.append(f"| {backbone} | {corpus} | {cell('probe-strict')} | {cell('quartet-strict')} "
                         f"({_paired(folds['quartet-strict'], folds['probe-strict'])}) | {cell('probe-adapted')} | "
                         f"{cell('quartet-adapted')} ({_paired(folds['quartet-adapted'], folds['probe-adapted'])}) |")
            print(lines[-1], flush=True)
    return "\n".join(lines), results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out", type=Path)
    p.add_argument("-c", "--corpus", action="append", required=True)
    p.add_argument("--corpora-root", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "corpora")
    p.add_argument("--folds", action="append", default=[], help="CORPUS=0,6,12: keep only these folds of CORPUS")
    p.add_argument("--backbone", default="whisper-tiny.en", help="backbone whose cached layer means are packed")
    r = sub.add_parser("run")
    r.add_argument("pack", type=Path, nargs="+", help="pack folders (a corpus is read from the first that holds it)")
    r.add_argument("--leave-one-out", action="store_true", help="train on all packed corpora but one, test on that one (four classes)")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("-e", "--variant", action="append", required=True, choices=sorted(VARIANTS))
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--workers", type=int, default=14)
    r.add_argument("--device", default="auto")
    r.add_argument("--deadline-s", type=float, default=1e9)
    t = sub.add_parser("tables")
    t.add_argument("results", type=Path, nargs="+")
    t.add_argument("--baselines", type=Path, default=Path(__file__).resolve().parents[2] / "eval" / "results" / "experiments",
                   help="folder of the committed handcrafted-* and quartet-probe-* results")
    q = sub.add_parser("probe-pairs", help="paired per-fold comparison of two backbones' committed linear probes")
    q.add_argument("a")
    q.add_argument("b")
    q.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[2] / "eval" / "results" / "experiments")
    a = sub.add_parser("probe-adapt", help="quartet gain over backbone probes, strict vs speaker-adapted")
    a.add_argument("-b", "--backbone", action="append", required=True)
    a.add_argument("-c", "--corpus", action="append", default=None)
    a.add_argument("-k", type=int, default=10, help="unlabelled utterances per speaker for its offset")
    a.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "probe-adapt":
        text, results = probe_adapt(args.backbone, args.corpus or list(CORPUS_ORDER), args.k)
        print(text)
        if args.json:
            args.json.write_text(json.dumps({"k": args.k, "folds": results}, indent=1))
    elif args.cmd == "probe-pairs":
        print(probe_pairs(args.a, args.b, args.results))
    elif args.cmd == "tables":
        print(tables(args.results, args.baselines))
    elif args.cmd == "pack":
        only = {c: [int(k) for k in ks.split(",")] for c, ks in (f.split("=", 1) for f in args.folds)}
        pack(args.out, args.corpus, args.corpora_root, only, args.backbone)
    else:
        run(args.pack, args.variant, [int(s) for s in args.seeds.split(",")], args.out, args.workers, args.device, args.deadline_s,
            args.leave_one_out)


if __name__ == "__main__":
    main()
