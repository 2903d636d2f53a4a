"""The ``markov-migration`` command: one typer app, commands from per-group modules."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from markov_migration import __version__
from markov_migration.cli import _common, backtest, data, demo, fit, project, results, sbc


class _App(TyperGroup):
    """The top-level command: every usage error of every command is one line on stderr.

    Click parses the global options in the group's ``make_context`` and the
    command's options (and resolves the command name) in the group's ``invoke``,
    so wrapping these two covers the usage errors of all commands.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _common.usage_errors():
            return super().make_context(*args, **kwargs)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[_common.COMMAND_KEY] = name  # for errors Click raises without a context
        return name, command, rest

    def invoke(self, ctx: Any) -> Any:
        with _common.usage_errors(ctx):
            return super().invoke(ctx)


app = typer.Typer(
    cls=_App,
    name="markov-migration",
    help="Bayesian multi-state Markov models of migration panels: simulate, validate, fit, "
    "check, summarize and project returnees and diaspora.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"markov-migration {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Fit and forecast multi-state migration models. Exit codes: 0 ok, 1 a check failed, 2 bad input."""
    _common.DEBUG["on"] = debug


app.command("simulate")(data.simulate)
app.command("validate")(data.validate)
app.command("fit")(fit.fit)
app.command("demo")(demo.demo)
app.command("project")(project.project)
app.command("summarize")(results.summarize)
app.command("check")(results.check)
app.command("compare")(results.compare)
app.command("reproduce")(results.reproduce)
app.command("backtest")(backtest.backtest)
app.command("sbc")(sbc.sbc)


def main() -> None:
    """Entry point of the console script.

    Standard output that cannot be written (``> /dev/full``, a closed pipe) is bad
    output like any other: one line on stderr, exit 2.
    """
    import os
    import sys

    code: int | str | None = 0
    try:
        app()
    except SystemExit as done:  # typer.Exit, --help and --version end here
        code = done.code
    try:
        sys.stdout.flush()
    except OSError as err:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"error: cannot write to standard output ({err.strerror or err})\n")
        # the interpreter flushes stdout again at exit: point it at /dev/null first
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 2
    sys.exit(code)
