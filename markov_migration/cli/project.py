"""``project``: stocks by state over time from a fit, with scenarios; NetCDF + CSV + fan charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import (
    MAX_DRAWS,
    CovariateOpt,
    command_line,
    console,
    err_console,
    handle_errors,
    parse_covariates,
    seed_option,
)
from markov_migration.defaults import PROJECTION_DRAWS

#: Output times shown in the printed summary (besides the horizon).
SUMMARY_EVERY = 5


@handle_errors
def project(
    fit: Annotated[Path, typer.Argument(help="Fit file (NetCDF) of a continuous-time model.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Projection file to write (NetCDF).")],
    start: Annotated[
        float, typer.Option(help="Start time of the projection, e.g. 2024.5 (decimal years).")
    ],
    horizon: Annotated[float, typer.Option(help="Last time of the projection, e.g. 2035.")],
    initial: Annotated[
        str | None,
        typer.Option(
            help="Initial stocks, e.g. abroad=300000,transit=150000 (states not named start at 0)."
        ),
    ] = None,
    initial_file: Annotated[
        Path | None, typer.Option(help="Initial stocks from a CSV with columns state,stock.")
    ] = None,
    initial_total: Annotated[
        float | None,
        typer.Option(
            help="Initial persons abroad, split across the non-home states as the fit implies "
            "at --start, each draw with its own split (the fit must hold its panel)."
        ),
    ] = None,
    initial_total_range: Annotated[
        str | None,
        typer.Option(
            help="Uncertain --initial-total: its central 90% range LO,HI (e.g. 550000,800000); "
            "each draw's total is a two-piece lognormal with median --initial-total and 5%/95% "
            "quantiles LO and HI."
        ),
    ] = None,
    step: Annotated[
        float, typer.Option(help="Output step; times after the start are whole multiples of it.")
    ] = 1.0,
    inflow: Annotated[
        float | None, typer.Option(help="New emigrants per year (per time unit), every year.")
    ] = None,
    inflow_file: Annotated[
        Path | None,
        typer.Option(
            help="New emigrants per year from a CSV time,inflow (each rate holds from its time on)."
        ),
    ] = None,
    inflow_state: Annotated[
        str | None,
        typer.Option(
            help="State new emigrants enter (default: the model's first non-home state); a "
            "home state is accepted with a warning (the inflow then counts as returnees)."
        ),
    ] = None,
    inflow_cv: Annotated[
        float,
        typer.Option(
            help="Uncertain inflow: CV of the inflow level of each draw (gamma level, "
            "Poisson arrivals); 0 = known inflows."
        ),
    ] = 0.0,
    draws: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_DRAWS, help="Projection draws (evenly spaced posterior samples)."
        ),
    ] = PROJECTION_DRAWS,
    seed: Annotated[int, seed_option("Random seed; the same seed gives the same projection.")] = 0,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Quantile table to write (CSV, long format).")
    ] = None,
    plot_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for fan charts (returnees.png, diaspora.png, cumulative_returns.png, "
            "ever_returned.png)."
        ),
    ] = None,
    plot_states: Annotated[
        bool,
        typer.Option("--plot-states", help="Also draw a fan chart per state (stock-STATE.png)."),
    ] = False,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help="Scenario file (TOML) or bundled name (ceasefire-2026, mobilization-wave); "
            "repeatable. The baseline always runs too.",
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(help="Run chunked on Dask: 'local' (a local cluster) or a scheduler address."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="Fits with groups: project with this group's intensities, or 'new' for a "
            "group not in the data (the population distribution of groups)."
        ),
    ] = None,
    by_group: Annotated[
        bool,
        typer.Option(
            "--by-group",
            help="Fits with groups: project every group of --initial-file (CSV group,state,stock) "
            "on the same posterior draws; adds a group dim, per-group and total rows and charts.",
        ),
    ] = False,
    covariate: CovariateOpt = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="Fits with periods: period label or index (default: the period at --start)."
        ),
    ] = None,
    exit_rate: Annotated[
        str | None,
        typer.Option(
            help="People leave the population (deaths, moves out of scope): a yearly rate for "
            "every state (e.g. 0.01), per state (abroad=0.01,returned=0.005), or 'default' "
            "(0.003, working-age deaths; see docs/projection.md); an absorbing exit state, "
            "reported as the series exits and exited."
        ),
    ] = None,
    exit_file: Annotated[
        Path | None,
        typer.Option(
            help="Exit rates by time (a life-table series): CSV time,rate or time,state,rate, "
            "each rate from its time until the next; or a bundled series (working-age-2022)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Project stocks by state, returnees and diaspora from a fit, under scenarios.

    For every posterior draw people move between states in continuous time,
    each independently (demographic noise); every transition is counted
    (returns, re-emigrations, cumulative returns, persons ever returned), so
    the figures do not depend on --step. New emigrants arrive through each
    step, a fit's periods switch at their cut points, and scenarios multiply
    chosen intensities from a date. Writes the draws (NetCDF), a quantile
    table (CSV) and fan charts (PNG), and prints medians with 80% intervals.
    """
    from markov_migration.errors import InputError
    from markov_migration.fitfile.format import fit_spec, read_fit
    from markov_migration.io import check_output
    from markov_migration.projection.exits import ExitRates
    from markov_migration.projection.files import write_projection, write_quantile_csv
    from markov_migration.projection.plan import Inflow
    from markov_migration.projection.stocks import parse_initial, read_initial_file

    # every input is checked before anything is computed or written
    if out.suffix.lower() not in (".nc", ".netcdf", ".h5"):
        raise InputError("projection file must end in .nc", path=out)
    check_output(out, force)
    if csv is not None:
        if csv.suffix.lower() != ".csv":
            raise InputError("quantile table must end in .csv", path=csv)
        check_output(csv, force)
    given = [o for o, v in (("--initial", initial), ("--initial-file", initial_file),
                            ("--initial-total", initial_total)) if v is not None]  # fmt: skip
    if len(given) != 1:
        raise InputError(
            "give the initial stocks with one of --initial, --initial-file or --initial-total"
        )
    if initial_total_range is not None and initial_total is None:
        raise InputError("--initial-total-range needs --initial-total")
    if inflow is not None and inflow_file is not None:
        raise InputError("give either --inflow or --inflow-file, not both")
    if inflow_cv < 0:
        raise InputError(f"--inflow-cv must be >= 0, got {inflow_cv:g}")
    if draws < 1:
        raise InputError(f"--draws must be at least 1, got {draws}")
    if exit_rate is not None and exit_file is not None:
        raise InputError("give either --exit-rate or --exit-file, not both")
    if by_group:
        if group is not None:
            raise InputError("give either --group or --by-group, not both")
        if initial_file is None:
            raise InputError("--by-group needs --initial-file with columns group,state,stock")
        if inflow is not None or inflow_file is not None:
            raise InputError(
                "--by-group does not take --inflow or --inflow-file (no rule splits new "
                "emigrants over groups): project groups with inflows one at a time with --group"
            )
    tree = read_fit(fit)
    spec = fit_spec(tree)
    covariates = parse_covariates(covariate)
    exits = (
        ExitRates.read_csv(exit_file, spec)
        if exit_file is not None
        else ExitRates.parse(exit_rate, spec)
    )
    if exits is not None:
        exits.check_window(start)
    groups: list[str] = []
    if by_group:
        from markov_migration.projection.bygroup import fit_groups, read_group_initial_file

        stocks = read_group_initial_file(initial_file, spec, fit_groups(tree))
        groups = list(stocks)
    elif initial is not None:
        stocks = parse_initial(initial, spec)
    elif initial_file is not None:
        stocks = read_initial_file(initial_file, spec)
    else:
        stocks = _initial_total(initial_total, initial_total_range)
    if inflow_file is not None:
        flow = Inflow.read_csv(inflow_file, state=inflow_state, cv=inflow_cv)
    elif inflow is not None:
        flow = Inflow.constant(inflow, state=inflow_state, cv=inflow_cv)
    else:
        flow = Inflow(state=inflow_state, cv=inflow_cv)
    from markov_migration.inputs.scenario import load_scenario
    from markov_migration.projection.discrete import discrete_times, is_discrete
    from markov_migration.projection.plan import projection_times

    times = (discrete_times if is_discrete(spec) else projection_times)(start, horizon, step)
    scenarios = [load_scenario(s, spec) for s in scenario or []]
    from markov_migration.projection.plan import check_run_size

    check_run_size(
        draws, seed, len(times), len(spec.states), (1 + len(scenarios)) * max(1, len(groups))
    )
    for sc in scenarios:
        sc.check_dates(float(times[0]), float(times[-1]))
    plot_names = []
    if plot_dir is not None:
        if plot_dir.exists() and not plot_dir.is_dir():
            raise InputError("--plot-dir is not a folder", path=plot_dir)
        from markov_migration.plots.fan import DEFAULT_CHARTS, chart_file_names

        charts = list(DEFAULT_CHARTS) + ([f"stock-{s}" for s in spec.states] if plot_states else [])
        plot_names = chart_file_names(charts, groups)
        if plot_dir.is_dir():
            for name in plot_names:
                check_output(plot_dir / name, force)

    ds = _run(
        fit,
        tree,
        stocks,
        start,
        horizon,
        step,
        flow,
        scenarios,
        draws,
        seed,
        dask,
        quiet,
        command_line(),
        dict(
            covariates=covariates,
            group=group,
            period=period,
            exit_rates=exits,
        ),
        by_group,
    )

    if inflow_state is not None and inflow_state in spec.home:
        # accepted (the arithmetic does not assume emigrants), but rarely what is meant; after
        # the run, so that a refused input still gets exactly one line on stderr
        err_console.print(
            f"warning: --inflow-state '{inflow_state}' is a home state: its inflow counts as "
            "returnees (in the home stock, not the diaspora), not as returns",
            markup=False,
        )
    write_projection(ds, out, force)
    written = [out]
    if csv is not None:
        written.append(write_quantile_csv(ds, csv, force))
    if plot_dir is not None:
        from markov_migration.plots.fan import DEFAULT_CHARTS, write_fan_charts

        written += write_fan_charts(
            ds, plot_dir, states=plot_states, series=DEFAULT_CHARTS, force=force
        )
    if by_group:
        from markov_migration.projection.files import group_total

        console.print(f"by group: {', '.join(groups)}; tables below are the total over groups")
        _print_summary(group_total(ds), times)
    else:
        _print_summary(ds, times)
    for path in written:
        console.print(f"wrote {path}")


