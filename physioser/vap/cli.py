"""`physioser vap ...`: look at the VAP quartet."""

from __future__ import annotations

from pathlib import Path

import typer

from physioser.vap.config import VAPConfig


def register(app: typer.Typer) -> None:
    vap = typer.Typer(no_args_is_help=True, help="The physiology-informed VAP quartet {M, ρ, f_inst, τ_g}.")

    @vap.command("plot")
    def plot(
        file: Path = typer.Argument(..., help="audio file (wav/flac/ogg; resampled to 16 kHz mono)"),
        output: Path = typer.Option(..., "-o", "--output", help="figure to write (.png, .pdf, .svg)"),
        pooling: str = typer.Option("mel", help="band pooling: mel, erb or none (FFT bins)"),
        bands: int = typer.Option(64, help="number of mel/ERB bands"),
        group_delay: str = typer.Option("minphase", help="τ_g definition: minphase, plain or modified"),
        normalised: bool = typer.Option(False, "--normalised", help="show the normalised quartet the encoder sees"),
        start: float = typer.Option(0.0, help="start of the excerpt (s)"),
        duration: float = typer.Option(0.0, help="length of the excerpt (s); 0 = to the end"),
    ) -> None:
        """Plot the four components of FILE as aligned spectrogram panels."""
        import math

        from physioser.audio import AudioError, load_audio

        for option, value in (("--start", start), ("--duration", duration)):
            if not math.isfinite(value) or value < 0:
                raise typer.BadParameter(f"must be a finite number >= 0, got {value}", param_hint=option)
        from physioser.vap.plot import plot_quartet

        try:
            config = VAPConfig(pooling=pooling, n_bands=bands, group_delay=group_delay)
            x = load_audio(file, min_seconds=config.min_seconds)
            first = int(start * config.sample_rate)
            last = len(x) if duration <= 0 else first + int(duration * config.sample_rate)
            excerpt = x[first:last]
            if len(excerpt) < config.min_samples:
                raise AudioError(f"{file}: excerpt {start:.2f}+{duration:.2f} s holds {len(excerpt) / config.sample_rate:.3f} s "
                                 f"of audio; needs at least {config.min_seconds} s")
            path = plot_quartet(excerpt, output, config=config, normalised=normalised, title=file.name)
        except (AudioError, ValueError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from error
        typer.echo(f"wrote {path}")

    app.add_typer(vap, name="vap")
