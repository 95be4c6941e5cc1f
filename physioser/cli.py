"""The `physioser` command. Each area registers its own commands; this module only wires them.

Commands are imported when they run, not when the command starts: ``physioser --help`` and the
core commands (``predict``, ``demo``, ``ros``) never import the training layer's PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

COMMANDS = {
    # name: (module whose register(app) adds it, the one-line help `physioser --help` shows)
    "predict": ("physioser.runtime.cli", "Classify the emotion of the speech in audio files: label, confidence, probabilities, latency (\"no speech\" without)."),
    "demo": ("physioser.runtime.cli", "Stream an audio file (or a synthesised utterance) through the Streamer and show live estimates."),
    "ros": ("physioser.ros.cli", "ROS 2: replay recorded bags through the emotion node's logic; play audio onto a topic."),
    "export": ("physioser.export", "Export a trained model to a model bundle (ONNX graph waveform -> logits/probs/embedding, metadata, model card, SHA256SUMS) and verify it."),
    "train": ("physioser.train", "Train PhysioSER (or a baseline config) on cached features of one or more corpora."),
    "eval": ("physioser.evaluate", "Train and test a config under a speaker-independent protocol; write eval/results/<run>/."),
    "robustness": ("physioser.conditions.evaluate", "UA of the shipped model (or --model) on its held-out speakers under listening conditions."),
    "report": ("physioser.evaluate", "Gather eval/results/*/results.json into eval/results/REPORT.md with a UA plot."),
    "benchmark": ("physioser.benchmark", "Train and test a config on every corpus found under --root; write one leaderboard beside EmoBox's."),
    "corpora": ("physioser.data.cli", "Corpus registry, data checks and fold protocols."),
    "features": ("physioser.backbones.cli", "Frozen-backbone features and their on-disk cache."),
    "vap": ("physioser.vap.cli", "The physiology-informed VAP quartet {M, ρ, f_inst, τ_g}."),
    "experiments": ("physioser.experiments.cli", "Baselines, linear probes, sweeps and analyses."),
}


def open_engine(model: str | None, profile: str | None, backend: str = "auto"):
    """The model opener of ``predict``/``demo``: the training layer's where it is installed (it also
    runs training checkpoints and builds the default bundle on first use), else the core's."""
    try:
        from physioser.export import open_engine as training_layer_open
    except ImportError:  # a core-only install: bundles and .onnx graphs
        from physioser.runtime.cli import core_engine

        return core_engine(model, profile, backend)
    return training_layer_open(model, profile, backend=backend)


def load_command(name: str) -> Any:
    """Import the module of command ``name`` and return its command object."""
    module = importlib.import_module(COMMANDS[name][0])
    holder = typer.Typer()
    if module.__name__ == "physioser.runtime.cli":
        module.register(holder, open_engine=open_engine)
    else:
        module.register(holder)
    return typer.main.get_group(holder).commands[name]


class LazyGroup(TyperGroup):
    """A command group that imports a command's module only when that command runs."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, cmd_name: str):
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx, formatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


app = typer.Typer(cls=LazyGroup, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


@app.callback()
def physioser_command() -> None:
    """Embedded speech emotion recognition for robots."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
