"""``eval/results/EXPERIMENTS.md``: the experiment tables from the result files under
``eval/results/experiments/`` (sweep runs, baselines, probes, analyses). Every table names the
command that reproduces it and the hardware that ran it; cells are UA mean ± std over the
speaker-independent folds ("—" = not run). Korean has 25 folds of 12 test utterances each, so its
per-fold std is large; the pooled UA (all folds' predictions together) is listed beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from physioser.experiments.common import CORPORA, EXPERIMENTS_DIR

__all__ = ["load_run", "ua_cell", "mean_ua", "fold_ids_of", "hardware_of", "table", "param_count", "write_experiments_report"]

SHORT = {"KoreanEmotionTTS": "Korean"}


def load_run(run: str, root: Path = EXPERIMENTS_DIR) -> dict | None:
    path = Path(root) / run / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _corpus_result(res: dict | None, corpus: str) -> dict | None:
    if res is None:
        return None
    return res.get("corpora", {}).get(corpus)


def fold_ids_of(res: dict | None, corpus: str) -> list[int] | None:
    r = _corpus_result(res, corpus)
    return None if r is None else [int(f["fold"]) for f in r["folds"]]


def _ua_values(res: dict | None, corpus: str, folds: Sequence[int] | None) -> list[float] | None:
    r = _corpus_result(res, corpus)
    if r is None:
        return None
    by_fold = {int(f["fold"]): f["ua"] for f in r["folds"]}
    if folds is None:
        return list(by_fold.values())
    if not set(folds) <= set(by_fold):
        return None
    return [by_fold[k] for k in folds]


def ua_cell(res: dict | None, corpus: str, folds: Sequence[int] | None = None) -> str:
    """"mean ± std" of UA over ``folds`` (all folds of the run when None; "—" when the run lacks one);
    the pooled UA is appended in brackets for Korean when the run covers all 25 folds."""
    values = _ua_values(res, corpus, folds)
    if not values:
        return "—"
    cell = f"{np.mean(values):.3f} ± {np.std(values):.3f}"
    r = _corpus_result(res, corpus)
    if corpus == "KoreanEmotionTTS" and "pooled" in r and folds is None and len(r["folds"]) == 25:
        cell += f" ({r['pooled']['ua']:.3f})"
    return cell


def mean_ua(res: dict | None, corpus: str, folds: Sequence[int] | None = None) -> float | None:
    values = _ua_values(res, corpus, folds)
    return float(np.mean(values)) if values else None


def hardware_of(res: dict | None) -> set[str]:
    if res is None:
        return set()
    hw = res.get("environment", {}).get("hardware", [])
    return set([hw] if isinstance(hw, str) else hw)


def table(rows: Sequence[tuple], corpora: Sequence[str] = CORPORA, root: Path = EXPERIMENTS_DIR,
          folds: dict[str, list[int] | None] | None = None, extra: dict[str, str] | None = None,
          extra_name: str = "params", show_folds: Sequence[str] | None = None,
          dated_before: str | None = None) -> tuple[list[str], set[str]]:
    """Markdown table of UA cells: rows = (label, run-name template with ``{corpus}``[, results root]),
    all cells of a column over the same ``folds[corpus]`` (None = each run's own folds); a row with a run
    dated before ``dated_before`` (ISO time) is marked †. Returns (lines, hardware)."""
    folds = folds or {}
    heads = []
    for c in corpora:
        f = folds.get(c)
        shown = f is not None and (show_folds is None or c in show_folds)
        heads.append(SHORT.get(c, c) + (f" (folds {','.join(map(str, f))})" if shown else ""))
    lines = ["| model | " + " | ".join(heads) + " | mean |" + (f" {extra_name} |" if extra else ""),
             "|" + "---|" * (len(corpora) + 2 + bool(extra))]
    hardware: set[str] = set()
    for label, template, *own_root in rows:
        runs = {c: load_run(template.format(corpus=c), own_root[0] if own_root else root) for c in corpora}
        for r in runs.values():
            hardware |= hardware_of(r)
        cells = [ua_cell(runs[c], c, folds.get(c)) for c in corpora]
        means = [mean_ua(runs[c], c, folds.get(c)) for c in corpora]
        avg = "—" if any(m is None for m in means) else f"{np.mean(means):.3f}"
        stale = dated_before is not None and any(
            r is not None and r.get("environment", {}).get("date", "") < dated_before for r in runs.values())
        line = f"| {label}{' †' if stale else ''} | " + " | ".join(cells) + f" | {avg} |"
        if extra:
            line += f" {extra.get(label, '')} |"
        lines.append(line)
    return lines, hardware


def param_count(config: str, overrides: Sequence[str] = ()) -> int:
    """Trainable parameters of a config's PhysioSER (whisper-tiny.en shapes, 7 classes), frozen backbone excluded."""
    from physioser.experiments.common import REPO_ROOT
    from physioser.model import build_model, load_config

    cfg = load_config(REPO_ROOT / "configs" / f"{config}.yaml", list(overrides))
    shapes = {"whisper-tiny.en": (5, 384), "fbank": (1, 80), "resemblyzer": (4, 256), "crepe-tiny": (3, 256), "pesto": (1, 384)}
    cfg = replace(cfg, class_names=[str(i) for i in range(7)]).with_backbone_shape(*shapes[cfg.backbone.name])
    return sum(p.numel() for p in build_model(cfg).parameters() if p.requires_grad)


def write_experiments_report(sections: Sequence[tuple[str, str, list[str]]], path: Path) -> Path:
    """sections: (title, intro paragraph, markdown lines) -> the report file."""
    lines = ["# Experiments: baselines, backbone sweep, ablations, cross-corpus, interpretability", "",
             "Written by `python -m physioser.experiments tables` from `eval/results/experiments/*/results.json` (CPU) and "
             "`eval/results/experiments-gpu/*/results.json` (an H200 GPU). "
             "UA = unweighted average recall (scikit-learn), mean ± std over the speaker-independent folds of "
             "`physioser/data/protocols/` (Korean: speaker × sentence grid of 25 folds; pooled UA over all folds in brackets).", ""]
    for title, intro, body in sections:
        lines += [f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        lines += body + [""]
    path.write_text("\n".join(lines))
    return path
