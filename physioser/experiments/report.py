"""Assemble ``eval/results/EXPERIMENTS.md`` from the result files of this package.

``python -m physioser.experiments tables`` — every section names the commands that produced its
numbers and the hardware they ran on; runs that were not made show "—".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from physioser.data.readers import KOREAN_LABELS_FIXED
from physioser.experiments.common import CORPORA, EXPERIMENTS_DIR
from physioser.experiments.tables import SHORT, fold_ids_of, hardware_of, load_run, mean_ua, param_count, table, write_experiments_report

__all__ = ["build_report"]

PY = "OMP_NUM_THREADS=1 .venv/bin/python -m physioser.experiments"
SWEEP = f"{PY} sweep --commit <sha>"


def _korean_note(body: list[str]) -> list[str]:
    """The footnote of rows :func:`~physioser.experiments.tables.table` marked as trained before the Korean label fix."""
    if not any(" † |" in line for line in body):
        return []
    return ["", "† trained before KoreanEmotionTTS's angry and sad were corrected (docs/corpora.md), not rerun since: "
                "Korean's anger was learnt as sadness."]


def _hw(hw: set[str]) -> str:
    return "; ".join(sorted(hw)) if hw else "—"


GPU = EXPERIMENTS_DIR.parent / "experiments-gpu"
"""Runs of the full-coverage sweep on an H200 GPU: the same ``physioser eval`` jobs (train.device=auto)."""
GPU_FOLDS = {"KoreanEmotionTTS": [0, 6, 12, 18, 24]}
"""Korean on the GPU: the 5 diagonal cells of the 5 × 5 speaker × sentence grid (every speaker group and every
sentence group tested once); the other corpora: all folds."""
GPU_SWEEP = (f"`{PY} sweep --workers 14 -c RAVDESS -c EMOVO -c URDU --results-dir eval/results/experiments-gpu -e <experiments>` "
             "plus the same with `-c KoreanEmotionTTS --folds 0,6,12,18,24`, run on the GPU machine")

MAIN = EXPERIMENTS_DIR.parent
"""``physioser eval``'s own runs (eval/results/<run>/, the REPORT runs): PhysioSER and
backbone-only on every fold of the four corpora with the committed configs."""


def _main_folds(root: Path) -> dict[str, list[int] | None]:
    """Per corpus, the folds the VAP-only run of this sweep covered (the first main table compares every
    model on exactly those folds)."""
    return {c: fold_ids_of(load_run(f"vap-only-{c}", root), c) for c in CORPORA}


def _fold_uas(res: dict | None, corpus: str) -> dict[int, float]:
    r = (res or {}).get("corpora", {}).get(corpus)
    return {} if r is None else {int(f["fold"]): f["ua"] for f in r["folds"]}


def _paired_diffs(run: dict | None, ref: dict | None, corpus: str) -> list[float]:
    """Per-fold UA of ``run`` minus ``ref`` on the folds both have (same test speakers)."""
    a, r = _fold_uas(run, corpus), _fold_uas(ref, corpus)
    return [a[k] - r[k] for k in sorted(set(a) & set(r))]


def _paired_cell(diffs: list[float]) -> str:
    if not diffs:
        return "—"
    return f"{np.mean(diffs):+.3f} ± {np.std(diffs):.3f} ({sum(d > 0 for d in diffs)}/{len(diffs)} folds better)"


def _all_folds_of(run: str, corpus: str, root: Path) -> list[int] | None:
    return fold_ids_of(load_run(run, root), corpus)


def _coverage(root: Path) -> tuple[str, str, list[str]]:
    """What ran, where, and what the CPU budget left out."""
    lines = ["| backbone | corpora cached | audio | wall (1 thread) | real time |", "|---|---|---|---|---|"]
    by_backbone: dict[str, list[dict]] = {}
    for f in sorted((root / "extraction").glob("*.json")):
        d = json.loads(f.read_text())
        by_backbone.setdefault(d["backbone"], []).append(d)
    for b, ds in by_backbone.items():
        audio = sum(d["audio_seconds"] for d in ds)
        wall = sum(d["wall_seconds"] for d in ds)
        lines.append(f"| {b} | {', '.join(SHORT.get(d['corpus'], d['corpus']) for d in ds)} | {audio:.0f} s | {wall:.0f} s | {audio / wall:.0f}× |")
    lines += ["", "whisper-tiny.en was cached on the CPU (all four corpora, 9821 s of audio). crepe-tiny "
              "(real-time factor 0.84 on one CPU thread) and pesto (0.45) were extracted on the H200 GPU instead (see above); "
              "their pooled caches came back for the CPU probes.",
              "", "Commands: `physioser features extract --corpus C --root ../shared/corpora/C --backbone {fbank,resemblyzer} "
              "--threads 1 --json ...` (summaries in eval/results/experiments/extraction/)."]
    intro = ("Two kinds of hardware. (1) This project's shared CPU (x86_64, 2 cores, load average ≈ 8 from "
             "other jobs), one torch thread per process: the LR baselines, probes, cross- and multi-corpus "
             "runs, the [R] runs of REPORT.md and a first partial sweep (from a git worktree of one commit, `sweep --commit`). "
             "(2) An H200 GPU machine (one NVIDIA H200, 16 CPU cores): every trained model of the "
             "comparison, backbone sweep, ablation and research tables on all four corpora (all folds; Korean: the 5 "
             "diagonal cells of its 5 × 5 grid), 14 `physioser eval` fold jobs at a time sharing the GPU "
             "(`train.device=auto`); 378 fold runs took 5.5 + 4 + 1.5 min, the research Transformer 4 min. The corpora "
             "(129 MB) and package weights travelled there in transfers of ≤ 64 MiB; all backbone features of the GPU "
             "runs (whisper-tiny.en, fbank, resemblyzer, crepe-tiny, pesto) were extracted there on the GPU "
             "(`physioser features extract --device cuda`, ≤ 31 s per corpus and backbone) and the code was a `git "
             "archive` of the commit named in each results.json. Tables say which hardware produced each number.")
    return ("Coverage, hardware and feature caches", intro, lines)


def build_report(root: Path = EXPERIMENTS_DIR, path: Path | None = None) -> Path:
    path = path or root.parent / "EXPERIMENTS.md"
    sections = [_coverage(root)]
    folds = _main_folds(root)
    main = root.parent
    subset = {c: f for c, f in folds.items() if f is not None and f != _all_folds_of(f"handcrafted-{c}", c, root)}

    rows = [("handcrafted: MFCC+F0+RMS stats → LR", "handcrafted-{corpus}"),
            ("linear probe: whisper layer means → LR", "probe-whisper-tiny.en-{corpus}"),
            ("backbone-only (SUPERB: layer weights → shared proj → mean pool → linear) [R]", "backbone-only-{corpus}", main),
            ("backbone-only, per-layer projectors [R]", "backbone-only-per-layer-{corpus}", main),
            ("backbone-only, MLP head", "backbone-only-mlp-{corpus}"),
            ("VAP-only (quaternion encoder → linear)", "vap-only-{corpus}"),
            ("**PhysioSER** (VAP + whisper + CPA + MHA fusion) [R]", "physioser-{corpus}", main)]
    body, hw = table(rows, folds=folds, root=root, show_folds=list(subset))
    body_all, hw_all = table([r for r in rows if "vap-only" not in r[1]], root=root)
    gpu_rows = [("handcrafted: MFCC+F0+RMS stats → LR (CPU)", "handcrafted-{corpus}", root),
                ("linear probe: whisper layer means → LR (CPU)", "probe-whisper-tiny.en-{corpus}", root),
                ("backbone-only (SUPERB: layer weights → shared proj → mean pool → linear)", "backbone-only-{corpus}", GPU),
                ("VAP-only (quaternion encoder → linear)", "vap-only-{corpus}", GPU),
                ("**PhysioSER** (VAP + whisper + CPA + MHA fusion)", "physioser-{corpus}", GPU)]
    body_gpu, hw_gpu = table(gpu_rows, folds=GPU_FOLDS, root=GPU)
    sub_note = ("" if not subset else
                "On the CPU the trained VAP models could cover only some folds of "
                + ", ".join(f"{SHORT.get(c, c)} ({len(f)} folds: {','.join(map(str, f))})" for c, f in subset.items())
                + "; the first CPU table scores every model on exactly those folds, the second gives the cheap models on all folds.")
    sections.append((
        "Does the physiology help? whisper-tiny.en: PhysioSER vs backbone-only vs VAP-only vs handcrafted",
        "UA mean ± std over the speaker-independent test folds (Korean: pooled UA over all its folds in brackets where all "
        "were run). [R] = the `physioser eval` runs of REPORT.md (eval/results/<run>/, committed configs, "
        "all folds); the other trained rows are this sweep's `physioser eval` runs with the same committed configs and "
        "training recipe; the LR baselines choose C ∈ {0.01, 0.1, 1} on the validation speakers. " + sub_note,
        ["Every model on every corpus (trained rows on the H200 GPU; all folds, Korean: 5 diagonal grid cells; the LR "
         "rows are the CPU runs scored on the same folds):", ""] + body_gpu
        + ["", f"Commands: {GPU_SWEEP}, experiments `-e backbone-only -e vap-only -e physioser`; LR rows as below.",
           f"Hardware: {_hw(hw_gpu)}.", "", "CPU only — every model on the folds the CPU runs of VAP-only covered:", ""]
        + body + ["", "All folds of each corpus (cheap models, CPU):", ""] + body_all + ["",
        f"Commands: `{PY} handcrafted`; `{PY} probe -b whisper-tiny.en`; `{SWEEP} -e backbone-only -e backbone-only-mlp`; "
        f"`{SWEEP} -e physioser -e vap-only -c <corpus> [--folds ...]` (folds as in the header).",
        f"Hardware: {_hw(hw | hw_all)}."]))

    # backbone sweep
    backbones = (("whisper-tiny.en", ""), ("fbank", "-fbank"), ("resemblyzer", "-resemblyzer"), ("crepe-tiny", "-crepe-tiny"), ("pesto", "-pesto"))
    lin = ["| backbone | " + " | ".join(f"{SHORT.get(c, c)}: probe → + quartet (Δ)" for c in CORPORA) + " | mean Δ |",
           "|" + "---|" * (len(CORPORA) + 2)]
    trained = ["| backbone | " + " | ".join(f"{SHORT.get(c, c)}: backbone-only / PhysioSER" for c in CORPORA)
               + " | mean: backbone-only / PhysioSER (Δ) | paired Δ per fold |", "|" + "---|" * (len(CORPORA) + 3)]
    bhw: set[str] = set()
    for b, tag in backbones:
        cells, deltas, tcells, tmeans, paired = [], [], [], [], []
        for c in CORPORA:
            probe, probe_q = load_run(f"probe-{b}-{c}", root), load_run(f"probe-{b}+quartet-{c}", root)
            bo = load_run(f"backbone-only{tag}-{c}", GPU)
            ph = load_run(f"physioser{tag}-{c}", GPU)
            bhw |= hardware_of(probe) | hardware_of(probe_q) | hardware_of(bo) | hardware_of(ph)
            p, q = mean_ua(probe, c), mean_ua(probe_q, c)
            if p is None:
                cells.append("—")
            elif q is None:
                cells.append(f"{p:.3f}")
            else:
                cells.append(f"{p:.3f} → {q:.3f} ({q - p:+.3f})")
                deltas.append(q - p)
            f = fold_ids_of(ph, c)
            tb, tp = mean_ua(bo, c, f), mean_ua(ph, c, f)
            tcells.append(" / ".join("—" if v is None else f"{v:.3f}" for v in (tb, tp)))
            tmeans.append((tb, tp))
            paired += _paired_diffs(ph, bo, c)
        lin.append(f"| {b} | " + " | ".join(cells) + f" | {'—' if len(deltas) < len(CORPORA) else f'{sum(deltas) / len(deltas):+.3f}'} |")
        if all(tb is not None and tp is not None for tb, tp in tmeans):
            mb, mp = np.mean([m[0] for m in tmeans]), np.mean([m[1] for m in tmeans])
            summary = f"{mb:.3f} / {mp:.3f} ({mp - mb:+.3f}) | {_paired_cell(paired)}"
        else:
            summary = "— | —"
        trained.append(f"| {b} | " + " | ".join(tcells) + f" | {summary} |")
    sections.append((
        "Backbone sweep: does VAP help weak backbones most?",
        "Linear level (all folds): probe = per-layer utterance means of the frozen backbone → LR; + quartet = the same with "
        "the VAP quartet statistics (mean, std over time of the 4 components × 32 bands) concatenated. Trained level: "
        "backbone-only (SUPERB linear head) and PhysioSER trained end to end with the same recipe on the H200 GPU, every "
        "corpus (all folds; Korean: 5 diagonal grid cells); Δ = PhysioSER − backbone-only; paired Δ = per-fold "
        "differences on the same test speakers. crepe-tiny and pesto features were extracted on the GPU "
        "(see Coverage); their probes ran on the CPU from those caches.",
        lin + ["", "Trained (H200 GPU):", ""] + trained + ["",
        f"Commands: `{PY} probe -b whisper-tiny.en -b fbank -b resemblyzer -b crepe-tiny -b pesto [--with-quartet]` (CPU); "
        f"{GPU_SWEEP}, experiments `-e backbone-only -e physioser -e backbones`.",
        f"Hardware: {_hw(bhw)}."]))

    # ablations (H200 GPU: every corpus, same folds as the reference)
    abl = [("PhysioSER (quaternion, CPA, MHA)", "physioser-{corpus}", ()),
           ("without CPA", "physioser-no-cpa-{corpus}", ("cpa.weight=0",)),
           ("real-valued convs, equal width", "physioser-real-{corpus}", ("model.vap.quaternion=false",)),
           ("amplitude only (M, ρ)", "physioser-amplitude-{corpus}", ("model.vap.components=[M,rho]",)),
           ("phase only (f_inst, τ_g)", "physioser-phase-{corpus}", ("model.vap.components=[f_inst,tau_g]",)),
           ("fusion attention: moh", "physioser-moh-{corpus}", ("model.fusion.attention=moh",)),
           ("fusion attention: gated", "physioser-gated-{corpus}", ("model.fusion.attention=gated",)),
           ("fusion attention: affine", "physioser-affine-{corpus}", ("model.fusion.attention=affine",)),
           ("backbone-only (no VAP branch at all)", "backbone-only-{corpus}", None)]
    ref_t = "physioser-{corpus}"
    params = {}
    for label, t, ov in abl:
        diffs = [d for c in CORPORA for d in _paired_diffs(load_run(t.format(corpus=c), GPU), load_run(ref_t.format(corpus=c), GPU), c)]
        paired = "reference" if t == ref_t else _paired_cell(diffs)
        count = param_count("backbone_only", ()) if ov is None else param_count("physioser", ov)
        params[label] = f"{count:,} | {paired}"
    body, hw = table([(label, t) for label, t, _ in abl], folds=GPU_FOLDS, root=GPU, extra=params,
                     extra_name="params | paired Δ UA vs PhysioSER, per fold")
    body[1] = body[1] + "---|"
    sections.append((
        "Ablations",
        "UA mean ± std over folds, all four corpora, trained on the H200 GPU with the committed recipe (Korean: 5 "
        "diagonal grid cells); params = trainable parameters for 7 classes with whisper-tiny.en shapes (frozen backbone "
        "excluded). The components ablation zeroes the other components at the encoder input, so the parameter count "
        "stays fixed; the real-valued twin has the same channel widths, hence about 4× the convolution weights. "
        "Paired Δ: per-fold UA difference to PhysioSER on the same test speakers (mean ± std over the 21 folds of the "
        "four corpora), which removes the speaker-to-speaker spread that dominates the ± of the UA columns.",
        body + ["", f"Command: {GPU_SWEEP}, experiments `-e physioser -e ablations -e backbone-only`.", f"Hardware: {_hw(hw)}."]))

    # quartet probes
    qp = {c: load_run(f"quartet-probe-{c}", root) for c in CORPORA}
    subsets = next((list(r["subsets"]) for r in qp.values() if r), [])
    lines = ["| quartet statistics | " + " | ".join(SHORT.get(c, c) for c in CORPORA) + " |", "|" + "---|" * (len(CORPORA) + 1)]
    for sname in subsets:
        cells = []
        for c in CORPORA:
            r = qp[c]
            if r is None:
                cells.append("—")
                continue
            s = r["subsets"][sname]["corpora"][c]["summary"]["ua"]
            cells.append(f"{s['mean']:.3f} ± {s['std']:.3f}")
        lines.append(f"| {sname} | " + " | ".join(cells) + " |")
    sections.append((
        "Which quartet components carry emotion information? (linear probes)",
        "Mean and std over time of the cached, normalised quartet per band (32 mel bands) for each component subset "
        "→ StandardScaler → LR, on the same folds. Complements the trained ablations and the attribution below.",
        lines + ["", f"Command: `{PY} quartet-probe`.", f"Hardware: {_hw(set().union(*[hardware_of(r) for r in qp.values()]))}."]))

    # cross-corpus
    rows = [("handcrafted → LR", "handcrafted-to-{corpus}"), ("probe whisper → LR", "probe-whisper-tiny.en-to-{corpus}"),
            ("probe fbank → LR", "probe-fbank-to-{corpus}"), ("probe resemblyzer → LR", "probe-resemblyzer-to-{corpus}"),
            ("backbone-only (trained)", "backbone-only-to-{corpus}"), ("VAP-only (trained)", "vap-only-to-{corpus}"),
            ("PhysioSER (trained)", "physioser-to-{corpus}")]
    body, hw = table(rows, root=root, dated_before=KOREAN_LABELS_FIXED)
    sections.append((
        "Cross-corpus: train on three corpora, test on the fourth (neutral, happy, angry, sad)",
        "Columns name the held-out test corpus; one model per column (validation: 15% of the training speakers), so "
        "± is 0 — the number is UA on every utterance of the test corpus.",
        body + _korean_note(body) + ["", f"Commands: `{PY} handcrafted --cross`; `{PY} probe --cross -b ...`; `{SWEEP} --cross -e backbone-only -e vap-only -e physioser`.",
                f"Hardware: {_hw(hw)}."]))

    # multi-corpus
    rows = [("handcrafted → LR", "handcrafted-multi"), ("probe whisper → LR", "probe-whisper-tiny.en-multi"),
            ("backbone-only (trained)", "backbone-only-multi"), ("VAP-only (trained)", "vap-only-multi"),
            ("PhysioSER (trained)", "physioser-multi")]
    body, hw = table(rows, root=root, dated_before=KOREAN_LABELS_FIXED)
    sections.append((
        "Multi-corpus training (all four corpora together, four classes), evaluated per corpus",
        "Fold k of every corpus trained together (5 folds: the fewest any corpus has; Korean uses its first 5 grid cells), "
        "tested on each corpus's fold-k speakers. Four classes, so not comparable with the intra-corpus tables above "
        "(which use each corpus's own class set).",
        body + _korean_note(body) + ["", f"Commands: `{PY} handcrafted --multi`; `{PY} probe --multi -b whisper-tiny.en`; `{SWEEP} -c multi -e backbone-only ...`.",
                f"Hardware: {_hw(hw)}."]))

    # research model
    rows = [(f"research Transformer, {a}", f"research-{a}-{{corpus}}") for a in ("mha", "moh", "gated", "affine")]
    rows += [("PhysioSER (for reference)", "physioser-{corpus}")]
    ran = [c for c in CORPORA if any(load_run(t.format(corpus=c), GPU) for _, t in rows[:-1])]
    if ran:
        body, hw = table(rows, corpora=ran, folds=GPU_FOLDS, root=GPU)
        body += ["", f"Command (H200 GPU): `{PY} research -a mha -a moh -a gated -a affine -c <corpus> [--folds 0,6,12,18,24 for "
                 "Korean] --results-dir eval/results/experiments-gpu`.", f"Hardware: {_hw(hw)}."]
    else:
        body = ["Not run: on the shared CPU one fold of URDU took 160–250 s per variant (2 of 5 folds of `mha` "
                "finished before the run was stopped to give the sweep the CPU). The runner is "
                f"`{PY} research -a mha -a moh -a gated -a affine -c <corpus>` (same folds, training loop and metrics)."]
    sections.append((
        "Frame-level Transformer research model (attention variants)",
        "2 pre-norm blocks, dim 128, over whisper-tiny.en's last-layer frames (random 3 s crops in training), mean pooled.",
        body))

    # interpretability
    adir = root / "analysis"
    analyses = [json.loads(p.read_text()) for p in sorted(adir.glob("*.json"))] if adir.is_dir() else []
    lines = []
    imp = [a for a in analyses if "importance" in a]
    if imp:
        comps = list(imp[0]["importance"])
        lines += ["Drop-one-component attribution (UA(full) − UA(component replaced by its normalised mean), test speakers):", "",
                  "| run | UA | " + " | ".join(comps) + " | whole quartet | checkpoints = reported UA |", "|" + "---|" * (len(comps) + 4)]
        for a in imp:
            whole = a.get("importance_all")
            lines.append(f"| {a['run']} | {a['ua']['mean']:.3f} | " + " | ".join(
                f"{a['importance'][c]['mean']:+.3f} ± {a['importance'][c]['std']:.3f}" for c in comps)
                + (f" | {whole['mean']:+.3f} ± {whole['std']:.3f}" if whole else " | —") + f" | {a.get('checkpoints_match_results', '—')} |")
        lines += ["", "![component attribution](experiments/analysis/component_importance.png)", ""]
    lw = [a for a in analyses if "layer_weights" in a]
    if lw:
        lines += ["Learned backbone layer weights (softmax, mean over folds; layer 0 = input embedding):", "",
                  "| run | " + " | ".join(f"L{i}" for i in range(len(lw[0]["layer_weights"]["mean"]))) + " |",
                  "|" + "---|" * (len(lw[0]["layer_weights"]["mean"]) + 1)]
        for a in lw:
            lines.append(f"| {a['run']} | " + " | ".join(f"{m:.3f}" for m in a["layer_weights"]["mean"]) + " |")
        lines += ["", "![layer weights](experiments/analysis/layer_weights.png)", ""]
    cp = [a for a in analyses if "cpa" in a]
    if cp:
        keys = ["matched_cos", "unmatched_same_label_cos", "unmatched_other_label_cos", "retrieval_v_to_s", "retrieval_s_to_v", "retrieval_chance", "logit_scale"]
        lines += ["CPA alignment on the test speakers (mean over folds):", "", "| run | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
        for a in cp:
            lines.append(f"| {a['run']} | " + " | ".join(f"{a['cpa'][k]['mean']:.3f}" for k in keys) + " |")
    sections.append((
        "Interpretability: quartet attribution, layer weights, CPA alignment",
        "From the fold checkpoints, on each fold's test speakers: PhysioSER = the REPORT runs "
        f"(`{PY} analyze physioser-<corpus> --results-dir eval/results --checkpoints runs`), VAP-only = this sweep's runs "
        f"(`{PY} analyze vap-only-<corpus> --checkpoints <sweep worktree>/runs`). The last column checks that each "
        "checkpoint reproduces the UA its run reported for that fold.",
        lines or ["(no analysis run yet)"]))
    return write_experiments_report(sections, path)
