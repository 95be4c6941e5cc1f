"""Sweeps: (experiment × corpus × fold) runs of ``physioser eval`` in parallel processes, merged per run.

Each job is one fold of one experiment on one corpus, run as its own process::

    OMP_NUM_THREADS=1 physioser eval -c CORPUS --config CONFIG --set ... --folds K --run RUN --quiet \
        --results-dir eval/results/experiments/_parts/RUN/fold-K

at most ``workers`` at a time. A job whose part already exists is skipped (a sweep resumes where it
stopped). Once every fold of a run is present, the parts are merged into
``eval/results/experiments/RUN/results.json`` — the schema of ``physioser eval``'s results (per-fold
and mean ± std UA/WA/macro-F1, summed confusion and its PNG) plus ``pooled`` metrics over all folds'
predictions, the per-fold commands, and the hardware of every part.

Experiments are named in :data:`EXPERIMENTS` (config file + overrides); suites group them in the
priority order of the experiment plan. ``deadline`` (UTC ``HH:MM``) stops launching new jobs after that time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from physioser.data.labels import FOUR_CLASSES
from physioser.experiments.common import CORPORA, DEFAULT_ROOT, EXPERIMENTS_DIR, REPO_ROOT

__all__ = ["Experiment", "EXPERIMENTS", "SUITES", "Job", "plan_jobs", "run_jobs", "merge_parts", "run_sweep"]


@dataclass(frozen=True)
class Experiment:
    """A named model configuration: ``configs/<config>.yaml`` + dotted overrides."""

    name: str
    config: str
    overrides: tuple[str, ...] = ()
    note: str = ""


def _backbone_pair(backbone: str) -> list[Experiment]:
    tag = backbone.replace(".", "")
    return [
        Experiment(f"backbone-only-{tag}", "backbone_only", (f"backbone.name={backbone}",), f"{backbone}, SUPERB linear head"),
        Experiment(f"physioser-{tag}", "physioser", (f"backbone.name={backbone}",), f"PhysioSER on {backbone}"),
    ]


_EXPERIMENTS = [
    Experiment("physioser", "physioser", (), "PhysioSER default: VAP (quaternion) + whisper-tiny.en + CPA + MHA fusion"),
    Experiment("backbone-only", "backbone_only", (), "SUPERB: learned layer weights -> projector -> mean pool -> linear"),
    Experiment("backbone-only-mlp", "backbone_only", ("model.head=mlp",), "SUPERB with an MLP head"),
    Experiment("vap-only", "vap_only", (), "VAP branch alone (quaternion encoder, linear head)"),
    Experiment("physioser-no-cpa", "physioser", ("cpa.weight=0",), "ablation: without CPA"),
    Experiment("physioser-real", "physioser", ("model.vap.quaternion=false",), "ablation: real-valued convs of equal width"),
    Experiment("physioser-amplitude", "physioser", ("model.vap.components=[M,rho]",), "ablation: amplitude-only quartet (M, rho)"),
    Experiment("physioser-phase", "physioser", ("model.vap.components=[f_inst,tau_g]",), "ablation: phase-only quartet (f_inst, tau_g)"),
    Experiment("physioser-moh", "physioser", ("model.fusion.attention=moh",), "fusion attention: mixture-of-heads"),
    Experiment("physioser-gated", "physioser", ("model.fusion.attention=gated",), "fusion attention: gated"),
    Experiment("physioser-affine", "physioser", ("model.fusion.attention=affine",), "fusion attention: affine-scaled"),
    Experiment("vap-only-real", "vap_only", ("model.vap.quaternion=false",), "VAP alone, real-valued twin"),
    Experiment("vap-only-amplitude", "vap_only", ("model.vap.components=[M,rho]",), "VAP alone, amplitude only"),
    Experiment("vap-only-phase", "vap_only", ("model.vap.components=[f_inst,tau_g]",), "VAP alone, phase only"),
    *[e for b in ("fbank", "resemblyzer", "crepe-tiny", "pesto") for e in _backbone_pair(b)],
]
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in _EXPERIMENTS}

SUITES: dict[str, list[str]] = {
    "main": ["physioser", "backbone-only", "vap-only", "backbone-only-mlp"],
    "ablations": ["physioser-no-cpa", "physioser-real", "physioser-amplitude", "physioser-phase",
                  "physioser-moh", "physioser-gated", "physioser-affine"],
    "branch-ablations": ["physioser-no-cpa", "physioser-real", "physioser-amplitude", "physioser-phase"],
    "fusion-variants": ["physioser-moh", "physioser-gated", "physioser-affine"],
    "vap-ablations": ["vap-only-real", "vap-only-amplitude", "vap-only-phase"],
    "backbones": [e.name for b in ("fbank", "resemblyzer", "crepe-tiny", "pesto") for e in _backbone_pair(b)],
}


MULTI = "multi"
"""Pseudo-corpus of a multi-corpus job: all of CORPORA trained together on the four-class set."""


@dataclass(frozen=True)
class Job:
    experiment: Experiment
    corpus: str
    fold: int
    extra: tuple[str, ...] = ()  # sweep-wide overrides appended to the experiment's
    cross: bool = False  # cross-corpus: train on the other corpora of CORPORA, test on ``corpus`` (4 classes)
    # multi-corpus (corpus == MULTI): fold k of every corpus of CORPORA trained together (4 classes), tested per corpus

    @property
    def run(self) -> str:
        return f"{self.experiment.name}-{'to-' if self.cross else ''}{self.corpus}"

    def part_dir(self, root: Path) -> Path:
        return root / "_parts" / self.run / f"fold-{self.fold}"

    def command(self, root: Path, corpora_root: Path, code: Path | None = None) -> list[str]:
        """The ``physioser eval`` command line; with ``code`` (a snapshot checkout, run as the working
        directory) the physioser package and configs of that checkout are used."""
        if code is not None:
            cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'physioser'; from physioser.cli import main; main()", "eval"]
        else:
            exe = Path(sys.executable).with_name("physioser")
            cmd = [str(exe) if exe.exists() else "physioser", "eval"]
        if self.cross:
            for c in CORPORA:
                if c != self.corpus:
                    cmd += ["-c", c]
            cmd += ["--test-corpus", self.corpus]
        elif self.corpus == MULTI:
            for c in CORPORA:
                cmd += ["-c", c]
            cmd += ["--set", f"classes=[{','.join(FOUR_CLASSES)}]"]
        else:
            cmd += ["-c", self.corpus]
        cmd += ["--config", str((code or REPO_ROOT) / "configs" / f"{self.experiment.config}.yaml")]
        for o in (*self.experiment.overrides, *self.extra):
            cmd += ["--set", o]
        cmd += ["--folds", str(self.fold), "--run", self.run, "--quiet", "--corpora-root", str(corpora_root),
                "--results-dir", str(self.part_dir(root))]
        return cmd


def fold_ids(corpus: str, corpora_root: Path = DEFAULT_ROOT) -> list[int]:
    """Fold ids of a corpus under ``physioser eval``'s intra-corpus protocol (MULTI: the multi-corpus plan)."""
    from physioser.experiments.common import load_labelled_rows, protocol_plan

    names, classes = (list(CORPORA), list(FOUR_CLASSES)) if corpus == MULTI else ([corpus], None)
    rows, _, _, spans = load_labelled_rows(names, corpora_root, classes)
    return [p[0] for p in protocol_plan(rows, spans, names)]


