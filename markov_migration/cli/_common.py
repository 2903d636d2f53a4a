"""Shared pieces of the command line: error handling, consoles, option types."""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from rich.console import Console

try:  # typer >= 0.2x ships its own copy of Click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on Click itself
    from click import exceptions as click_exceptions

# Options with a fixed set of values are str enums: ``--help`` lists the values and Click
# refuses a typo as a usage error (one line, exit 2). The values are spelled here rather
# than imported so that the command line starts without importing the layers below;
# tests/test_cli_data.py checks them against the lists those layers accept.


class OutputFormat(enum.StrEnum):
    """``--format`` of ``summarize`` and ``compare``."""

    table = "table"
    csv = "csv"
    json = "json"


class ReportFormat(enum.StrEnum):
    """``--format`` of ``validate``."""

    table = "table"
    json = "json"


class Sampler(enum.StrEnum):
    """``fit --sampler`` (:data:`markov_migration.inference.fit.SAMPLERS`)."""

    nutpie = "nutpie"
    pymc = "pymc"


class Quantity(enum.StrEnum):
    """``summarize --what`` (:data:`markov_migration.results.summaries.QUANTITIES`)."""

    qmatrix = "qmatrix"
    pmatrix = "pmatrix"
    sojourn = "sojourn"
    pnext = "pnext"
    leave = "leave"
    totlos = "totlos"
    passage = "passage"
    hazard = "hazard"
    phases = "phases"
    misclassification = "misclassification"


class LooUnit(enum.StrEnum):
    """``compare --unit``: what PSIS-LOO leaves out."""

    transition = "transition"
    row = "row"
    respondent = "respondent"


#: Set by the ``--debug`` global option: show tracebacks instead of one line.
DEBUG = {"on": False}

console = Console()
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    err_console.print(f"error: {message}", markup=False)
    return typer.Exit(code=code)


#: Command options that name outputs; every other option or argument naming an existing
#: file is an input, which no output may replace.
OUTPUT_OPTIONS = frozenset({"out", "csv", "plot_dir", "out_dir", "report"})


def _input_paths(kwargs: dict[str, Any]) -> list[Any]:
    paths: list[Any] = []
    for key, value in kwargs.items():
        if key in OUTPUT_OPTIONS:
            continue
        for v in value if isinstance(value, list | tuple) else [value]:
            if isinstance(v, str | os.PathLike):
                paths.append(v)
    return paths


def handle_errors(
    func: Callable[..., Any] | None = None, *, transaction: bool = True
) -> Callable[..., Any]:
    """Run a command so that bad input and interrupts end it cleanly.

    Bad input (:class:`~markov_migration.errors.InputError`), an unwritable output
    or a full disk (``OSError``) and too little memory: one stderr line, exit 2
    (a traceback with ``--debug``). Ctrl-C: ``interrupted``, exit 130; SIGTERM: exit
    143. With ``transaction`` (all commands but ``demo``, which reads back what it
    writes) every output is placed together at the end
    (:func:`markov_migration.io.output_transaction`), so a failed or interrupted run
    writes nothing and leaves existing outputs as they were.
    """
    if func is None:
        return functools.partial(handle_errors, transaction=transaction)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from markov_migration import interrupts
        from markov_migration.errors import InputError
        from markov_migration.io import clear_inputs, output_transaction, register_inputs

        interrupts.install()
        register_inputs(_input_paths(kwargs))
        scope = output_transaction() if transaction else contextlib.nullcontext()
        try:
            with scope:
                return func(*args, **kwargs)
        except InputError as err:
            if DEBUG["on"]:
                raise
            raise fail(str(err)) from None
        except KeyboardInterrupt as err:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(code=interrupts.exit_code(err)) from None
        except MemoryError:
            if DEBUG["on"]:
                raise
            raise fail(
                "not enough memory for this request (fewer draws, chains or steps?)"
            ) from None
        except OSError as err:
            if DEBUG["on"]:
                raise
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            raise fail(f"{where}{err.strerror or err}") from None
        finally:
            clear_inputs()

    return wrapper


# ---- numeric options: ranges checked by Click before a command runs, shown in --help ----

#: Seeds: what numpy, PyMC and nutpie all accept (an unsigned 32-bit integer).
SEED_MAX = 2**32 - 1
#: Upper bounds of sizes: far beyond any sensible run, so that a typo such as
#: ``--draws 99999999999999999999999`` is one line instead of an overflow deep inside
#: a sampler. Memory is checked against the data before sampling as well.
MAX_DRAWS = 10**7
MAX_CHAINS = 256
MAX_RESPONDENTS = 10**7


def seed_option(help: str) -> Any:
    """A ``--seed`` option: a whole number from 0 to :data:`SEED_MAX` (shown in ``--help``)."""
    return typer.Option("--seed", min=0, max=SEED_MAX, help=help)


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "" if lo is None else f"{lo:g} {'<' if lo_open else '<='} "
    right = "" if hi is None else f" {'<' if hi_open else '<='} {hi:g}"
    return f"{left}x{right}"


