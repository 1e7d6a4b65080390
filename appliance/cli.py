"""The ``visionality`` command. Thin click commands; each area keeps its own group module."""

from __future__ import annotations

import click

from . import __version__
from .errors import VisionalityError
from .home import Home
from .ledger.cli import ledger_group

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="visionality")
@click.option(
    "--home",
    "home_dir",
    envvar="VISIONALITY_HOME",
    type=click.Path(file_okay=False),
    default=None,
    help="Deployment home (config, keys, CA, ledger). Default: $VISIONALITY_HOME or ~/.visionality.",
)
@click.pass_context
def cli(ctx: click.Context, home_dir: str | None) -> None:
    """Visionality: reconcile every outbound LLM call to person x project x task x tokens."""
    ctx.obj = Home.locate(home_dir)


cli.add_command(ledger_group)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except VisionalityError as e:  # pragma: no cover - commands convert their own errors
        raise SystemExit(f"error: {e.diagnostics()}") from e