def plan_jobs(experiments: Sequence[str], corpora: Sequence[str], *, folds: dict[str, list[int]] | None = None,
              corpora_root: Path = DEFAULT_ROOT, extra: Sequence[str] = (), cross: bool = False) -> list[Job]:
    """Jobs in priority order: experiment by experiment, corpus by corpus, every fold (cross-corpus:
    one job per held-out test corpus, fold 0)."""
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiments {unknown}; known: {sorted(EXPERIMENTS)} (suites: {sorted(SUITES)})")
    if cross:
        return [Job(EXPERIMENTS[e], c, 0, tuple(extra), cross=True) for e in experiments for c in corpora]
    folds = dict(folds or {})
    for c in corpora:
        if c not in folds:
            folds[c] = fold_ids(c, corpora_root)
    return [Job(EXPERIMENTS[e], c, k, tuple(extra)) for e in experiments for c in corpora for k in folds[c]]


def _part_done(job: Job, root: Path) -> bool:
    return (job.part_dir(root) / job.run / "results.json").is_file()


def _deadline_passed(deadline: str | None) -> bool:
    if not deadline:
        return False
    now = datetime.now(timezone.utc)
    hh, mm = (int(v) for v in deadline.split(":"))
    return (now.hour, now.minute) >= (hh, mm)


