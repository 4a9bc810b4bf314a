"""What every command shares: one-line errors and settings loading."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from slmkit.errors import SlmkitError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


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


def engine_options(func: F) -> F:
    """--parallel, --ctx-size and --threads, shared by serve and run."""
    options = [
        click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [all cores]."),
        click.option("--ctx-size", type=click.IntRange(min=64), default=None, help="Context per slot [2048]."),
        click.option("--parallel", type=click.IntRange(min=1, max=256), default=None, help="Slots [4]."),
    ]
    for option in options:
        func = option(func)
    return func
