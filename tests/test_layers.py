"""The deployable core imports neither torch nor the training layer."""

from __future__ import annotations

import subprocess
import sys

CORE = (
    "physioser.paths",
    "physioser.audio",
    "physioser.runtime",
    "physioser.runtime.contract",
    "physioser.runtime.integrity",
    "physioser.runtime.cli",
    "physioser.ros.core",
    "physioser.ros.messages",
    "physioser.ros.replay",
    "physioser.ros.interfaces",
)
ABOVE = ("torch", "physioser.model", "physioser.export", "physioser.train", "physioser.evaluate", "physioser.features")


def test_core_imports_no_torch_nor_training_code() -> None:
    code = ("import importlib, json, sys\n"
            f"for name in {CORE!r}: importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in {ABOVE!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"the core imported {out.stdout.strip()}"
