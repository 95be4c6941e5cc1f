"""Commands of the experiments: ``physioser experiments baseline|probe|sweep|analyze|tables``.

Also runnable without the main CLI: ``python -m physioser.experiments <command> ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from physioser.data.labels import FOUR_CLASSES
from physioser.experiments.common import CORPORA, DEFAULT_ROOT, EXPERIMENTS_DIR


__all__ = ["register", "build_app"]


def _fmt(summary: dict) -> str:
    return "  ".join(f"{k} {summary[k]['mean']:.3f} ± {summary[k]['std']:.3f}" for k in ("ua", "wa", "macro_f1"))


def _echo_results(run: str, res: dict) -> None:
    for name, r in res["corpora"].items():
        typer.echo(f"{run} on {name}: {_fmt(r['summary'])}  (pooled UA {r['pooled']['ua']:.3f}, {len(r['folds'])} folds)")


def _cross_jobs(test_corpora: list[str]) -> list[tuple[list[str], str]]:
    """(training corpora = the other corpora of CORPORA, test corpus) for each test corpus."""
    return [([c for c in CORPORA if c != t], t) for t in test_corpora]


def build_app() -> typer.Typer:
    exp = typer.Typer(no_args_is_help=True, help="Baselines, linear probes, sweeps and analyses.")

    @exp.command("handcrafted")
    def handcrafted(
        corpus: list[str] = typer.Option(list(CORPORA), "--corpus", "-c", help="corpora (each evaluated on its own folds)"),
        cross: bool = typer.Option(False, "--cross", help="cross-corpus: for each --corpus, train on the other four-corpus "
                                   "set members, test on it (4 classes)"),
        multi: bool = typer.Option(False, "--multi", help="multi-corpus: train on all --corpus together (4 classes), test per corpus"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """MFCC + F0 + energy statistics → StandardScaler → logistic regression, on the folds of physioser eval."""
        from physioser.experiments.common import write_results
        from physioser.experiments.handcrafted import run_handcrafted

        jobs = _cross_jobs(corpus) if cross else ([(list(corpus), None)] if multi else [([c], None) for c in corpus])
        for train, test in jobs:
            res = run_handcrafted(train, test_corpus=test, corpora_root=corpora_root, progress=not quiet,
                                  classes=list(FOUR_CLASSES) if multi else None)
            run = "handcrafted-" + (f"to-{test}" if test else ("multi" if multi else train[0]))
            write_results(run, res, results_dir)
            _echo_results(run, res)

    @exp.command("probe")
    def probe(
        backbone: list[str] = typer.Option(["whisper-tiny.en"], "--backbone", "-b", help="backbone(s) with a feature cache"),
        corpus: list[str] = typer.Option(list(CORPORA), "--corpus", "-c"),
        cross: bool = typer.Option(False, "--cross", help="cross-corpus: train on the other corpora of CORPORA, test on each --corpus"),
        multi: bool = typer.Option(False, "--multi", help="multi-corpus: train on all --corpus together (4 classes), test per corpus"),
        with_quartet: bool = typer.Option(False, "--with-quartet", help="concatenate the VAP quartet statistics to the backbone features"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Linear probe: per-layer utterance means of cached backbone features → StandardScaler → logistic regression."""
        from physioser.experiments.common import write_results
        from physioser.experiments.probe import run_probe

        for b in backbone:
            for train, test in (_cross_jobs(corpus) if cross else ([(list(corpus), None)] if multi else [([c], None) for c in corpus])):
                res = run_probe(b, train, test_corpus=test, corpora_root=corpora_root, progress=not quiet,
                                classes=list(FOUR_CLASSES) if multi else None, with_quartet=with_quartet)
                run = f"probe-{b}" + ("+quartet" if with_quartet else "") + "-" + (f"to-{test}" if test else ("multi" if multi else train[0]))
                write_results(run, res, results_dir)
                _echo_results(run, res)

    @exp.command("quartet-probe")
    def quartet_probe(
        corpus: list[str] = typer.Option(list(CORPORA), "--corpus", "-c"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Linear probes on the cached quartet's statistics: each component alone, amplitude, phase, all four."""
        from physioser.experiments.common import write_results
        from physioser.experiments.probe import QUARTET_SUBSETS, run_quartet_probe

        for c in corpus:
            res = run_quartet_probe(c, QUARTET_SUBSETS, corpora_root=corpora_root, progress=not quiet)
            write_results(f"quartet-probe-{c}", res, results_dir)
            for name, r in res["subsets"].items():
                typer.echo(f"quartet probe {name:10s} on {c}: {_fmt(r['corpora'][c]['summary'])}")

    @exp.command("sweep")
    def sweep(
        experiment: list[str] = typer.Option(["main"], "--experiment", "-e", help="experiment or suite name (repeatable); "
                                             "see `python -m physioser.experiments list`"),
        corpus: list[str] = typer.Option(list(CORPORA), "--corpus", "-c", help="corpus (or 'multi': all four trained together, "
                                         "4 classes, tested per corpus)"),
        workers: int = typer.Option(2, help="parallel processes (1 torch thread each)"),
        deadline: Optional[str] = typer.Option(None, help="UTC HH:MM after which no new job starts"),
        folds: Optional[str] = typer.Option(None, help="comma-separated fold ids for every corpus (default: all)"),
        override: list[str] = typer.Option([], "--set", "-o", help="override appended to every experiment's (e.g. train.patience=6)"),
        cross: bool = typer.Option(False, "--cross", help="cross-corpus: for each --corpus, train on the other three, test on it (4 classes)"),
        commit: Optional[str] = typer.Option(None, "--commit", help="run the jobs from a git worktree of this commit (e.g. HEAD), "
                                             "so edits to the checkout during the sweep cannot mix code versions"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
    ) -> None:
        """Run (experiment × corpus × fold) as parallel `physioser eval` processes; merge each run's folds."""
        from physioser.experiments.sweep import SUITES, run_sweep, snapshot, warm_caches

        names = [n for e in experiment for n in SUITES.get(e, [e])]
        fold_map = {c: [int(f) for f in folds.split(",")] for c in corpus} if folds else None
        if not cross:
            warm_caches(names, corpus, corpora_root=corpora_root, extra=override)
        code = snapshot(commit) if commit else None
        if code is not None:
            typer.echo(f"sweep jobs run from {code} (git worktree of {commit}); checkpoints in {code / 'runs'}")
        res = run_sweep(names, corpus, workers=workers, deadline=deadline, root=results_dir, corpora_root=corpora_root,
                        folds=fold_map, extra=override, cross=cross, code=code, log=typer.echo)
        typer.echo(f"sweep: {res['status']}; merged {len(res['merged'])} runs; incomplete: {res['incomplete'] or 'none'}")
        for f in res["failed"]:
            typer.echo(f"failed: {f}", err=True)

    @exp.command("research")
    def research(
        attention: list[str] = typer.Option(["mha"], "--attention", "-a", help="attention variant(s) of the blocks"),
        corpus: list[str] = typer.Option(["URDU"], "--corpus", "-c"),
        backbone: str = typer.Option("whisper-tiny.en", help="backbone whose cached frames feed the model"),
        layer: int = typer.Option(-1, help="hidden-state layer of the backbone"),
        folds: Optional[str] = typer.Option(None, help="comma-separated fold ids (default: all)"),
        override: list[str] = typer.Option([], "--set", "-o", help="training override, e.g. train.patience=6"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """The frame-level Transformer research model (attention variant as the variable), same folds and metrics."""
        from physioser.experiments.common import write_results
        from physioser.experiments.research import run_research

        fold_ids = [int(f) for f in folds.split(",")] if folds else None
        for c in corpus:
            for a in attention:
                res = run_research(c, attention=a, backbone=backbone, layer=layer, folds=fold_ids, overrides=override,
                                   corpora_root=corpora_root, progress=not quiet)
                run = f"research-{a}-{c}"
                write_results(run, res, results_dir)
                _echo_results(run, res)

    @exp.command("analyze")
    def analyze(
        run: list[str] = typer.Argument(..., help="merged intra-corpus sweep runs, e.g. physioser-URDU"),
        checkpoints: Path = typer.Option(None, "--checkpoints", help="folder of <run>/fold<k>/ checkpoints (default: $PHYSIOSER_RUNS "
                                         "or ~/.cache/physioser/runs; a sweep with --commit: <snapshot>/runs)"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Quartet component attribution, learned layer weights and CPA alignment of the runs' fold checkpoints."""
        import json

        from physioser.experiments.analysis import ANALYSIS_DIR, analyze_run, plot_analyses

        for r in run:
            a = analyze_run(r, results_root=results_dir, checkpoints_root=checkpoints, corpora_root=corpora_root, progress=not quiet)
            summary = {k: (round(v["mean"], 3) if isinstance(v, dict) and "mean" in v else None) for k, v in a.get("importance", {}).items()}
            typer.echo(f"{r}: UA {a['ua']['mean']:.3f}; component importance {summary}; layer weights "
                       f"{[round(x, 3) for x in a.get('layer_weights', {}).get('mean', [])]}")
        every = [json.loads(p.read_text()) for p in sorted(ANALYSIS_DIR.glob("*.json"))]
        for path in plot_analyses(every):
            typer.echo(f"wrote {path}")

    @exp.command("tables")
    def tables() -> None:
        """Write eval/results/EXPERIMENTS.md from eval/results/experiments/."""
        from physioser.experiments.report import build_report

        typer.echo(f"wrote {build_report()}")

    @exp.command("list")
    def list_experiments() -> None:
        """Experiments (config + overrides) and suites of the sweep."""
        from physioser.experiments.sweep import EXPERIMENTS, SUITES

        for e in EXPERIMENTS.values():
            typer.echo(f"{e.name:26s} configs/{e.config}.yaml {' '.join(e.overrides):44s} {e.note}")
        for s, names in SUITES.items():
            typer.echo(f"suite {s}: {' '.join(names)}")

    return exp


def register(app: typer.Typer) -> None:
    app.add_typer(build_app(), name="experiments")
