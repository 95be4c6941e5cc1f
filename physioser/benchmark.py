"""``physioser benchmark``: every corpus found under a root, one config, one leaderboard beside EmoBox's.

For each corpus of the registry whose layout is found under ``--root`` (:func:`discover`) the
benchmark trains and tests the config on every fold of the chosen protocol, then trains on all
the other corpora and tests on it (leave-one-corpus-out, the four-class set), and writes
``leaderboard.json`` and ``leaderboard.md``: UA/WA/macro-F1 (scikit-learn, mean ± std over folds)
per corpus beside EmoBox's published figures, saying for each corpus whether the comparison is
exact (EmoBox's folds, the same utterances, EmoBox's class set) or why not.

Protocols (``--protocol``):

- ``emobox``: EmoBox's folds (``physioser/data/protocols/emobox/<CORPUS>.yaml``) where they are speaker-
  independent and the corpus does not tie sentences to emotions; elsewhere the project's
  speaker-independent (Korean, ASED: speaker- and sentence-disjoint) folds, with the reason;
- ``emobox-exact``: EmoBox's folds wherever a protocol exists, even a random utterance-level split
  (its figures then measure speaker-dependent recognition, as EmoBox's do);
- ``project``: the project's folds (``physioser/data/protocols/<CORPUS>.yaml``) everywhere.

Every finished fold is written to ``<out>/folds/<corpus>/<fold>.json`` before the next starts; a
second run with the same config and out folder skips them (and resumes an interrupted fold from
its last epoch), also after the config schema has gained fields, as long as the config holds them
at their defaults. ``train.device: auto`` puts training on a GPU where one is present.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import typer

from physioser.data.labels import FOUR_CLASSES
from physioser.data.folds import fold_plan
from physioser.evaluate import RESULTS_DIR, environment
from physioser.model.config import Config
from physioser.paths import corpora_root, runs_dir

__all__ = ["PROTOCOLS", "discover", "run_benchmark", "write_leaderboard", "register"]

PROTOCOLS = ("emobox", "emobox-exact", "project")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def discover(root: str | Path) -> tuple[dict[str, Path], list[str]]:
    """({corpus: folder} of the registry's corpora found under ``root``, [corpora not found]).

    A sub-folder named after a corpus (case, dashes and underscores aside) is that corpus; any
    other sub-folder is the corpus whose reader places at least 90 % of its audio files."""
    from physioser.data import CORPORA, CorpusLayoutError

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus root {root} is not a directory")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    by_name = {_norm(name): name for name in CORPORA}
    found: dict[str, Path] = {}
    unnamed = []
    for folder in folders:
        name = by_name.get(_norm(folder.name))
        if name and name not in found:
            found[name] = folder
        else:
            unnamed.append(folder)
    for folder in unnamed:
        best, best_rows = None, 0
        for name, spec in CORPORA.items():
            if name in found:
                continue
            try:
                listing = spec.read(folder)
            except (CorpusLayoutError, OSError, ValueError):
                continue
            total = len(listing.rows) + len(listing.unmatched)
            if listing.rows and len(listing.rows) >= 0.9 * total and len(listing.rows) > best_rows:
                best, best_rows = name, len(listing.rows)
        if best:
            found[best] = folder
    found = {name: found[name] for name in CORPORA if name in found}
    return found, [name for name in CORPORA if name not in found]


@dataclass
class CorpusPlan:
    corpus: str
    folds: list  # physioser.data.Fold (indices into the corpus's rows)
    protocol: str  # "EmoBox" or "project"
    comparison: str  # whether the figures compare exactly with EmoBox's, and why not
    exact: bool


def _plan(corpus: str, rows: list, n_read: int, mode: str, seed: int) -> CorpusPlan:
    """The folds of one corpus under ``mode`` and how its figures compare with EmoBox's."""
    from physioser.data import PROTOCOL_DIR, ProtocolError, get_spec, make_folds
    from physioser.data.emobox import check, emobox_corpora, emobox_folds, load_emobox, published_figures

    spec = get_spec(corpus)
    covered = corpus in published_figures()["corpora"]
    protocol = load_emobox(corpus) if corpus in emobox_corpora() else None
    reason = ""
    if mode == "project":
        reason = "project's folds chosen (--protocol project)"
    elif protocol is None:
        reason = "no EmoBox protocol committed for this corpus" if covered else "EmoBox does not cover this corpus"
        if spec.folds == "speaker_sentence":
            reason += "; the corpus ties sentences to emotions: project's speaker- and sentence-disjoint folds used"
    elif mode == "emobox" and not protocol.speaker_independent:
        reason = "EmoBox's split is utterance-level (speakers in both train and test); " + (
            "the corpus ties sentences to emotions: project's speaker- and sentence-disjoint folds used"
            if spec.folds == "speaker_sentence" else "project's speaker-independent folds used")
    elif mode == "emobox" and spec.folds == "speaker_sentence":
        reason = "the corpus ties sentences to emotions; project's speaker- and sentence-disjoint folds used"
    if reason:
        path = PROTOCOL_DIR / f"{corpus}.yaml"
        try:
            folds = make_folds(rows, corpus, protocol=path if path.is_file() else None)
        except ProtocolError:  # a class subset or another copy: folds by the same rules
            folds = make_folds(rows, corpus)
        every, folds = len(folds), [f for f in folds if len(f.test)]
        if len(folds) < every:
            reason += f"; {every - len(folds)} of the {every} folds have no utterance here"
        comparison = ("not comparable: " if covered else "") + reason
        return CorpusPlan(corpus, folds, "project", comparison, False)
    result = check(protocol, rows)
    every = emobox_folds(protocol, rows, seed=seed)
    folds = [f for f in every if len(f.test)]
    notes = []
    if not result.exact:
        notes.append(result.summary())
    if len(folds) < len(every):
        notes.append(f"{len(every) - len(folds)} of EmoBox's {len(every)} folds have no utterance here")
    if len(rows) < n_read:
        notes.append(f"{n_read - len(rows)} rows outside the config's class set left out")
    caveats = []  # how EmoBox's own split measures, which an exact comparison shares
    if not protocol.speaker_independent:
        caveats.append("EmoBox's split is utterance-level: speaker-dependent figures")
        if spec.folds == "speaker_sentence":
            caveats.append("the corpus ties sentences to emotions and the split does not hold sentences out")
    exact = not notes
    comparison = ("exact: EmoBox's folds, the same utterances, EmoBox's class set" if exact else "EmoBox's folds, not exact")
    if notes or caveats:
        comparison += " (" + "; ".join(notes + caveats) + ")"
    return CorpusPlan(corpus, folds, "EmoBox", comparison, exact)


def _config_key(cfg: Config | dict, mode: str) -> str:
    """The out folder's stamp of a config (or of its stored dict form) under a protocol mode."""
    text = json.dumps({"config": cfg if isinstance(cfg, dict) else cfg.to_dict(), "protocol": mode}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _as_json(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _added_at_default(stored, current, default) -> bool:
    """``current`` is ``stored`` except for entries ``stored`` lacks that ``current`` holds at their default:
    config fields added since the stored run, which leave what it ran unchanged."""
    if isinstance(stored, dict) and isinstance(current, dict):
        defaults = default if isinstance(default, dict) else {}
        return set(stored) <= set(current) and all(
            _added_at_default(stored[k], v, defaults.get(k)) if k in stored else (k in defaults and v == defaults[k])
            for k, v in current.items())
    return stored == current


def _resumable(stamp: dict, cfg: Config, mode: str) -> bool:
    """Whether an out folder stamped by an earlier run may be resumed by ``cfg`` under ``mode``: the same
    config and protocol, up to config fields added since at their defaults."""
    from physioser.model.config import load_config

    stored = stamp.get("config")
    return (isinstance(stored, dict) and stamp.get("key") == _config_key(stored, mode)
            and _added_at_default(stored, _as_json(cfg.to_dict()), _as_json(load_config().to_dict())))


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def _train_and_test(cfg: Config, data, tr: np.ndarray, va: np.ndarray, te: np.ndarray, ckpt: Path, adapt: int | None) -> dict:
    """{"strict": metrics, "adapted": metrics with each test speaker's offset from ``adapt`` unlabelled
    utterances of theirs (only when ``adapt`` is given)}."""
    from physioser.model.metrics import classification_metrics
    from physioser.train import fit, new_model, predict

    t0 = time.perf_counter()
    if not cfg.train.early_stopping:  # a fixed schedule: validation rows join the training rows (as physioser eval)
        tr, va = np.concatenate([tr, va]), va[:0]
    model = new_model(cfg, data, tr)
    result = fit(model, data, tr, va if len(va) else None, cfg, ckpt, resume=(ckpt / "last.json").is_file(), progress=False)
    pred = predict(model, data, te)["logits"].argmax(1)
    strict = classification_metrics(data.labels[te], pred, list(cfg.class_names))
    strict.update(n_train=int(len(tr)), n_val=int(len(va)), n_test=int(len(te)), best_epoch=result.best_epoch,
                  seconds=round(time.perf_counter() - t0, 1))
    out = {"strict": strict}
    if adapt is not None:
        from physioser.model.adaptation import adapted_predictions

        logits = adapted_predictions(model, data, te, [adapt], float(cfg.adapt.tau), seed=cfg.train.seed)[adapt]
        out["adapted"] = dict(classification_metrics(data.labels[te], logits.argmax(1), list(cfg.class_names)), k=adapt)
    return out


def run_benchmark(
    cfg: Config,
    root: str | Path,
    out_dir: str | Path,
    *,
    protocol: str = "emobox",
    only: list[str] | None = None,
    loco: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    adapt: int | None = None,
) -> dict:
    """Run (or resume) the benchmark; returns the leaderboard dict (also written under ``out_dir``).

    ``only`` restricts it to some corpora; ``stop_after`` ends the call after that many newly
    finished units (folds or held-out corpora), as an interruption would. ``adapt``: also test with
    each test speaker's offset from that many of their unlabelled utterances (configs with
    ``model.statistics: true``), reported beside the strict figures."""
    from tqdm.auto import tqdm

    from physioser.features import load_corpora

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if cfg.train.copies:
        raise ValueError("train.augment, train.stream_windows and train.augmented_windows are applied by `physioser train` only; "
                         "physioser benchmark does not augment its folds yet")
    out_dir = Path(out_dir)
    if adapt is not None and (adapt < 1 or not cfg.model.statistics):
        raise ValueError(f"--adapt {adapt}: needs k >= 1 and a config with model.statistics: true (speaker offsets of its statistics)")
    mode = f"{protocol}-adapt{adapt}" if adapt is not None else protocol
    key = _config_key(cfg, mode)
    stamp = out_dir / "run.json"
    if stamp.is_file():
        earlier = json.loads(stamp.read_text())
        if earlier["key"] != key and not _resumable(earlier, cfg, mode):
            raise ValueError(f"{out_dir} holds a benchmark of another config or protocol; choose another --out")
    _write_json(stamp, {"key": key, "config": cfg.to_dict(), "protocol": protocol})
    present, absent = discover(root)
    if only:
        unknown = sorted(set(only) - set(present) - set(absent))
        if unknown:
            raise ValueError(f"unknown corpora {unknown}")
        absent = [c for c in absent if c in only]
        present = {c: p for c, p in present.items() if c in only}
    seed = cfg.train.seed
    ckpt_root = runs_dir() / "benchmark" / key

    plans: dict[str, tuple] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unmatched files are reported by `physioser corpora scan`
        from physioser.data import read_corpus

        for corpus, folder in present.items():
            resolved, data, spans = load_corpora(cfg, [corpus], {corpus: folder}, progress=False)
            n_read = len(read_corpus(corpus, folder))
            plans[corpus] = (resolved, data, _plan(corpus, data.rows, n_read, protocol, seed))
    units = [(c, f.name) for c, (_, _, plan) in plans.items() for f in plan.folds]
    held_out = list(present) if loco and len(present) > 1 else []
    units += [("loco", c) for c in held_out]
    done = {u for u in units if _unit_path(out_dir, *u).is_file()}
    bar = tqdm(total=len(units), initial=len(done), unit="fold", disable=not progress, desc="benchmark")
    finished = 0
    for corpus, (resolved, data, plan) in plans.items():
        for fold in plan.folds:
            path = _unit_path(out_dir, corpus, fold.name)
            if path.is_file():
                continue
            bar.set_description(f"{corpus} {fold.name}")
            metrics = _train_and_test(resolved, data, fold.train, fold.val, fold.test, ckpt_root / corpus / fold.name, adapt)
            _write_json(path, {"corpus": corpus, "fold": fold.name, "protocol": plan.protocol, **metrics, "ran": _ran()})
            bar.update(1)
            finished += 1
            if stop_after is not None and finished >= stop_after:
                bar.close()
                return {}
    if held_out:
        four = replace(cfg, classes=list(FOUR_CLASSES))
        resolved, data, spans = load_corpora(four, list(present), dict(present), progress=False)
        for corpus in held_out:
            path = _unit_path(out_dir, "loco", corpus)
            if path.is_file():
                continue
            bar.set_description(f"leave out {corpus}")
            others = [c for c in present if c != corpus]
            sub_spans = {c: spans[c] for c in others + [corpus]}
            (_, tr, va, tests), = fold_plan(data, sub_spans, others, test_corpus=corpus, seed=seed)
            metrics = _train_and_test(resolved, data, tr, va, tests[corpus], ckpt_root / "loco" / corpus, adapt)
            _write_json(path, {"corpus": corpus, "trained_on": others, **metrics, "ran": _ran()})
            bar.update(1)
            finished += 1
            if stop_after is not None and finished >= stop_after:
                bar.close()
                return {}
    bar.close()
    board = _leaderboard(cfg, protocol, adapt, out_dir, plans, absent, held_out)
    write_leaderboard(board, out_dir)
    return board


def _ran() -> dict:
    env = environment()
    return {k: env[k] for k in ("git", "hardware", "date")}


def _unit_path(out_dir: Path, corpus: str, fold: str) -> Path:
    return out_dir / "folds" / corpus / f"{fold}.json"


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def _leaderboard(cfg: Config, protocol: str, adapt: int | None, out_dir: Path, plans: dict, absent: list[str], held_out: list[str]) -> dict:
    from physioser.data import get_spec
    from physioser.data.emobox import published_figures

    published = published_figures()
    rows = []
    for corpus, (resolved, _, plan) in plans.items():
        folds = [json.loads(_unit_path(out_dir, corpus, f.name).read_text()) for f in plan.folds]
        strict = {m: _summary([f["strict"][m] for f in folds]) for m in ("ua", "wa", "macro_f1")}
        adapted = {m: _summary([f["adapted"][m] for f in folds]) for m in ("ua", "wa", "macro_f1")} if "adapted" in folds[0] else None
        rows.append({
            "corpus": corpus, "language": get_spec(corpus).language, "protocol": plan.protocol, "folds": len(folds),
            "classes": list(resolved.class_names), "strict": strict, "adapted": adapted, "comparison": plan.comparison, "exact": plan.exact,
            "emobox": published["corpora"].get(corpus, {}),
        })
    units = [json.loads(p.read_text()) for p in sorted((out_dir / "folds").glob("*/*.json"))]
    loco = []
    for corpus in held_out:
        unit = json.loads(_unit_path(out_dir, "loco", corpus).read_text())
        loco.append({"corpus": corpus, "trained_on": unit["trained_on"],
                     **{m: unit["strict"][m] for m in ("ua", "wa", "macro_f1")},
                     "adapted_ua": unit["adapted"]["ua"] if "adapted" in unit else None})
    return {
        "config": cfg.name, "protocol": protocol, "adapt": adapt, "corpora": rows, "absent": absent,
        "leave_one_corpus_out": loco, "emobox_source": published["source"], "emobox_models": published["models"],
        "environment": environment(),
        "trained": sorted({f"git {u['ran']['git'][:12]} on {u['ran']['hardware']}" for u in units if "ran" in u}),
    }


def _pct(summary: dict) -> str:
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def _emobox_cell(entry: dict) -> str:
    if not entry:
        return "—"
    ua = f"{entry['ua']:.2f}" + ("†" if entry.get("from") == "figure" else "") if "ua" in entry else "n/a"
    return f"{ua} / {entry['wa']:.2f}"


def write_leaderboard(board: dict, out_dir: str | Path) -> Path:
    """``leaderboard.json`` and ``leaderboard.md`` under ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    _write_json(out_dir / "leaderboard.json", board)
    env = board["environment"]
    models = board["emobox_models"]
    adapt = board.get("adapt")
    adapted_head = f" adapted UA (k={adapt}) |" if adapt else ""
    lines = [
        f"# Benchmark: {board['config']} on every corpus found (protocol `{board['protocol']}`)", "",
        f"Command: `{env['command']}` (git {env['git'][:12]}, {env['hardware']}, {env['date']}). "
        f"Folds trained with: {'; '.join(board['trained']) or 'the same'}.", "",
        "Ours: UA / WA / macro-F1 in %, mean ± std over the folds (scikit-learn), strict protocol (no "
        "adaptation to the test speaker)"
        + (f"; adapted: each test speaker's offset from {adapt} random unlabelled utterances of theirs" if adapt else "")
        + ". EmoBox: UA / WA in % as EmoBox publishes them for its own folds "
        f"({board['emobox_source']}); † = UA transcribed from EmoBox's figure, n/a = not published as text. "
        "The last column says whether the comparison is exact.", "",
        "| corpus | lang | folds | classes | UA | WA | macro-F1 |" + adapted_head + " "
        + " | ".join(f"EmoBox {m} UA / WA" for m in models) + " | comparison |",
        "|---|---|---|---|---|---|---|" + ("---|" if adapt else "") + "---|" * len(models) + "---|",
    ]
    for r in board["corpora"]:
        s = r["strict"]
        emobox = " | ".join(_emobox_cell(r["emobox"].get(m, {})) for m in models)
        adapted = f" {_pct(r['adapted']['ua'])} |" if adapt else ""
        lines.append(
            f"| {r['corpus']} | {r['language']} | {r['folds']} ({r['protocol']}) | {len(r['classes'])} | {_pct(s['ua'])} | "
            f"{_pct(s['wa'])} | {_pct(s['macro_f1'])} |{adapted} {emobox} | {r['comparison']} |"
        )
    if board["corpora"]:
        mean = np.mean([r["strict"]["ua"]["mean"] for r in board["corpora"]])
        line = f"Mean UA over the {len(board['corpora'])} corpora: {100 * mean:.1f} %"
        if adapt:
            line += f" strict, {100 * np.mean([r['adapted']['ua']['mean'] for r in board['corpora']]):.1f} % adapted"
        lines += ["", line + "."]
    lines += ["", "Absent under the root (listed, not failed): " + (", ".join(board["absent"]) or "none") + ".", ""]
    if board["leave_one_corpus_out"]:
        lines += ["## Leave one corpus out (four classes: neutral, happy, angry, sad)", "",
                  "Trained on every other corpus found, tested on all of the held-out one (a language or "
                  "corpus the model never heard).", "",
                  "| held-out corpus | trained on | UA | WA | macro-F1 |" + adapted_head,
                  "|---|---|---|---|---|" + ("---|" if adapt else "")]
        for r in board["leave_one_corpus_out"]:
            adapted = f" {100 * r['adapted_ua']:.1f} |" if adapt else ""
            lines.append(f"| {r['corpus']} | {', '.join(r['trained_on'])} | {100 * r['ua']:.1f} | {100 * r['wa']:.1f} | "
                         f"{100 * r['macro_f1']:.1f} |{adapted}")
        mean = np.mean([r["ua"] for r in board["leave_one_corpus_out"]])
        line = f"Mean leave-one-corpus-out UA: {100 * mean:.1f} %"
        if adapt:
            line += f" strict, {100 * np.mean([r['adapted_ua'] for r in board['leave_one_corpus_out']]):.1f} % adapted"
        lines += ["", line + ".", ""]
    path = out_dir / "leaderboard.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    def benchmark_command(
        root: Path = typer.Option(None, "--root", help="folder holding the corpora, one sub-folder each (default: $PHYSIOSER_CORPORA or ../shared/corpora)"),
        config: Path = typer.Option(None, "--config", help="experiment YAML (configs/*.yaml)"),
        override: list[str] = typer.Option([], "--set", "-o", help="dotted config override, e.g. train.epochs=20 (repeatable)"),
        protocol: str = typer.Option("emobox", "--protocol", help=f"one of {', '.join(PROTOCOLS)}"),
        only: list[str] = typer.Option([], "--corpus", "-c", help="only these corpora (repeatable; default: every one found)"),
        loco: bool = typer.Option(True, "--loco/--no-loco", help="also leave each corpus out (four classes)"),
        out: Path = typer.Option(None, "--out", help="results folder (default: eval/results/benchmark-<config name>-<protocol>)"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
        adapt: int = typer.Option(None, "--adapt", help="also test adapted to each test speaker from K unlabelled utterances (configs with model.statistics)"),
    ) -> None:
        """Train and test a config on every corpus found under --root; write one leaderboard beside EmoBox's."""
        from physioser.model.config import ConfigError, load_config

        if protocol not in PROTOCOLS:
            raise typer.BadParameter(f"{protocol!r} is not one of {', '.join(PROTOCOLS)}", param_hint="--protocol")
        try:
            cfg = load_config(config, override)
        except (ConfigError, OSError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--config/--set") from exc
        out_dir = out or RESULTS_DIR / (f"benchmark-{cfg.name}-{protocol}" + (f"-adapt{adapt}" if adapt else ""))
        try:
            board = run_benchmark(cfg, root or corpora_root(), out_dir, protocol=protocol, only=list(only) or None, loco=loco, progress=not quiet, adapt=adapt)
        except (FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from exc
        for r in board["corpora"]:
            adapted = f", adapted {_pct(r['adapted']['ua'])}" if r["adapted"] else ""
            typer.echo(f"{r['corpus']}: UA {_pct(r['strict']['ua'])}{adapted} ({r['folds']} {r['protocol']} folds; {r['comparison']})")
        if board["absent"]:
            typer.echo(f"absent: {', '.join(board['absent'])}")
        typer.echo(f"wrote {out_dir / 'leaderboard.md'}")
