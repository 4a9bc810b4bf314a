"""The `slm` entry point: one group, one module per command group."""

from __future__ import annotations

import logging

import click

from slmkit import __version__
from slmkit.cli.run import run
from slmkit.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slm")
@click.option("--log-level", default="warning", envvar="SLM_LOG_LEVEL", hidden=True)
def cli(log_level: str) -> None:
    """slmkit: choose, get, optimize, serve and measure small language models."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")


cli.add_command(serve)
cli.add_command(run)


def main() -> None:
    cli()
