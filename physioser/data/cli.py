"""`physioser corpora ...`: list the registry, scan a corpus folder, generate fold protocols."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

corpora_app = typer.Typer(no_args_is_help=True, help="Corpus registry, data checks and fold protocols.")


def _console(stderr: bool = False) -> Console:
    # made per call so that the terminal width (COLUMNS) is read when the command runs
    return Console(stderr=stderr)


def _fail(message: str) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=1)


@corpora_app.command("list")
def list_command(
    labels: bool = typer.Option(False, "--labels", help="Also print every corpus's code -> canonical mapping table."),
) -> None:
    """Registered corpora: name, language, classes, fold scheme and the layout each reader expects."""
    from physioser.data import CORPORA

    console = _console()
    table = Table(title=f"{len(CORPORA)} corpora, {len({s.language for s in CORPORA.values()})} languages", show_lines=True)
    for column in ("corpus", "lang", "classes (canonical)", "folds", "expected layout"):
        table.add_column(column, overflow="fold")
    for spec in CORPORA.values():
        table.add_row(spec.name, spec.language, ", ".join(spec.class_set), spec.folds, escape(spec.layout))
    console.print(table)
    if labels:
        mapping = Table(title="label codes as published -> canonical emotion")
        mapping.add_column("corpus")
        mapping.add_column("mapping", overflow="fold")
        for spec in CORPORA.values():
            mapping.add_row(spec.name, escape(", ".join(f"{code}={canonical}" for code, canonical in spec.labels.items())))
        console.print(mapping)


def _counts_table(title: str, counts: dict) -> Table:
    table = Table(title=title)
    table.add_column("value")
    table.add_column("files", justify="right")
    for key, value in sorted(counts.items()):
        table.add_row(escape(str(key)), str(value))
    return table


@corpora_app.command("scan")
def scan_command(
    name: str = typer.Argument(..., help="Corpus name (see `physioser corpora list`)."),
    root: Path = typer.Argument(..., help="The corpus folder, as published."),
    decode: bool = typer.Option(False, "--decode", help="Decode and validate every file (slower; reports clipping and DC offset)."),
    json_out: Path = typer.Option(None, "--json", help="Also write the full report as JSON here."),
    show: int = typer.Option(20, "--show", help="How many problem paths to print per kind."),
) -> None:
    """Counts per label and speaker, durations, unreadable files, duplicates and unmatched names."""
    from physioser.data import CorpusLayoutError
    from physioser.data.scan import NEAR_DUPLICATE_LSB, scan_corpus

    try:
        report = scan_corpus(name, root, decode=decode)
    except (CorpusLayoutError, KeyError) as error:
        _fail(str(error).strip("'\""))
        return
    console = _console()
    console.print(f"[bold]{report.corpus}[/] at {escape(str(root))}: {len(report.rows)} rows, {len(report.speaker_counts)} speakers")
    console.print(_counts_table("labels (as published)", report.label_counts))
    console.print(_counts_table("canonical", report.canonical_counts))
    console.print(_counts_table("speakers", report.speaker_counts))
    stats = report.duration_stats()
    if stats:
        console.print(
            f"durations: {stats['files']} files, {stats['total_hours']:.2f} h, min {stats['min_s']:.2f} s, "
            f"median {stats['median_s']:.2f} s, mean {stats['mean_s']:.2f} s, max {stats['max_s']:.2f} s"
        )
    console.print(f"sample rates: {dict(report.sample_rates)}; channels: {dict(report.channels)}")
    problems = [
        ("unreadable or invalid files", [f"{p}: {e}" for p, e in report.unreadable]),
        ("shorter than the minimum duration", [f"{p}: {s:.3f} s" for p, s in report.too_short]),
        ("audio warnings", [f"{p}: {w}" for p, w in report.audio_warnings] if report.decoded else None),
        ("byte-identical duplicates", [" == ".join(str(p) for p in group) for group in report.duplicates]),
        (
            f"near-identical duplicates (same length, samples within {NEAR_DUPLICATE_LSB} LSB)",
            [" ~= ".join(str(p) for p in group) for group in report.near_duplicates],
        ),
        ("files that match no pattern", [f"{u.path}: {u.reason}" for u in report.unmatched]),
    ]
    for title, lines in problems:
        if lines is None:
            console.print(f"[bold]{title}[/]: not looked for (headers only; --decode decodes every file and "
                          "reports clipping, DC offset and channels that cancel)")
            continue
        console.print(f"[bold]{title}[/]: {len(lines)}")
        for line in lines[:show]:
            console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
        if len(lines) > show:
            console.print(f"  … and {len(lines) - show} more (see --json)")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        console.print(f"report written to {json_out}")


@corpora_app.command("folds")
def folds_command(
    name: str = typer.Argument(..., help="Corpus name."),
    root: Path = typer.Argument(..., help="The corpus folder."),
    out: Path = typer.Option(None, "--out", help="YAML file to write (default: physioser/data/protocols/<CORPUS>.yaml)."),
    scheme: str = typer.Option(None, "--scheme", help="Override the corpus's fold scheme."),
    n_folds: int = typer.Option(None, "--folds", help="Speaker folds (default 5; leave-one-speaker-out for ≤ 6 speakers)."),
    n_sentence_folds: int = typer.Option(None, "--sentence-folds", help="Sentence groups (speaker_sentence scheme; default 5)."),
    val_fraction: float = typer.Option(0.15, "--val-fraction", help="Share of training speakers held out for validation."),
    seed: int = typer.Option(0, "--seed"),
    check: bool = typer.Option(False, "--check", help="Do not write: check that the saved protocol reproduces on ROOT."),
) -> None:
    """Generate and save the fold protocol of a corpus (or --check a saved one against ROOT)."""
    import warnings

    from physioser.data import PROTOCOL_DIR, CorpusLayoutError, ProtocolError, get_spec, load_protocol, make_protocol, read_corpus

    try:
        spec = get_spec(name)
        path = out or PROTOCOL_DIR / f"{spec.name}.yaml"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = read_corpus(spec.name, root)
        if check:
            protocol = load_protocol(path)
            if len(rows) != protocol.n_rows:
                raise ProtocolError(f"{path} was made on {protocol.n_rows} rows, {root} gives {len(rows)}")
            folds = protocol.apply(rows)
        else:
            protocol = make_protocol(
                rows, spec.name, scheme=scheme, n_folds=n_folds, n_sentence_folds=n_sentence_folds,
                val_fraction=val_fraction, seed=seed,
            )
            folds = protocol.apply(rows)
            protocol.save(path)
    except (CorpusLayoutError, ProtocolError, KeyError) as error:
        _fail(str(error).strip("'\""))
        return
    console = _console()
    table = Table(title=f"{spec.name}: {protocol.scheme}, {len(folds)} folds, disjoint on {', '.join(protocol.disjoint) or 'official split'}")
    for column in ("fold", "train", "val", "test", "discarded", "test selectors"):
        table.add_column(column, overflow="fold")
    for fold, fold_spec in zip(folds, protocol.folds):
        selectors = escape("; ".join(f"{k}: {', '.join(v)}" for k, v in fold_spec.test.items()))
        table.add_row(fold.name, str(len(fold.train)), str(len(fold.val)), str(len(fold.test)), str(len(fold.discarded)), selectors)
    console.print(table)
    console.print(f"{'checked' if check else 'written'}: {path}")


@corpora_app.command("emobox-import")
def emobox_import_command(
    folder: Path = typer.Argument(..., help="EmoBox's data/<dataset>/ folder (fold_<k>/*.jsonl, label map, data.seg.wrd.stm)."),
    corpus: str = typer.Option(..., "--corpus", help="The registry's name of the corpus."),
    source: str = typer.Option(..., "--source", help="Where the folder comes from, e.g. emo-box/EmoBox@<commit>."),
    note: list[str] = typer.Option([], "--note", help="A note stored with the protocol (repeatable)."),
    out: Path = typer.Option(None, "--out", help="YAML to write (default: physioser/data/protocols/emobox/<CORPUS>.yaml)."),
) -> None:
    """Convert EmoBox's fold files of one corpus into a compact protocol (speaker or utterance key -> fold)."""
    from physioser.data import ProtocolError
    from physioser.data.emobox import EMOBOX_DIR, convert

    try:
        protocol = convert(folder, corpus, source=source, notes=note)
    except (ProtocolError, KeyError) as error:
        _fail(str(error).strip("'\""))
        return
    path = protocol.save(out or EMOBOX_DIR / f"{protocol.corpus}.yaml")
    _console().print(
        f"{protocol.corpus}: {len(protocol.folds)} EmoBox fold(s), {protocol.split} split, "
        f"{sum(protocol.label_counts.values())} utterances, speaker-independent: {protocol.speaker_independent}; written: {path}"
    )


@corpora_app.command("emobox-check")
def emobox_check_command(
    name: str = typer.Argument(..., help="Corpus name."),
    root: Path = typer.Argument(..., help="The corpus folder."),
    protocol_path: Path = typer.Option(None, "--protocol", help="EmoBox protocol YAML (default: the committed one)."),
    show: int = typer.Option(20, "--show", help="How many differences to print per kind."),
) -> None:
    """Check a corpus folder against EmoBox's folds: every EmoBox utterance found, nothing extra, labels agree."""
    import warnings

    from physioser.data import CorpusLayoutError, ProtocolError, read_corpus
    from physioser.data.emobox import check, load_emobox

    try:
        protocol = load_emobox(protocol_path or name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = read_corpus(protocol.corpus, root)
    except (CorpusLayoutError, ProtocolError, KeyError) as error:
        _fail(str(error).strip("'\""))
        return
    result = check(protocol, rows)
    console = _console()
    console.print(escape(result.summary()), highlight=False)
    for title, items in (("missing", result.missing), ("extra", result.extra), ("label differs", result.label_mismatch)):
        for line in items[:show]:
            console.print(f"  {title}: {escape(line)}", highlight=False, soft_wrap=True)
    if not result.exact:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(corpora_app, name="corpora")
