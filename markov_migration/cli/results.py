"""Results commands: ``summarize``, ``check``, ``compare`` and ``reproduce`` a fit file.

Only ``reproduce`` imports PyMC (it samples again); the others read fit files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import (
    MAX_DRAWS,
    CovariateOpt,
    LooUnit,
    OutputFormat,
    Quantity,
    console,
    err_console,
    fail,
    float_option,
    handle_errors,
    parse_covariates,
    seed_option,
    strict_json,
)
from markov_migration.defaults import CI_PROB

FitArg = Annotated[
    Path, typer.Argument(help="Fit file (NetCDF) written by `markov-migration fit`.")
]
CiOpt = Annotated[
    float,
    float_option(
        "--ci",
        help="Probability of the equal-tailed posterior intervals.",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        hi_open=True,
    ),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
FormatOpt = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="table (for people), csv or json (for scripts)."),
]


def _file_format(output_format: OutputFormat, out: Path | None) -> OutputFormat:
    """The format to write: a table asked for with ``--out`` becomes JSON or CSV by suffix."""
    if out is None or output_format is not OutputFormat.table:
        return output_format
    return OutputFormat.json if out.suffix.lower() == ".json" else OutputFormat.csv


def _num(x: float) -> str:
    import math

    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    ax = abs(x)
    if ax == 0:
        return "0"
    if ax >= 100:
        return f"{x:,.1f}"
    if ax >= 0.01:
        return f"{x:.4f}"
    return f"{x:.3g}"


def _write_text(text: str, out: Path, force: bool) -> None:
    from markov_migration.io import atomic_output

    with atomic_output(out, force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    console.print(f"wrote {out}")


@handle_errors
def summarize(
    fit: FitArg,
    what: Annotated[
        Quantity,
        typer.Option(
            "--what",
            "-w",
            help="qmatrix (intensities), pmatrix (P(t)), sojourn (mean stay), pnext (next-state "
            "probabilities), leave (probability of leaving each state within --t), totlos (time "
            "spent within --horizon), passage (time until first reaching --to), hazard (hazard "
            "ratios of covariates), phases (phase-type states: settling, stay, phase split), misclassification "
            "(probability of recording each state given the true one; at --covariate values).",
        ),
    ] = Quantity.qmatrix,
    t: Annotated[
        float,
        float_option("--t", help="Time for pmatrix and leave, in the model's time unit.", lo=0.0),
    ] = 1.0,
    ci: CiOpt = CI_PROB,
    output_format: FormatOpt = OutputFormat.table,
    start: Annotated[
        str | None,
        typer.Option(
            help="totlos start: a state, shares like 'abroad=0.6,transit=0.4', or 'observed' "
            "(first states in the panel); default the first state."
        ),
    ] = None,
    horizon: Annotated[
        float | None,
        float_option(
            "--horizon",
            help="totlos horizon in time units ('inf': time before absorption).",
            lo=0.0,
            lo_open=True,
            allow_inf=True,
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="passage target state(s), comma-separated; default the home states."
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="Fits with groups: summarise this group only, or 'new' for a group not in the "
            "data (the population distribution of groups). Default: every group."
        ),
    ] = None,
    covariate: CovariateOpt = None,
    period: Annotated[
        str | None,
        typer.Option(help="Fits with periods: a period label or index. Default: every period."),
    ] = None,
    seed: Annotated[int, seed_option("Seed of a new group's random effects.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write CSV or JSON here instead of stdout.")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Posterior summaries of a fit: mean, sd, median and an equal-tailed interval."""
    from markov_migration.fitfile.format import read_fit
    from markov_migration.io import check_output
    from markov_migration.results.summaries import summarize as summarize_fit
    from markov_migration.results.summaries import to_frame, to_json

    if out is not None:
        check_output(out, force)
    covariates = parse_covariates(covariate)
    tree = read_fit(fit)
    summary = summarize_fit(
        tree, what.value, t=t, ci=ci, start=start, horizon=horizon, to=to,
        covariates=covariates, group=group, period=period, seed=seed,
    )  # fmt: skip
    fmt = _file_format(output_format, out)
    if fmt is OutputFormat.table:
        print_summary(summary)
        return
    render = {
        OutputFormat.json: lambda: to_json(summary) + "\n",
        OutputFormat.csv: lambda: to_frame(summary).to_csv(index=False, float_format="%.6g"),
    }
    text = render[fmt]()
    if out is None:
        typer.echo(text, nl=False)
    else:
        _write_text(text, out, force)


