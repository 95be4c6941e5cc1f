"""``python -m physioser.experiments ...`` — the experiments commands without the main CLI."""

from physioser.experiments.cli import build_app

build_app()(prog_name="python -m physioser.experiments")
