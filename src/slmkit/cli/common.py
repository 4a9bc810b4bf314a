"""What every command shares: one-line errors and settings loading."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from slmkit.errors import SlmkitError

F = TypeVar("F", bound=Callable[..., Any])



def _console(stderr: bool = False) -> Console:
    """Text is never wrapped by us (a terminal wraps by itself, a pipe gets whole lines); tables
    written to a pipe get 200 columns instead of rich's 80, unless COLUMNS says otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, soft_wrap=True, width=200 if piped else None)


console = _console()
err_console = _console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """One line on stderr; ``message`` prints literally (``[convert]`` is not markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def quiet_llama(verbose: bool = False) -> None:
    """llama.cpp's own log lines (per-tensor notes, n_ctx notices) go to $SLM_HOME/logs/llama.log,
    not over progress bars and answers; ``verbose`` shows them on stderr as well."""
    import logging

    from slmkit.settings import load_settings

    logger = logging.getLogger("slmkit.llama")
    if verbose:
        logger.setLevel(logging.INFO)
        return
    logger.propagate = False
    try:
        folder = load_settings().store.home / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(folder / "llama.log", encoding="utf-8")
    except (OSError, ValueError):
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def busy_hint(threads: int | None) -> None:
    """One line when the machine is busy at start: llama.cpp's threads wait for each other at
    every step, so on shared cores fewer threads than cores can be much faster."""
    from slmkit.catalog.hardware import load_average, physical_cores

    cores, load = physical_cores(), load_average()
    if load > cores:
        used = threads or cores
        err_console.print(f"note: this machine is busy (load {load:.1f} on {cores} cores); {used} thread(s) will "
                          f"share them, and --threads {max(1, cores // 2)} may be faster", highlight=False)


def handle_errors(func: F) -> F:
    """Turn expected errors into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SlmkitError as exc:
            fail(exc.message)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)
        except OSError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


class Aliased(click.Option):
    """An option whose names after the first are old spellings: still accepted, not shown in --help."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts = self.opts
        self.opts = opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts


def engine_options(func: F) -> F:
    """--parallel, --ctx-size and --threads, shared by serve and run."""
    options = [
        click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [the physical cores]."),
        click.option("--ctx-size", type=click.IntRange(min=64), default=None, help="Context per slot [2048]."),
        click.option("--parallel", type=click.IntRange(min=1, max=256), default=None, help="Slots [4]."),
    ]
    for option in options:
        func = option(func)
    return func


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """'2GiB', '800MB', '1048576' -> bytes; InvalidRequest on anything else."""
    import re

    from slmkit.errors import InvalidRequest

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _BYTE_UNITS:
        raise InvalidRequest(f"not a size: {text!r} (use e.g. 2GiB or 800MB)")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])
