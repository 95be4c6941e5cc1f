"""torchrun entry: ``torchrun --nproc_per_node N -m physioser.distributed <physioser train arguments>``.

Kept apart from :mod:`physioser.distributed`, which :mod:`physioser.train` imports: the launcher
runs the train command, the training loop asks the process group for its context.
"""

from __future__ import annotations

import sys

import typer

from physioser.distributed import init_from_env, shutdown
from physioser.train import register


def main(argv: list[str] | None = None) -> None:
    """The arguments of ``physioser train``, one rank per process."""
    ctx = init_from_env()
    app = typer.Typer()
    register(app)  # a typer app of one command runs it directly (no sub-command name)
    args = list(argv if argv is not None else sys.argv[1:])
    try:
        app(args + ([] if ctx.is_main else ["--quiet"]), prog_name="physioser.distributed", standalone_mode=False)
    finally:
        shutdown()


if __name__ == "__main__":
    main()
