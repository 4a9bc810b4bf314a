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
    from rich.markup import escape

    # escaped: "pip install 'slmkit[mlx]'" is text, not a markup tag
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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
