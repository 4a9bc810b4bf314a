"""The `slm` entry point: one group, one module per command group."""

from __future__ import annotations

import logging

import click

from slmkit import __version__
from slmkit.cli.bench import bench
from slmkit.cli.convert import convert
from slmkit.cli.deploy import deploy
from slmkit.cli.eval import eval_command
from slmkit.cli.keys import keys
from slmkit.cli.models import models, recommend_cmd
from slmkit.cli.ps import ps, stop
from slmkit.cli.quantize import quantize
from slmkit.cli.run import run
from slmkit.cli.serve import serve
from slmkit.cli.store import cp, create, list_cmd, pull, rm, show


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slm")
@click.option("--log-level", default="warning", envvar="SLM_LOG_LEVEL", hidden=True)
def cli(log_level: str) -> None:
    """slmkit: choose, get, optimize, serve and measure small language models."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from slmkit.cli.common import fail, warn
    from slmkit.cli.env import check_settings, unknown_variables
    from slmkit.errors import SlmkitError

    for name in unknown_variables():
        warn(f"{name} is not a setting slmkit knows; it is ignored (see docs/operations.md for the SLM_ variables)")
    try:
        check_settings()
    except SlmkitError as exc:
        fail(exc.message)


cli.add_command(serve)
cli.add_command(run)
cli.add_command(ps)
cli.add_command(stop)
cli.add_command(keys)
cli.add_command(models)
cli.add_command(recommend_cmd)
for command in (pull, list_cmd, show, rm, cp, create, quantize, convert):
    cli.add_command(command)
cli.add_command(bench)
cli.add_command(eval_command)
cli.add_command(deploy)


def main() -> None:
    cli(prog_name="slm")