def _initial_total(total: float, text: str | None):
    """The :class:`InitialTotal` of ``--initial-total`` and ``--initial-total-range`` (checked)."""
    from markov_migration.errors import InputError
    from markov_migration.projection.initial import InitialTotal

    low = high = None
    if text is not None:
        parts = [p.strip().replace("_", "") for p in text.split(",")]
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise InputError(
                f"--initial-total-range must be two numbers LO,HI, got '{text}'"
            ) from None
    return InitialTotal(float(total), low, high).check()


def _run(
    fit,
    tree,
    stocks,
    start,
    horizon,
    step,
    flow,
    scenarios,
    draws,
    seed,
    dask,
    quiet,
    command,
    generator,
    by_group=False,
):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from markov_migration.projection.run import project_fit

    n_runs = draws * (1 + len(scenarios))
    if by_group:
        persons = f"{sum(sum(v.values()) for v in stocks.values()):,}"
    elif isinstance(stocks, dict):
        persons = f"{sum(stocks.values()):,}"
    else:
        persons = f"{round(stocks.total):,}"
    console.print(
        f"projecting {persons} persons from {start:g} to {horizon:g} "
        f"({draws:,} draws, {1 + len(scenarios)} scenario(s){', on Dask' if dask else ''})"
    )
    columns = (TextColumn("draws"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"))
    with Progress(
        *columns, TimeRemainingColumn(), console=console, transient=True, disable=quiet
    ) as bar:
        task = bar.add_task("project", total=n_runs)
        common = dict(
            start=start,
            horizon=horizon,
            step=step,
            scenarios=scenarios,
            draws=draws,
            seed=seed,
            dask=dask,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            command=command,
            fit_file=fit,
        )
        if by_group:  # no inflow: refused with --by-group before this point
            from markov_migration.projection.bygroup import project_by_group

            return project_by_group(
                tree, stocks, **common, **{k: v for k, v in generator.items() if k != "group"}
            )
        ds = project_fit(tree, stocks, inflow=flow, **common, **generator)
    return ds


def _print_summary(ds, times) -> None:
    """One table per scenario: medians and 80% intervals of returnees and diaspora."""
    import numpy as np
    from rich.table import Table

    from markov_migration.defaults import PROJECTION_SUMMARY_PROB
    from markov_migration.projection.files import interval

    pct = f"{PROJECTION_SUMMARY_PROB:.0%}"
    shown = [t for t in times[1:] if abs(t - round(t)) < 1e-9 and round(t) % SUMMARY_EVERY == 0]
    shown = sorted({float(times[0]), *shown, float(times[-1])})
    for sc in np.atleast_1d(ds["scenario"].values):
        table = Table(title=f"{sc}: persons, median and {pct} interval across draws")
        table.add_column("time", justify="right")
        for name in ("returnees", "diaspora"):
            table.add_column(name, justify="right")
            table.add_column(f"{pct} interval", justify="right")
        for t in shown:
            cells = []
            for name in ("returnees", "diaspora"):
                r = interval(ds, name, t, str(sc))
                cells += [f"{r['median']:,.0f}", f"{r['lower']:,.0f}-{r['upper']:,.0f}"]
            table.add_row(f"{t:g}", *cells)
        console.print(table)
