"""``eval/results/EXPERIMENTS.md``: the tables of issue 7 from the result files under
``eval/results/experiments/`` (sweep runs, baselines, probes, analyses). Every table names the
command that reproduces it and the hardware that ran it; cells are UA mean ± std over the
speaker-independent folds ("—" = not run). Korean has 25 folds of 12 test utterances each, so its
per-fold std is large; the pooled UA (all folds' predictions together) is listed beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from physioser.experiments.common import CORPORA, EXPERIMENTS_DIR

__all__ = ["load_run", "ua_cell", "table", "param_count", "write_experiments_report"]

SHORT = {"KoreanEmotionTTS": "Korean"}


def load_run(run: str, root: Path = EXPERIMENTS_DIR) -> dict | None:
    path = Path(root) / run / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _corpus_result(res: dict | None, corpus: str) -> dict | None:
    if res is None:
        return None
    return res.get("corpora", {}).get(corpus)


def ua_cell(res: dict | None, corpus: str, *, pooled: bool = False) -> str:
    r = _corpus_result(res, corpus)
    if r is None:
        return "—"
    s = r["summary"]["ua"]
    cell = f"{s['mean']:.3f} ± {s['std']:.3f}"
    if pooled and "pooled" in r:
        cell += f" ({r['pooled']['ua']:.3f})"
    return cell


def _mean_ua(res_by_corpus: dict[str, dict | None], corpora: Sequence[str]) -> str:
    vals = [(_corpus_result(res_by_corpus[c], c) or {}).get("summary", {}).get("ua", {}).get("mean") for c in corpora]
    return "—" if any(v is None for v in vals) else f"{sum(vals) / len(vals):.3f}"


def _hardware(res: dict | None) -> set[str]:
    if res is None:
        return set()
    hw = res.get("environment", {}).get("hardware", [])
    return set([hw] if isinstance(hw, str) else hw)


def table(rows: Sequence[tuple[str, str]], corpora: Sequence[str] = CORPORA, root: Path = EXPERIMENTS_DIR,
          extra: dict[str, str] | None = None) -> tuple[list[str], set[str]]:
    """Markdown table of UA cells: rows = (label, run-name template with ``{corpus}``). Returns (lines, hardware)."""
    head = "| model | " + " | ".join(SHORT.get(c, c) for c in corpora) + " | mean |" + (" params |" if extra else "")
    lines = [head, "|" + "---|" * (len(corpora) + 2 + bool(extra))]
    hardware: set[str] = set()
    for label, template in rows:
        runs = {c: load_run(template.format(corpus=c), root) for c in corpora}
        for r in runs.values():
            hardware |= _hardware(r)
        cells = [ua_cell(runs[c], c, pooled=c == "KoreanEmotionTTS") for c in corpora]
        line = f"| {label} | " + " | ".join(cells) + f" | {_mean_ua(runs, corpora)} |"
        if extra:
            line += f" {extra.get(label, '')} |"
        lines.append(line)
    return lines, hardware


def param_count(config: str, overrides: Sequence[str] = ()) -> int:
    """Trainable parameters of a config's PhysioSER (whisper-tiny.en shapes, 7 classes), frozen backbone excluded."""
    from physioser.experiments.common import REPO_ROOT
    from physioser.model.config import load_config
    from physioser.model.physioser import PhysioSER

    cfg = load_config(REPO_ROOT / "configs" / f"{config}.yaml", list(overrides))
    shapes = {"whisper-tiny.en": (5, 384), "fbank": (1, 80), "resemblyzer": (4, 256), "crepe-tiny": (3, 256), "pesto": (1, 384)}
    layers, dim = shapes[cfg["backbone"]["name"]]
    cfg = dict(cfg, class_names=[str(i) for i in range(7)], backbone=dict(cfg["backbone"], num_layers=layers, dim=dim))
    return sum(p.numel() for p in PhysioSER(cfg).parameters() if p.requires_grad)


def write_experiments_report(sections: Sequence[tuple[str, str, list[str]]], path: Path) -> Path:
    """sections: (title, intro paragraph, markdown lines) -> the report file."""
    lines = ["# Experiments (issue 7): baselines, backbone sweep, ablations, cross-corpus, interpretability", "",
             "Written by `python -m physioser.experiments tables` from `eval/results/experiments/*/results.json`. "
             "UA = unweighted average recall (scikit-learn), mean ± std over the speaker-independent folds of "
             "`eval/protocols/` (Korean: speaker × sentence grid of 25 folds; pooled UA over all folds in brackets).", ""]
    for title, intro, body in sections:
        lines += [f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        lines += body + [""]
    path.write_text("\n".join(lines))
    return path
