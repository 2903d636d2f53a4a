"""Data commands: ``simulate`` a synthetic panel and ``validate`` a panel against a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import (
    MAX_RESPONDENTS,
    ReportFormat,
    console,
    handle_errors,
    seed_option,
    strict_json,
)

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Model file (TOML), or the name of a bundled model."),
]


def _parse_waves(waves: str | None) -> list[float] | None:
    from markov_migration.errors import InputError

    if waves is None:
        return None
    try:
        out = [float(w) for w in waves.split(",") if w.strip()]
    except ValueError:
        raise InputError(f"--waves must be comma-separated numbers, got '{waves}'") from None
    import math

    if not all(math.isfinite(w) for w in out):
        raise InputError(f"--waves must be finite numbers, got '{waves}'")
    if len(out) < 2 or any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise InputError("--waves needs at least two increasing times, e.g. 2022.7,2023.6,2024.6")
    return out


@handle_errors
def simulate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Panel file to write (.csv or .parquet).")
    ],
    model: ModelOpt = "migration5",
    n: Annotated[
        int, typer.Option("--n", min=1, max=MAX_RESPONDENTS, help="Number of respondents.")
    ] = 8500,
    waves: Annotated[
        str | None,
        typer.Option(
            help="Wave times in the model's time unit, comma-separated "
            "(default: the model's \\[simulate] waves)."
        ),
    ] = None,
    attrition: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Probability of dropping out between waves (default: the model's).",
        ),
    ] = None,
    rates: Annotated[
        Path | None,
        typer.Option(
            "--rates",
            help='TOML file with a \\[rates] table ("from->to" = 0.05) replacing the model\'s '
            "\\[rates].",
        ),
    ] = None,
    seed: Annotated[int, seed_option("Random seed; the same seed gives the same panel.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
) -> None:
    r"""Simulate a synthetic panel from a model file with known rates (\[rates] table)."""
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_rates, load_spec
    from markov_migration.io import atomic_output, check_output, resolve_model

    check_output(out, force)
    if out.suffix.lower() not in (".csv", ".parquet", ".pq"):
        from markov_migration.errors import InputError

        raise InputError("output must end in .csv or .parquet", path=out)
    spec = load_spec(resolve_model(model))
    known = None if rates is None else load_rates(rates, spec)
    panel = simulate_panel(
        spec,
        n,
        waves=_parse_waves(waves),
        attrition=attrition,
        seed=seed,
        progress=True,
        rates=known,
    )
    with atomic_output(out, force) as tmp:
        if out.suffix.lower() == ".csv":
            panel.to_csv(tmp, index=False, float_format="%.6f")
        else:
            panel.to_parquet(tmp, index=False)
    source = f"model {spec.name}" if rates is None else f"model {spec.name}, rates {rates}"
    console.print(
        f"wrote {out}: {panel['id'].nunique():,} respondents, {len(panel):,} observations "
        f"({source}, seed {seed})"
    )


@handle_errors
def validate(
    panel: Annotated[
        Path, typer.Argument(help="Panel file (CSV or Parquet, long format) or a counts table.")
    ],
    model: ModelOpt = "migration5",
    output_format: Annotated[
        ReportFormat, typer.Option("--format", help="table (for people) or json (for scripts).")
    ] = ReportFormat.table,
) -> None:
    """Check a panel against a model; print its state table and what was fixed or dropped."""
    from markov_migration.inputs.data_summary import data_summary
    from markov_migration.inputs.effects import check_design
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import resolve_model

    spec = load_spec(resolve_model(model))
    check_design(spec)  # what fit refuses of the model before reading data, validate refuses too
    summary = data_summary(panel, spec)
    if output_format is ReportFormat.json:
        typer.echo(strict_json(summary, indent=2))
    else:
        print_data_summary(summary, console)
    if spec.periods:
        from markov_migration.cli._common import err_console
        from markov_migration.inputs.aggregate import load_data
        from markov_migration.inputs.period_exposure import little_exposure

        # a warning, not an error: the fit is valid, its period effects prior-driven
        for line in little_exposure(spec, load_data(panel, spec)[1].table):
            err_console.print(f"warning: {line}", markup=False)


def print_data_summary(summary: dict, con) -> None:
    """Print the result of :func:`markov_migration.inputs.data_summary.data_summary` as tables."""
    from rich.table import Table

    con.print(
        f"[bold]{summary['file']}[/bold] ({summary['kind']}, sha256 {summary['sha256'][:12]}...)"
    )
    con.print(f"model {summary['model']}: {len(summary['states'])} states")
    if summary["kind"] == "panel":
        con.print(
            f"{summary['rows']:,} rows, {summary['respondents']:,} respondents observed at least twice, "
            f"{summary['dropped_single']:,} observed once (dropped); times {summary['time_min']:.3f} "
            f"to {summary['time_max']:.3f}"
        )
    con.print(
        f"{summary['n_transitions']:,.0f} observed transitions in {summary['n_rows_aggregated']:,} "
        f"aggregated rows; {summary['n_intervals']:,} distinct intervals from "
        f"{summary['interval_min']:.3f} to {summary['interval_max']:.3f} {summary['time_unit']} "
        f"(resolution {summary['resolution']:.4g})"
    )
    if summary.get("observations"):
        t = Table(title="Observations by state")
        t.add_column("state")
        t.add_column("observations", justify="right")
        total = sum(summary["observations"].values())
        t.add_column("share", justify="right")
        for s, n in summary["observations"].items():
            t.add_row(s, f"{n:,}", f"{n / total:.1%}")
        con.print(t)
    t = Table(title="Transitions between consecutive observations (rows: from, columns: to)")
    t.add_column("from \\ to")
    for s in summary["states"]:
        t.add_column(s, justify="right")
    for a, row in summary["transitions"].items():
        t.add_row(a, *(f"{row[b]:,.0f}" for b in summary["states"]))
    con.print(t)
    for note in summary.get("notes", []):
        con.print(f"note: {note}")
    con.print("[green]valid[/green]: no problems found")