def check_number(
    value: float | None,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_inf: bool = False,
) -> str | None:
    """Why ``value`` is outside the range (None when it is inside, or is None).

    NaN is always refused; infinity only unless ``allow_inf`` (``+inf`` then passes
    an upper bound, as in ``--horizon inf``).
    """
    import math

    if value is None:
        return None
    if math.isnan(value):
        return "not a number"
    if math.isinf(value) and not (allow_inf and value > 0):
        return "must be finite"
    if math.isinf(value):
        return None
    too_low = lo is not None and (value < lo or (lo_open and value == lo))
    too_high = hi is not None and (value > hi or (hi_open and value == hi))
    if too_low or too_high:
        return f"must be in the range {_range_text(lo, hi, lo_open, hi_open)}"
    return None


def float_option(
    *decls: str,
    help: str,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_inf: bool = False,
) -> Any:
    """A float option whose range (and NaN, infinity) is checked by Click before the command.

    The range is appended to the help text, like Click's own ``[0<=x<=1]`` for integers.
    """

    def callback(value: float | None) -> float | None:
        why = check_number(
            value, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, allow_inf=allow_inf
        )
        if why is not None:
            raise typer.BadParameter(f"{why}, got {value!r}")
        return value

    extra = _range_text(lo, hi, lo_open, hi_open)
    extra += "; 'inf' allowed" if allow_inf else ""
    return typer.Option(*decls, help=f"{help} [{extra}]", callback=callback)


def strict_json(obj: Any, **kwargs: Any) -> str:
    """JSON text that is valid JSON: NaN and infinities become ``null`` (never ``NaN``)."""
    import json
    import math

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(obj), allow_nan=False, **kwargs)


#: Key in the top-level context's ``meta`` naming the command being parsed.
COMMAND_KEY = "markov_migration.command"


def _rejected_value(err: BaseException) -> str | None:
    """The value a typer/pydantic constraint rejected (``--n 0`` -> ``"0"``), if known."""
    errors = getattr(err.__cause__, "errors", None)
    if not callable(errors):
        return None
    try:
        value = errors()[0]["input"]
    except Exception:  # only a nicety for the message: never fail on it
        return None
    text = " ".join(str(value).split())
    return text if 0 < len(text) <= 60 else None


def usage_message(err: BaseException, group: Any = None) -> str:
    """One line for a Click usage error: ``simulate: Invalid value for '--n': ... (see ...)``.

    The command (for errors in a command's arguments), Click's message on one line,
    the rejected value when Click does not name it, and where to find the usage.
    ``group`` is the top-level context, used when the error carries no context of
    its own (Click's parser raises some without one); the command being parsed is
    then the one recorded in its ``meta`` under :data:`COMMAND_KEY`.
    """
    message = " ".join(err.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    # pydantic's prefix on a rejected choice ("Value error, 'x' is not one of ...") says nothing
    message = message.replace(": Value error, ", ": ")
    value = _rejected_value(err)
    if value is not None and f"'{value}'" not in message:
        message = f"{message}, got {value}"
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        name, path = (ctx.info_name if ctx.parent is not None else None), ctx.command_path
    elif group is not None:
        name = group.meta.get(COMMAND_KEY)
        path = group.command_path if name is None else f"{group.command_path} {name}"
    else:
        return message
    if name:
        message = f"{name}: {message}"
    return f"{message} (see {path} --help)"


@contextlib.contextmanager
def usage_errors(group: Any = None) -> Iterator[None]:
    """Turn Click's usage errors into one stderr line and their exit code (2).

    Click (through typer) would print a ``Usage:`` line, a hint and a rich error
    box. ``--help``, ``--version`` and a bare command with ``no_args_is_help``
    (which shows the help) pass through unchanged. ``group``: see
    :func:`usage_message`.
    """
    no_args_help = getattr(click_exceptions, "NoArgsIsHelpError", ())
    try:
        yield
    except click_exceptions.ClickException as err:
        if isinstance(err, no_args_help):
            raise
        raise fail(usage_message(err, group), code=err.exit_code) from None


def command_line() -> str:
    """The command line that started this process (recorded in output files)."""
    return " ".join(["markov-migration", *sys.argv[1:]])


#: ``--covariate NAME=VALUE`` (repeatable), for commands that pick one generator of a fit.
CovariateOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--covariate",
        help="Fits with covariates: NAME=VALUE (a level, or a number in the data's unit); "
        "repeatable or comma-separated. Covariates not given are at their reference level "
        "or centre.",
    ),
]


def parse_covariates(items: list[str] | None) -> dict[str, str]:
    """``["reason=work", "age=40"]`` as a dict (values as text; the fit converts them)."""
    from markov_migration.errors import InputError

    out: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise InputError(f"--covariate: expected NAME=VALUE, got '{part}'")
            if name.strip() in out:
                raise InputError(f"--covariate: '{name.strip()}' given twice")
            out[name.strip()] = value.strip()
    return out
