"""``physioser features ...``: fill the feature cache of a corpus with a frozen backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    features = typer.Typer(no_args_is_help=True, help="Frozen-backbone features and their on-disk cache.")

    @features.command("extract")
    def extract(
        corpus: str = typer.Option(..., help="corpus name in the registry (physioser.data.CORPORA)"),
        root: Path = typer.Option(..., help="folder of the corpus"),
        backbone: str = typer.Option("whisper-tiny.en", help="backbone name (see physioser.backbones.BACKBONES)"),
        checkpoint: Optional[Path] = typer.Option(None, help="checkpoint overriding the backbone's default weights"),
        cache_dir: Optional[Path] = typer.Option(None, help="cache root (default $PHYSIOSER_CACHE or ~/.cache/physioser)"),
        threads: int = typer.Option(1, help="torch CPU threads"),
        device: str = typer.Option("cpu", help="torch device of the backbone (cpu, cuda, cuda:N)"),
        limit: Optional[int] = typer.Option(None, help="only the first N files (smoke runs)"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="also write the summary as JSON here"),
    ) -> None:
        """Extract and cache the hidden states of every file of a corpus (a second run is a cache hit)."""
        import torch

        from physioser.backbones import FeatureCache, build_backbone
        from physioser.data import read_corpus

        if threads < 1:
            raise typer.BadParameter(f"must be >= 1, got {threads}", param_hint="--threads")
        torch.set_num_threads(threads)
        try:
            rows = read_corpus(corpus, root)
        except (KeyError, ValueError) as exc:  # unknown corpus name, CorpusLayoutError
            raise typer.BadParameter(str(exc.args[0] if exc.args else exc), param_hint="--corpus/--root") from exc
        if limit is not None:
            rows = rows[:limit]
        try:
            model = build_backbone(backbone, checkpoint)
        except (KeyError, ValueError) as exc:  # unknown backbone name, CheckpointError
            raise typer.BadParameter(str(exc.args[0] if exc.args else exc), param_hint="--backbone/--checkpoint") from exc
        try:
            model.to(torch.device(device))
        except (RuntimeError, AssertionError) as exc:  # malformed device string, no CUDA build or device
            raise typer.BadParameter(f"cannot use device {device!r}: {exc}", param_hint="--device") from exc
        cache = FeatureCache(cache_dir)
        report = cache.extract(rows, model, on_error="skip")
        summary = {"corpus": corpus, "backbone": backbone, "threads": threads, "device": device, "cache": str(cache.backbone_dir(model)), **report.as_dict()}
        typer.echo(
            f"{corpus} × {backbone}: {report.files} files ({report.hits} cache hits, {report.computed} computed, "
            f"{len(report.failures)} failed), {report.audio_seconds:.1f} s of audio in {report.wall_seconds:.1f} s "
            f"= {report.files_per_second:.1f} files/s, {report.audio_seconds_per_second:.1f}× real time "
            f"on {threads} thread(s); cache {cache.backbone_dir(model)}"
        )
        if report.warnings:
            typer.echo(f"{len(report.warnings)} audio warnings while loading, e.g. {report.warnings[0]}")
        for failure in report.failures:
            typer.echo(f"failed: {failure}", err=True)
        if json_out is not None:
            json_out.write_text(json.dumps(summary, indent=1) + "\n")
        if report.failures:
            raise typer.Exit(code=1)

    app.add_typer(features, name="features")