def snapshot(commit: str = "HEAD", where: Path | None = None) -> Path:
    """A detached ``git worktree`` of ``commit`` (default: HEAD) for a sweep's jobs to run from, so that
    work committed or edited in the checkout during a long sweep cannot mix code versions across its
    folds. Reused when it exists. Checkpoints then go to ``<snapshot>/runs/``."""
    sha = subprocess.run(["git", "rev-parse", commit], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    where = Path(where) if where is not None else Path(os.environ.get("TMPDIR", "/tmp")) / f"physioser-sweep-{sha[:12]}"
    if not (where / "physioser" / "cli.py").is_file():
        subprocess.run(["git", "worktree", "add", "--detach", str(where), sha], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return where


def run_jobs(jobs: Sequence[Job], *, root: Path = EXPERIMENTS_DIR, corpora_root: Path = DEFAULT_ROOT, workers: int = 2,
             deadline: str | None = None, code: Path | None = None, log=print) -> dict[str, list[Job]]:
    """Run the jobs whose parts are missing, ``workers`` processes at a time (1 torch thread each),
    from ``code`` (a :func:`snapshot`) when given, else from this checkout.

    Returns {"done": [...], "failed": [...], "skipped": [...] (deadline)}. Each job's output goes to
    ``<part dir>/log.txt``; a failed job is reported, not retried."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending = [j for j in jobs if not _part_done(j, root)]
    status: dict[str, list[Job]] = {"done": [j for j in jobs if _part_done(j, root)], "failed": [], "skipped": []}
    running: list[tuple[Job, subprocess.Popen, float, object]] = []
    while pending or running:
        while pending and len(running) < workers:
            if _deadline_passed(deadline):
                status["skipped"] += pending
                pending = []
                break
            job = pending.pop(0)
            job.part_dir(root).mkdir(parents=True, exist_ok=True)
            handle = open(job.part_dir(root) / "log.txt", "w")
            proc = subprocess.Popen(job.command(root, corpora_root, code), cwd=code or REPO_ROOT, env=env, stdout=handle,
                                    stderr=subprocess.STDOUT)
            running.append((job, proc, time.perf_counter(), handle))
            log(f"[sweep] start {job.run} fold {job.fold}")
        time.sleep(1.0)
        for item in list(running):
            job, proc, t0, handle = item
            if proc.poll() is None:
                continue
            handle.close()
            running.remove(item)
            ok = proc.returncode == 0 and _part_done(job, root)
            status["done" if ok else "failed"].append(job)
            log(f"[sweep] {'done' if ok else 'FAILED'} {job.run} fold {job.fold} in {time.perf_counter() - t0:.0f} s"
                + ("" if ok else f" (exit {proc.returncode}; see {job.part_dir(root) / 'log.txt'})"))
    return status


def merge_parts(run: str, folds: Sequence[int], *, root: Path = EXPERIMENTS_DIR) -> Path | None:
    """Merge the fold parts of ``run`` into ``root/run/results.json`` (None while a fold is missing)."""
    from physioser.evaluate import _plot_confusion
    from physioser.model.metrics import classification_metrics, summarize

    parts = []
    for k in folds:
        path = root / "_parts" / run / f"fold-{k}" / run / "results.json"
        if not path.is_file():
            return None
        parts.append(json.loads(path.read_text()))
    first = parts[0]
    class_names = first["class_names"]
    out_dir = root / run
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = {
        "run": run, "config": first["config"], "class_names": class_names,
        "protocol": dict(first["protocol"], folds=[f for p in parts for f in p["protocol"]["folds"]]),
        "corpora": {}, "training": [t for p in parts for t in p["training"]],
        "environment": dict(first["environment"], command=[p["environment"]["command"] for p in parts],
                            hardware=sorted({p["environment"]["hardware"] for p in parts}),
                            git=sorted({p["environment"]["git"] for p in parts})),
    }
    for name in first["corpora"]:
        folds_ = [f for p in parts for f in p["corpora"][name]["folds"]]
        conf = np.sum([np.array(f["confusion"]) for f in folds_], axis=0)
        # pooled metrics: all folds' predictions together, rebuilt exactly from the summed confusion
        y_true = np.repeat(np.arange(len(class_names)), conf.sum(1))
        y_pred = np.concatenate([np.repeat(np.arange(len(class_names)), row) for row in conf])
        png = out_dir / f"confusion_{name}.png"
        _plot_confusion(conf, class_names, f"{run} on {name} (sum over {len(folds_)} folds)", png)
        merged["corpora"][name] = {"summary": summarize(folds_), "pooled": classification_metrics(y_true, y_pred, class_names),
                                   "folds": folds_, "confusion": conf.tolist(), "confusion_png": png.name}
    path = out_dir / "results.json"
    path.write_text(json.dumps(merged, indent=1, default=str))
    return path


def run_sweep(experiments: Sequence[str], corpora: Sequence[str] = CORPORA, *, workers: int = 2, deadline: str | None = None,
              root: Path = EXPERIMENTS_DIR, corpora_root: Path = DEFAULT_ROOT, folds: dict[str, list[int]] | None = None,
              extra: Sequence[str] = (), cross: bool = False, code: Path | None = None, log=print) -> dict:
    """Plan, run and merge a sweep; returns {"status": counts, "merged": [paths], "incomplete": [runs]}."""
    fold_map = {c: [0] if cross else ((folds or {}).get(c) or fold_ids(c, corpora_root)) for c in corpora}
    jobs = plan_jobs(experiments, corpora, folds=fold_map, corpora_root=corpora_root, extra=extra, cross=cross)
    status = run_jobs(jobs, root=root, corpora_root=corpora_root, workers=workers, deadline=deadline, code=code, log=log)
    merged, incomplete = [], []
    for e in experiments:
        for c in corpora:
            run = f"{e}-{'to-' if cross else ''}{c}"
            path = merge_parts(run, fold_map[c], root=root)
            (merged if path else incomplete).append(str(path) if path else run)
    return {"status": {k: len(v) for k, v in status.items()}, "failed": [f"{j.run} fold {j.fold}" for j in status["failed"]],
            "merged": merged, "incomplete": incomplete}


def warm_caches(experiments: Sequence[str], corpora: Sequence[str], *, corpora_root: Path = DEFAULT_ROOT, extra: Sequence[str] = (),
                progress: bool = True) -> None:
    """Build the pooled-backbone and quartet caches each (experiment, corpus) needs, once, in this
    process — so parallel fold processes only read them (two writers of one cache file would race)."""
    from physioser.model.config import load_config
    from physioser.features import load_corpora

    seen = set()
    for name in experiments:
        e = EXPERIMENTS[name]
        cfg = load_config(REPO_ROOT / "configs" / f"{e.config}.yaml", [*e.overrides, *extra])
        key_cfg = {"branches": cfg.model.branches, "backbone": cfg.backbone.to_dict() if cfg.model.uses("backbone") else None,
                   "vap": cfg.model.vap.frontend_key() if cfg.model.uses("vap") else None,
                   "max_seconds": cfg.train.max_seconds, "classes": cfg.classes}
        for c in corpora:
            key = json.dumps([key_cfg, c], sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            if c == MULTI:
                load_corpora(replace(cfg, classes=FOUR_CLASSES), list(CORPORA), corpora_root, progress=progress)
            else:
                load_corpora(cfg, [c], corpora_root, progress=progress)