def print_summary(summary, con=None) -> None:
    """Print a summary as a rich table with its description and notes."""
    from rich.table import Table

    from markov_migration.results.summaries import notes, to_frame

    con = con or console
    frame = to_frame(summary)
    pct = f"{summary.attrs.get('ci_prob', CI_PROB) * 100:g}%"
    title = f"{summary.attrs.get('quantity', '')}: {summary.attrs.get('description', '')}"
    table = Table(
        title=title,
        caption=f"units: {summary.attrs.get('units', '')}; interval: {pct} equal-tailed",
    )
    for c in frame.columns:
        label = {"lower": f"lower {pct}", "upper": f"upper {pct}"}.get(c, c)
        table.add_column(label, justify="left" if c in ("from", "to", "state") else "right")
    for _, row in frame.iterrows():
        table.add_row(*[str(v) if isinstance(v, str) else _num(float(v)) for v in row])
    con.print(table)
    if summary.attrs.get("generator"):
        con.print(f"generator: {summary.attrs['generator']}", soft_wrap=True)
    for n in notes(summary):
        con.print(f"note: {n}")


@handle_errors
def check(
    fit: FitArg,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Folder for tables (CSV) and plots (PNG).")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any check fails.")] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
    ] = None,
    draws: Annotated[
        int,
        typer.Option(
            "--draws", min=1, max=MAX_DRAWS, help="Posterior draws used by the predictive checks."
        ),
    ] = 500,
    seed: Annotated[int, seed_option("Seed of the predictive replications.")] = 0,
    ci: CiOpt = CI_PROB,
    force: ForceOpt = False,
) -> None:
    """Convergence (R-hat, ESS, divergences, E-BFMI) and posterior predictive checks of a fit."""
    from markov_migration.errors import InputError
    from markov_migration.fitfile.format import read_fit
    from markov_migration.io import check_output
    from markov_migration.plots.check_figures import write_outputs
    from markov_migration.results.checks import run_checks

    if report is not None:
        if report.suffix.lower() not in (".html", ".htm"):
            raise InputError("report must end in .html", path=report)
        check_output(report, force)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out-dir exists and is not a folder", path=out_dir)
    tree = read_fit(fit)
    result = run_checks(tree, n_draws=draws, ci=ci, seed=seed)
    print_checks(result)
    for note in result.notes:  # e.g. periods with little exposure: warnings, not checks
        err_console.print(f"warning: {note}", markup=False)
    if out_dir is not None:
        written = write_outputs(result, tree, out_dir, force)
        console.print(
            f"wrote {len(written)} files to {out_dir}: {', '.join(p.name for p in written)}"
        )
    if report is not None:
        from markov_migration.plots.report import render_report, write_report

        write_report(render_report(tree, result, fit_path=fit, ci=ci), report, force)
        console.print(f"wrote {report}")
    if strict and not result.ok:
        names = "; ".join(
            f"{c.name} ({c.label}: {c.value:.4g}, needs {c.threshold})" for c in result.failed
        )
        raise fail(f"{len(result.failed)} check(s) failed: {names}", code=1)


def print_checks(result, con=None) -> None:
    """Print the checks as a table."""
    import math

    from rich.table import Table

    con = con or console
    table = Table(title=f"Checks ({result.n_chains} chains x {result.n_draws} draws)")
    for c in ("check", "value", "passes when", "status", "detail"):
        table.add_column(c, justify="right" if c == "value" else "left")
    style = {"pass": "green", "FAIL": "bold red", "skipped": "dim"}
    for c in result.checks:
        value = "-" if math.isnan(c.value) else f"{c.value:.4g}"
        table.add_row(c.label, value, c.threshold, f"[{style[c.status]}]{c.status}[/]", c.detail)
    con.print(table)


