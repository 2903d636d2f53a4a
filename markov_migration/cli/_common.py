"""Shared pieces of the command line: error handling, consoles, option types."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

#: Set by the ``--debug`` global option: show tracebacks instead of one line.
DEBUG = {"on": False}

console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(code=code)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn bad input into one stderr line and exit code 2 (traceback with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from markov_migration.errors import InputError

        try:
            return func(*args, **kwargs)
        except InputError as err:
            if DEBUG["on"]:
                raise
            raise fail(str(err)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(code=130) from None

    return wrapper


def command_line() -> str:
    """The command line that started this process (recorded in output files)."""
    return " ".join(["markov-migration", *sys.argv[1:]])
