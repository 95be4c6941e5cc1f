"""The deployable core imports neither torch nor the training layer."""

from __future__ import annotations

import subprocess
import sys

CORE = (
    "physioser.paths",
    "physioser.audio",
    "physioser.synthesis",
    "physioser.runtime",
    "physioser.runtime.contract",
    "physioser.runtime.integrity",
    "physioser.runtime.graph",
    "physioser.runtime.bundle",
    "physioser.runtime.adaptation",
    "physioser.runtime.gate",
    "physioser.runtime.streamer",
    "physioser.runtime.cli",
    "physioser.ros.core",
    "physioser.ros.messages",
    "physioser.ros.replay",
    "physioser.ros.interfaces",
)
ABOVE = ("torch", "onnx", "physioser.model", "physioser.export", "physioser.train", "physioser.evaluate", "physioser.features")


def test_core_imports_no_torch_nor_training_code() -> None:
    code = ("import importlib, json, sys\n"
            f"for name in {CORE!r}: importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in {ABOVE!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"the core imported {out.stdout.strip()}"


def test_help_lists_every_command_without_importing_torch() -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom physioser.cli import app\n"
            "result = CliRunner().invoke(app, ['--help'])\nprint(result.exit_code, 'torch' in sys.modules)\nprint(result.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("0 False"), out
    from physioser.cli import COMMANDS

    assert all(f"  {name} " in out for name in COMMANDS)


def test_the_help_table_says_what_each_command_says() -> None:
    from physioser.cli import COMMANDS, load_command

    for name, (_, short) in COMMANDS.items():
        assert load_command(name).get_short_help_str(limit=1000) == short, name
