"""Commands of the experiments: ``physioser experiments baseline|probe|sweep|analyze|tables``.

Also runnable without the main CLI: ``python -m physioser.experiments <command> ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from physioser.experiments.common import CORPORA, DEFAULT_ROOT, EXPERIMENTS_DIR

__all__ = ["register", "build_app"]


def _fmt(summary: dict) -> str:
    return "  ".join(f"{k} {summary[k]['mean']:.3f} ± {summary[k]['std']:.3f}" for k in ("ua", "wa", "macro_f1"))


def _echo_results(run: str, res: dict) -> None:
    for name, r in res["corpora"].items():
        typer.echo(f"{run} on {name}: {_fmt(r['summary'])}  (pooled UA {r['pooled']['ua']:.3f}, {len(r['folds'])} folds)")


def build_app() -> typer.Typer:
    exp = typer.Typer(no_args_is_help=True, help="Baselines, linear probes, sweeps and analyses (issue 7).")

    @exp.command("handcrafted")
    def handcrafted(
        corpus: list[str] = typer.Option(list(CORPORA), "--corpus", "-c", help="corpora (each evaluated on its own folds)"),
        test_corpus: Optional[str] = typer.Option(None, "--test-corpus", help="cross-corpus: train on all --corpus, test here (4 classes)"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """MFCC + F0 + energy statistics → StandardScaler → logistic regression, on the folds of physioser eval."""
        from physioser.experiments.common import write_results
        from physioser.experiments.handcrafted import run_handcrafted

        jobs = [(corpus, test_corpus)] if test_corpus else [([c], None) for c in corpus]
        for train, test in jobs:
            res = run_handcrafted(train, test_corpus=test, corpora_root=corpora_root, progress=not quiet)
            run = f"handcrafted-{'+'.join(train)}" + (f"-to-{test}" if test else "")
            write_results(run, res, results_dir)
            _echo_results(run, res)

    @exp.command("probe")
    def probe(
        backbone: list[str] = typer.Option(["whisper-tiny.en"], "--backbone", "-b", help="backbone(s) with a feature cache"),
        corpus: list[str] = typer.Option(list(CORPORA), "--corpus", "-c"),
        pooling: str = typer.Option("mean", help="mean | meanstd: per-layer utterance statistics concatenated over layers"),
        with_vap: bool = typer.Option(False, "--with-vap", help="also concatenate the VAP quartet's utterance statistics"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
        quiet: bool = typer.Option(False, "--quiet"),
    ) -> None:
        """Linear probe: cached per-layer utterance statistics → StandardScaler → logistic regression."""
        from physioser.experiments.common import write_results
        from physioser.experiments.probe import run_probe

        for b in backbone:
            for c in corpus:
                res = run_probe(b, [c], pooling=pooling, with_vap=with_vap, corpora_root=corpora_root, progress=not quiet)
                run = f"probe-{b}-{pooling}" + ("+vap" if with_vap else "") + f"-{c}"
                write_results(run, res, results_dir)
                _echo_results(run, res)

    @exp.command("sweep")
    def sweep(
        experiment: list[str] = typer.Option(["main"], "--experiment", "-e", help="experiment or suite name (repeatable); "
                                             "see `python -m physioser.experiments list`"),
        corpus: list[str] = typer.Option(list(CORPORA), "--corpus", "-c"),
        workers: int = typer.Option(2, help="parallel processes (1 torch thread each)"),
        deadline: Optional[str] = typer.Option(None, help="UTC HH:MM after which no new job starts"),
        folds: Optional[str] = typer.Option(None, help="comma-separated fold ids for every corpus (default: all)"),
        override: list[str] = typer.Option([], "--set", "-o", help="override appended to every experiment's (e.g. train.patience=6)"),
        corpora_root: Path = typer.Option(DEFAULT_ROOT, "--corpora-root"),
        results_dir: Path = typer.Option(EXPERIMENTS_DIR, "--results-dir"),
    ) -> None:
        """Run (experiment × corpus × fold) as parallel `physioser eval` processes; merge each run's folds."""
        from physioser.experiments.sweep import SUITES, run_sweep, warm_caches

        names = [n for e in experiment for n in SUITES.get(e, [e])]
        fold_map = {c: [int(f) for f in folds.split(",")] for c in corpus} if folds else None
        warm_caches(names, corpus, corpora_root=corpora_root, extra=override)
        res = run_sweep(names, corpus, workers=workers, deadline=deadline, root=results_dir, corpora_root=corpora_root,
                        folds=fold_map, extra=override, log=typer.echo)
        typer.echo(f"sweep: {res['status']}; merged {len(res['merged'])} runs; incomplete: {res['incomplete'] or 'none'}")
        for f in res["failed"]:
            typer.echo(f"failed: {f}", err=True)

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
