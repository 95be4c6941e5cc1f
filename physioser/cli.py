"""The `physioser` command. Each area registers its own commands; this module only wires them."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Embedded speech emotion recognition for robots.")


def _register_all() -> None:
    from physioser.backbones import cli as backbones_cli
    from physioser.data import cli as data_cli
    from physioser.experiments import cli as experiments_cli
    from physioser.ros import cli as ros_cli
    from physioser.runtime import cli as runtime_cli
    from physioser.vap import cli as vap_cli
    from physioser import benchmark, evaluate, export, train

    for module in (data_cli, vap_cli, backbones_cli, train, evaluate, benchmark, export, runtime_cli, ros_cli, experiments_cli):
        module.register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