@handle_errors
def compare(
    fits: Annotated[list[Path], typer.Argument(help="Two or more fit files of the same data.")],
    unit: Annotated[
        LooUnit,
        typer.Option(
            help="What LOO leaves out: 'transition' (one observed move), 'row' (an "
            "aggregated row) or 'respondent' (all of a respondent's data; the unit of "
            "latent-state fits)."
        ),
    ] = LooUnit.transition,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="'group': add dse_group, the standard error of elpd_diff clustered by the "
            "models' host-group column (pairs in a group are dependent).",
        ),
    ] = None,
    output_format: FormatOpt = OutputFormat.table,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write CSV or JSON here instead of stdout.")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Compare fits of the same data by PSIS-LOO: ELPD differences, standard errors, Pareto k."""
    from markov_migration.io import check_output
    from markov_migration.results.compare import compare_fits, pareto_k_warnings

    if out is not None:
        check_output(out, force)
    table, loos = compare_fits(fits, unit=unit.value, by=by)
    warnings = pareto_k_warnings(loos)
    fmt = _file_format(output_format, out)
    if fmt is OutputFormat.table:
        from rich.table import Table

        t = Table(
            title=f"PSIS-LOO comparison (unit: {next(iter(loos.values())).unit}; best model first)"
        )
        cols = [
            "model",
            "rank",
            "elpd",
            "se",
            "elpd_diff",
            "dse",
            *(["dse_group"] if "dse_group" in table.columns else []),
            "p",
            "weight",
            "high_k",
            "diag_diff",
        ]
        for c in cols:
            t.add_column(c, justify="left" if c in ("model", "diag_diff") else "right")
        for name, row in table.iterrows():
            t.add_row(
                str(name),
                str(int(row["rank"])),
                f"{row['elpd']:.1f}",
                f"{row['se']:.1f}",
                f"{row['elpd_diff']:.1f}",
                f"{row['dse']:.1f}",
                *([f"{row['dse_group']:.1f}"] if "dse_group" in table.columns else []),
                f"{row['p']:.1f}",
                f"{row['weight']:.2f}",
                str(int(row["high_k"])),
                str(row["diag_diff"] or ""),
            )
        console.print(t)
        console.print(
            "elpd_diff: difference to the best model (negative: worse); dse: its standard error."
            + (" dse_group: dse clustered by host group." if "dse_group" in table.columns else "")
        )
        for w in warnings:
            err_console.print(f"warning: {w}", markup=False)
        return
    frame = table.reset_index()

    def as_json() -> str:
        import json

        rows = json.loads(frame.to_json(orient="records"))
        record = {"unit": next(iter(loos.values())).unit, "warnings": warnings, "rows": rows}
        return strict_json(record, indent=2) + "\n"

    render = {
        OutputFormat.csv: lambda: frame.to_csv(index=False, float_format="%.6g"),
        OutputFormat.json: as_json,
    }
    text = render[fmt]()
    for w in warnings:
        err_console.print(f"warning: {w}", markup=False)
    if out is None:
        typer.echo(text, nl=False)
    else:
        _write_text(text, out, force)


@handle_errors
def reproduce(
    fit: FitArg,
    seed: Annotated[
        int | None, seed_option("Re-run with another seed (default: the recorded one).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the re-run fit file here.")
    ] = None,
    force: ForceOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Re-run a fit from what its file records; check the draws match (exit 1 if they disagree)."""
    from markov_migration.cli._common import command_line
    from markov_migration.io import check_output
    from markov_migration.results.reproduce import reproduce as reproduce_fit

    if out is not None:
        check_output(out, force)
    result = reproduce_fit(fit, seed=seed, progress=not quiet, command=command_line())
    console.print(
        f"data: {result.data_source}; seed {result.seed}; re-run took {result.seconds:.1f} s"
    )
    for n in result.notes:
        console.print(f"note: {n}")
    from rich.table import Table

    t = Table(title="Posterior means of the sampled parameters: recorded vs re-run")
    for c in ("parameter", "recorded", "re-run", "MCSE rec.", "MCSE re-run", "z"):
        t.add_column(c, justify="left" if c == "parameter" else "right")
    for _, r in result.table.iterrows():
        t.add_row(
            str(r["parameter"]),
            f"{r['mean_original']:.4f}",
            f"{r['mean_rerun']:.4f}",
            f"{r['mcse_original']:.4f}",
            f"{r['mcse_rerun']:.4f}",
            f"{r['z']:.2f}",
        )
    console.print(t)
    if out is not None:
        from markov_migration.fitfile.format import write_fit

        write_fit(result.rerun, out, force)
        console.print(f"wrote {out}")
    if not result.ok:
        raise fail(result.message(), code=1)
    console.print(result.message())
