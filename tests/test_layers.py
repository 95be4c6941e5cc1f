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
    "physioser.runtime.voice",
    "physioser.runtime.gate",
    "physioser.runtime.streamer",
    "physioser.runtime.cli",
    "physioser.ros.core",
    "physioser.ros.messages",
    "physioser.ros.replay",
    "physioser.ros.interfaces",
    "physioser.ros.parameters",
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


def _import_graph() -> dict[str, set[str]]:
    """{module: physioser modules it imports anywhere in its source (function-level imports too)}."""
    import ast
    from pathlib import Path

    import physioser

    root = Path(physioser.__file__).parent
    modules = {".".join(f.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): f
               for f in root.rglob("*.py")}

    def owner(name: str) -> str | None:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules and name != "physioser" else None

    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.update([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
        graph[name] = {o for t in targets if t.startswith("physioser") and (o := owner(t)) and o != name}
    return graph


def test_no_import_circles() -> None:
    graph = _import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for nxt in graph[module]:
            assert nxt not in path, "import circle: " + " -> ".join(path[path.index(nxt):] + [nxt])
            if nxt not in done:
                visit(nxt, path + [nxt])
        done.add(module)

    for module in graph:
        visit(module, [module])
