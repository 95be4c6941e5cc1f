"""Evaluation protocols: speaker-independent folds, cross-corpus and multi-corpus runs, and the report.

``physioser eval`` trains and tests one config under one protocol and writes ``eval/results/<run>/``:
``results.json`` (per-fold and mean ± std UA, WA, macro-F1 by scikit-learn, per-class recall,
confusions, training histories, versions, git hash, hardware and the exact command) and
``confusion.png`` (summed over folds). ``physioser report`` gathers every run into
``eval/results/REPORT.md`` with a UA plot.

Protocols:
* intra-corpus: ``--corpus RAVDESS`` — the corpus's speaker-independent folds from
  ``physioser.data.make_folds`` (Korean: speaker- and sentence-disjoint); each fold trains on its
  ``train`` part, early-stops on its speaker-disjoint ``val`` part and is tested on ``test``;
* multi-corpus: ``--corpus A --corpus B`` — fold k of every corpus is trained together, tested per
  corpus (the number of folds is the smallest among them);
* cross-corpus: ``--corpus A --corpus B --test-corpus C`` — train on all of A and B (validation:
  held-out speakers of the training corpora), test on all of C; the four-class canonical set.
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Optional

import numpy as np
import typer

from physioser.data.labels import FOUR_CLASSES
from physioser.data.folds import fold_plan
from physioser.model.config import Config
from physioser.model.metrics import classification_metrics, summarize
from physioser.paths import corpora_root as default_corpora_root
from physioser.paths import runs_dir

__all__ = ["run_protocol", "write_report", "environment", "register"]

REPO_ROOT = Path(__file__).resolve().parents[1]
ADAPT_RULES = ("balanced", "referenced")
"""Offset rules `physioser eval --adapt` reports (:data:`physioser.model.adaptation.RULES`; the others are research)."""
RESULTS_DIR = REPO_ROOT / "eval" / "results"


def environment() -> dict:
    """Versions, git hash, hardware and the exact command of this process."""
    import sklearn
    import torch

    import physioser

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", False
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
    return {
        "command": "physioser " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if Path(sys.argv[0]).name == "physioser" or Path(sys.argv[0]).parts[-2:] == ("physioser", "cli.py")  # python -m physioser.cli
        else " ".join(shlex.quote(a) for a in sys.argv),
        "git": commit + ("+dirty" if dirty else ""),
        "hardware": device,
        "python": platform.python_version(),
        "versions": {"physioser": physioser.__version__, "torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__},
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _plot_confusion(conf: np.ndarray, class_names: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(class_names), 0.8 + 0.6 * len(class_names)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{conf[i, j]}", ha="center", va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_protocol(
    cfg: Config,
    corpora: list[str],
    *,
    corpora_root: Path,
    run_name: str,
    test_corpus: str | None = None,
    folds: list[int] | None = None,
    results_dir: Path = RESULTS_DIR,
    checkpoints_dir: Path | None = None,
    progress: bool = True,
    adapt: Sequence[int | None] = (),
    adapt_rule: str = "balanced",
) -> dict:
    """Train and test ``cfg`` under the protocol given by ``corpora``/``test_corpus``; write results.

    ``adapt``: adapted protocols reported beside the strict one (statistics-pooling models): k
    unlabelled utterances of each test speaker (None = all of them), see
    :func:`physioser.model.adaptation.adapted_predictions`; results under ``corpora.<name>.adapted.<k>``.
    ``adapt_rule``: ``balanced`` (the model's, as the stream adapts) or ``referenced`` (measured
    against the fold's nearest training speakers, :func:`physioser.model.adaptation.speaker_reference`).
    Returns the results dict (also written to ``results_dir/run_name/results.json``).
    """
    from physioser.features import load_corpora
    from physioser.train import fit, new_model, predict

    if cfg.train.copies:
        raise ValueError("train.augment, train.stream_windows and train.augmented_windows are applied by `physioser train` only; "
                         "physioser eval does not augment its folds yet")
    out_dir = results_dir / run_name
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_root = checkpoints_dir or (runs_dir() / run_name)
    if test_corpus is not None and not cfg.classes:
        cfg = replace(cfg, classes=list(FOUR_CLASSES))
    names = list(corpora) + ([test_corpus] if test_corpus else [])
    cfg, data, spans = load_corpora(cfg, names, corpora_root, progress=progress)
    class_names = list(cfg.class_names)
    all_rows = data.rows
    plan = fold_plan(data, spans, corpora, test_corpus=test_corpus, seed=cfg.train.seed)
    if folds is not None:
        unknown = sorted(set(folds) - {p[0] for p in plan})
        if unknown:
            raise ValueError(f"folds {unknown} do not exist; this protocol has folds 0..{len(plan) - 1}")
        plan = [p for p in plan if p[0] in folds]

    fold_results: dict[str, list[dict]] = {name: [] for name in plan[0][3]}
    histories = []
    adapted_results: dict[str, dict[str, list[dict]]] = {name: {} for name in plan[0][3]}
    if adapt and not cfg.model.statistics:
        raise ValueError("adapted protocols need a statistics-pooling model (model.statistics: true)")
    if adapt_rule not in ADAPT_RULES:
        raise ValueError(f"unknown adaptation rule {adapt_rule!r}; expected one of {ADAPT_RULES}")
    for k, tr, va, tests in plan:
        t0 = time.perf_counter()
        if not cfg.train.early_stopping:
            tr, va = np.concatenate([tr, va]), va[:0]
        model = new_model(cfg, data, tr)
        fit_result = fit(model, data, tr, va if len(va) else None, cfg, ckpt_root / f"fold{k}", progress=progress)
        if adapt:
            from physioser.model.adaptation import adapted_predictions, speaker_reference

            reference = speaker_reference(model, data, tr) if adapt_rule == "referenced" else None
        for name, te in tests.items():
            pred = predict(model, data, te)["logits"].argmax(1)
            m = classification_metrics(data.labels[te], pred, class_names)
            m.update(fold=k, n_train=int(len(tr)), n_val=int(len(va)), test_speakers=sorted({all_rows[i].speaker for i in te}))
            fold_results[name].append(m)
            if adapt:
                logits = adapted_predictions(model, data, te, list(adapt), float(cfg.adapt.tau), seed=cfg.train.seed,
                                             rule=adapt_rule, reference=reference)
                for kk, lg in logits.items():
                    am = classification_metrics(data.labels[te], lg.argmax(1), class_names)
                    am.update(fold=k)
                    adapted_results[name].setdefault("all" if kk is None else str(kk), []).append(am)
            if progress:
                print(f"[{run_name}] fold {k} {name}: UA {m['ua']:.3f} WA {m['wa']:.3f} F1 {m['macro_f1']:.3f} "
                      f"(best epoch {fit_result.best_epoch}, {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        histories.append({"fold": k, **asdict(fit_result)})

    results = {
        "run": run_name,
        "config": cfg.to_dict(),
        "protocol": {"train_corpora": corpora, "test_corpus": test_corpus,
                     "kind": "cross-corpus" if test_corpus else ("multi-corpus" if len(corpora) > 1 else "intra-corpus"),
                     "folds": [p[0] for p in plan], **({"adapt_rule": adapt_rule} if adapt else {})},
        "class_names": class_names,
        "corpora": {},
        "training": histories,
        "environment": environment(),
    }
    for name, fr in fold_results.items():
        conf = np.sum([np.array(f["confusion"]) for f in fr], axis=0)
        png = out_dir / f"confusion_{name}.png"
        _plot_confusion(conf, class_names, f"{run_name} on {name} (sum over {len(fr)} folds)", png)
        tested = sum(f["n"] for f in fr)
        results["corpora"][name] = {"summary": summarize(fr), "folds": fr, "confusion": conf.tolist(), "confusion_png": png.name,
                                    "coverage": tested / len(spans[name])}
        if adapt:
            results["corpora"][name]["adapted"] = {kk: {"summary": summarize(af), "folds": af}
                                                   for kk, af in adapted_results[name].items()}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results


# -- report ---------------------------------------------------------------------------------------
def _fmt(summary: dict, key: str) -> str:
    return f"{summary[key]['mean']:.3f} ± {summary[key]['std']:.3f}"


def _korean_swapped(run: dict) -> bool:
    """Whether ``run`` met KoreanEmotionTTS together with other corpora (in training or as the test corpus)
    before the reader took the recordings' angry and sad (:data:`physioser.data.readers.KOREAN_LABELS_FIXED`)."""
    from physioser.data.readers import KOREAN_LABELS_FIXED

    corpora = set(run["protocol"].get("train_corpora", [])) | ({run["protocol"]["test_corpus"]} - {None})
    return "KoreanEmotionTTS" in corpora and len(corpora) > 1 and run["environment"].get("date", "") < KOREAN_LABELS_FIXED


def write_report(results_dir: Path = RESULTS_DIR, path: Path | None = None) -> Path:
    """Gather every ``results_dir/*/results.json`` into ``REPORT.md`` (+ ``report_ua.png``)."""
    path = path or results_dir / "REPORT.md"
    runs = []
    for f in sorted(results_dir.glob("*/results.json")):
        try:
            runs.append(json.loads(f.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{f} is not valid JSON: {exc}") from exc
    if not runs:
        raise FileNotFoundError(f"no runs under {results_dir} (expected <run>/results.json written by physioser eval)")
    lines = ["# Results", "", "Written by `physioser report` from `eval/results/*/results.json` (each written by "
             "`physioser eval`). UA = unweighted average recall (balanced accuracy), WA = accuracy, macro-F1; "
             "mean ± std over speaker-independent folds (scikit-learn). Each row names the command that reproduces "
             "it and the hardware that ran it.", "",
             "KoreanEmotionTTS's angry and sad were swapped by its reader until they were corrected (docs/corpora.md). "
             "Models trained and tested on Korean alone are unaffected; runs that met it together with other corpora "
             "from before the fix are marked † below. The experiments' cross-corpus and multi-corpus sections, the recipe's "
             "leave-one-corpus-out figures (RECIPE.md) and BENCHMARK.md's are rerun with the corrected labels.", ""]
    lines += _summary_table(runs)
    if (path.parent / "RECIPE.md").is_file():
        lines += ["These are the `physioser eval` runs of the first heads. The training recipe that replaced them, speaker "
                  "adaptation, whisper-tiny.en against whisper-base and leave one corpus out are in \"Training recipe and "
                  "speaker adaptation\" below.", ""]
    by_protocol: dict[str, list[tuple[str, dict, dict]]] = {}
    for r in runs:
        for corpus, res in r["corpora"].items():
            kind = r["protocol"]["kind"]
            title = f"{corpus} ({kind}" + (f", trained on {'+'.join(r['protocol']['train_corpora'])}" if kind != "intra-corpus" else "") + ")"
            by_protocol.setdefault(title, []).append((r["run"], r, res))
    for title in sorted(by_protocol):
        entries = by_protocol[title]
        lines += [f"## {title}", "", "| run | model | folds | UA | WA | macro-F1 | hardware |", "|---|---|---|---|---|---|---|"]
        swapped = [run for run, r, _ in entries if _korean_swapped(r)]
        for run, r, res in sorted(entries, key=lambda e: -e[2]["summary"]["ua"]["mean"]):
            s = res["summary"]
            m = r["config"]["model"]
            model = f"{r['config']['name']}: {'+'.join(m['branches'])}, head {m['head']}" + (", CPA" if r["config"]["cpa"]["weight"] else "")
            folds = f"{len(res['folds'])}" + (f" ({res['coverage']:.0%} of rows)" if res.get("coverage", 1.0) < 0.999 else "")
            mark = " †" if run in swapped else ""
            lines.append(f"| {run}{mark} | {model} | {folds} | {_fmt(s, 'ua')} | {_fmt(s, 'wa')} | {_fmt(s, 'macro_f1')} | {r['environment']['hardware']} |")
        if swapped:
            lines += ["", "† run on KoreanEmotionTTS together with other corpora before its angry and sad were corrected "
                      "(docs/corpora.md): Korean anger counted as sadness."]
        lines += ["", "Commands:", ""]
        for run, r, _ in entries:
            lines.append(f"- `{run}`: `{r['environment']['command']}` (git {r['environment']['git'][:12]})")
        lines.append("")
    png = _plot_report(runs, path.parent / "report_ua.png")
    lines += ["## UA by corpus and run", "", f"![UA by corpus]({png.name})", ""]
    experiments, recipe = path.parent / "EXPERIMENTS.md", path.parent / "RECIPE.md"
    for embedded, title in ((recipe, "Training recipe and speaker adaptation"), (experiments, "Experiments")):
        if embedded.is_file():  # written by their own tools: embedded, without their title, one heading level down
            body = embedded.read_text().splitlines()[1:]
            lines += [f"## {title} (from [{embedded.name}]({embedded.name}))", ""]
            lines += ["#" + line if line.startswith("#") else line for line in body] + [""]
    if (path.parent / "BENCHMARK.md").is_file():  # written by hand from `physioser benchmark` leaderboards
        lines += ["## Benchmark", "", "Every corpus at hand on EmoBox's folds where they are sound, beside EmoBox's "
                  "published figures, and leave-one-corpus-out: [BENCHMARK.md](BENCHMARK.md).", ""]
    topics = sorted(p for p in path.parent.glob("*.md") if p.name not in (path.name, experiments.name, recipe.name, "BENCHMARK.md"))
    if topics:  # reports of their own (each with its commands), linked rather than embedded
        lines += ["## Topic reports", ""] + [f"- [{p.stem.capitalize()}]({p.name})" for p in topics] + [""]
    path.write_text("\n".join(lines))
    return path


def _summary_table(runs: list[dict]) -> list[str]:
    """UA by config (rows) and corpus (columns) over the intra-corpus runs, with the mean over corpora."""
    intra = [r for r in runs if r["protocol"]["kind"] == "intra-corpus"]
    corpora = sorted({c for r in intra for c in r["corpora"]})
    by_config: dict[str, dict[str, dict]] = {}
    for r in intra:
        for c, res in r["corpora"].items():
            by_config.setdefault(r["config"]["name"], {})[c] = res["summary"]["ua"]
    if not by_config:
        return []
    lines = ["## Summary: UA by model and corpus (intra-corpus, speaker-independent folds)", "",
             "| model | " + " | ".join(corpora) + " | mean over corpora |", "|---" * (len(corpora) + 2) + "|"]
    for name, cells in sorted(by_config.items(), key=lambda kv: -np.mean([v["mean"] for v in kv[1].values()])):
        row = [f"{cells[c]['mean']:.3f} ± {cells[c]['std']:.3f}" if c in cells else "—" for c in corpora]
        mean = f"{np.mean([cells[c]['mean'] for c in corpora]):.3f}" if all(c in cells for c in corpora) else "—"
        lines.append(f"| {name} | " + " | ".join(row) + f" | {mean} |")
    return lines + ["", "The runs behind each cell, with their commands, follow per corpus.", ""]


def _plot_report(runs: list[dict], path: Path) -> Path:
    """Bars of intra-corpus UA (mean ± std over folds): one colour per model config, grouped by corpus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intra = [r for r in runs if r["protocol"]["kind"] == "intra-corpus"]
    corpora = sorted({c for r in intra for c in r["corpora"]})
    cells: dict[str, dict[str, dict]] = {}
    for r in intra:
        for c, res in r["corpora"].items():
            cells.setdefault(r["config"]["name"], {})[c] = res["summary"]["ua"]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(corpora)), 3.5))
    width = 0.8 / max(len(cells), 1)
    for i, (name, by_corpus) in enumerate(sorted(cells.items())):
        xs = [j + i * width for j, c in enumerate(corpora) if c in by_corpus]
        ax.bar(xs, [by_corpus[c]["mean"] for c in corpora if c in by_corpus], width,
               yerr=[by_corpus[c]["std"] for c in corpora if c in by_corpus], label=name, capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(corpora))], corpora)
    ax.set_ylabel("UA (mean ± std over folds)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        corpus: list[str] = typer.Option(..., "--corpus", "-c", help="training corpus (repeat for multi-corpus / cross-corpus training)"),
        config: Optional[Path] = typer.Option(None, "--config", help="experiment YAML (configs/*.yaml)"),
        override: list[str] = typer.Option([], "--set", "-o", help="dotted config override, e.g. train.lr=1e-3 (repeatable)"),
        test_corpus: Optional[str] = typer.Option(None, "--test-corpus", help="cross-corpus: test on this corpus (four-class set)"),
        folds: Optional[str] = typer.Option(None, "--folds", help="comma-separated fold ids (default: all)"),
        run: Optional[str] = typer.Option(None, "--run", help="run name (default: <config name>-<corpora>)"),
        corpora_root: Path = typer.Option(default_corpora_root(), "--corpora-root", help="folder holding the corpora"),
        results_dir: Path = typer.Option(RESULTS_DIR, "--results-dir", help="where <run>/results.json goes"),
        runs: Path = typer.Option(None, "--runs-dir", help="where the fold checkpoints <run>/fold<k>/ go (default: $PHYSIOSER_RUNS "
                                  "or ~/.cache/physioser/runs)"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
        adapt: Optional[str] = typer.Option(None, "--adapt", help="adapted protocols beside the strict one: comma-separated "
                                            "numbers of unlabelled utterances per test speaker, 'all' for all of them "
                                            "(e.g. 5,10,20,all; statistics-pooling models)"),
        adapt_rule: str = typer.Option("balanced", "--adapt-rule", help="offset rule of --adapt: 'balanced' (the model's, "
                                       "as the stream adapts) or 'referenced' (measured against the nearest training speakers; "
                                       "docs/adaptation.md)"),
    ) -> None:
        """Train and test a config under a speaker-independent protocol; write eval/results/<run>/."""
        from physioser.model.config import load_config

        cfg = load_config(config, override)
        name = run or f"{cfg.name}-{'+'.join(corpus)}" + (f"-to-{test_corpus}" if test_corpus else "")
        fold_ids = [int(f) for f in folds.split(",")] if folds else None
        try:
            ks = [None if k.strip() == "all" else int(k) for k in adapt.split(",")] if adapt else []
        except ValueError:
            raise typer.BadParameter(f"--adapt takes numbers and 'all', comma-separated, got {adapt!r}") from None
        if any(k is not None and k < 1 for k in ks):
            raise typer.BadParameter("--adapt numbers must be >= 1 (the strict protocol is always reported)")
        if adapt_rule not in ADAPT_RULES:
            raise typer.BadParameter(f"--adapt-rule takes one of {', '.join(ADAPT_RULES)}, got {adapt_rule!r}")
        res = run_protocol(cfg, list(corpus), corpora_root=corpora_root, run_name=name, test_corpus=test_corpus,
                           folds=fold_ids, results_dir=results_dir, progress=not quiet,
                           checkpoints_dir=(runs or runs_dir()) / name, adapt=ks, adapt_rule=adapt_rule)
        for cname, r in res["corpora"].items():
            s = r["summary"]
            typer.echo(f"{name} on {cname}: UA {_fmt(s, 'ua')}  WA {_fmt(s, 'wa')}  macro-F1 {_fmt(s, 'macro_f1')}  ({len(r['folds'])} folds)")
            for kk, a in r.get("adapted", {}).items():
                typer.echo(f"  adapted, k={kk} unlabelled utterances per speaker: UA {_fmt(a['summary'], 'ua')}")
        typer.echo(f"wrote {results_dir / name / 'results.json'}")

    @app.command("report")
    def report_command(
        results_dir: Path = typer.Option(RESULTS_DIR, "--results-dir", help="folder of <run>/results.json"),
    ) -> None:
        """Gather eval/results/*/results.json into eval/results/REPORT.md with a UA plot."""
        try:
            typer.echo(f"wrote {write_report(results_dir)}")
        except FileNotFoundError as exc:  # no <run>/results.json under the folder
            raise typer.BadParameter(str(exc), param_hint="--results-dir") from exc
