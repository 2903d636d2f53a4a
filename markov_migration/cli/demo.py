"""``demo``: the whole pipeline on the bundled calibrated example."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import MAX_DRAWS, console, handle_errors, seed_option
from markov_migration.defaults import CHAINS, DRAWS, PROJECTION_DRAWS, TUNE

#: Seed of the bundled example panel (examples/outrush_synthetic.csv).
DEMO_SEED = 2024
DEMO_N = 8500


@handle_errors(transaction=False)  # the demo reads back what it writes
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Folder for the demo's outputs.")
    ] = Path("demo-output"),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite outputs of an earlier demo run.")
    ] = False,
    seed: Annotated[
        int, seed_option("Seed of the simulated example panel and the fit.")
    ] = DEMO_SEED,
    draws: Annotated[
        int, typer.Option(min=100, max=MAX_DRAWS, help="Posterior draws per chain (4 chains).")
    ] = DRAWS,
) -> None:
    """Run the whole pipeline on the calibrated OutRush-like example.

    Simulates the example panel, validates it, compares it with the published
    figures, fits the five-state model, compares the posterior with the true
    intensities, checks the fit (writing an HTML report), prints key summaries
    and projects returnees and diaspora to 2035 for a baseline and a ceasefire
    scenario.
    """
    from rich.markup import escape

    from markov_migration.cli.data import print_data_summary
    from markov_migration.errors import InputError
    from markov_migration.inputs.calibration import calibration_table
    from markov_migration.inputs.data_summary import data_summary
    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import atomic_output, resolve_model

    # every output is checked before anything runs or is written (a refused run creates nothing)
    check_outputs(out_dir, force)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out-dir cannot be created ({err.strerror})", path=out_dir) from None
    spec = load_spec(resolve_model("migration5"))
    console.rule("[bold]1. Simulate the calibrated OutRush-like panel")
    panel = simulate_panel(spec, DEMO_N, seed=seed, progress=True)
    panel_path = out_dir / "panel.csv"
    with atomic_output(panel_path, force) as tmp:
        panel.to_csv(tmp, index=False, float_format="%.6f")
    _line(f"wrote {panel_path}: {panel['id'].nunique():,} respondents, {len(panel):,} observations")

    console.rule("[bold]2. Validate it against the model")
    print_data_summary(data_summary(panel_path, spec), console)

    console.rule("[bold]3. Published figures vs the simulated panel")
    print_calibration(calibration_table(spec, panel), console)

    console.rule("[bold]4. Fit the five-state model (nutpie, 4 chains)")
    fit_path = out_dir / "fit.nc"
    tree = _fit(spec, panel_path, fit_path, seed=seed, draws=draws, force=force)
    print_recovery(tree, spec, console)

    console.rule("[bold]5. Check the fit: convergence and posterior predictive checks")
    _check(tree, fit_path, out_dir, seed=seed, force=force)

    console.rule("[bold]6. Key posterior summaries")
    _summaries(tree, out_dir / "summaries", force=force)

    console.rule("[bold]7. Project returnees and diaspora, mid-2024 to 2035")
    _project(fit_path, out_dir / "projection", seed=seed, force=force)

    console.rule("[bold]Done")
    _line(f"all outputs are in {out_dir}/:")
    for name, what in _OUTPUTS:
        _line(f"  {escape(str(out_dir / name))}  [dim]{what}[/]", markup=True)


def _line(text: str, *, markup: bool = False) -> None:
    """Print one line whole: no soft wrapping at the console width (paths, summary lines)."""
    console.print(text, soft_wrap=True, markup=markup)


_OUTPUTS = [
    ("panel.csv", "simulated example panel (long format)"),
    ("fit.nc", "fit file (posterior, diagnostics, log-likelihood, provenance)"),
    ("report.html", "reviewer report: checks, predictive plots, summaries, provenance"),
    ("checks/", "check tables (CSV) and plots (PNG)"),
    ("summaries/", "posterior summaries (CSV)"),
    ("projection/", "projection (NetCDF), quantile table (CSV), fan charts (PNG)"),
]

#: Summaries the demo prints and writes: (file stem, quantity, keyword arguments).
DEMO_SUMMARIES = [
    ("pmatrix-1y", "pmatrix", {"t": 1.0}),
    ("sojourn", "sojourn", {}),
    ("passage-returned", "passage", {"to": "returned"}),
]

#: Files of ``plots.fan.write_projection_outputs`` in ``projection/`` (default stem, charts, no states).
PROJECTION_FILES = (
    "projection.nc", "projection.csv", "charts/returnees.png", "charts/diaspora.png",
    "charts/cumulative_returns.png", "charts/ever_returned.png",
)  # fmt: skip


def planned_outputs(out_dir: Path) -> tuple[list[Path], list[Path]]:
    """Folders and files a demo run writes into ``out_dir`` (folders first, outermost first)."""
    folders = [out_dir] + [out_dir / d for d in ("checks", "summaries", "projection")]
    folders.append(out_dir / "projection" / "charts")
    files = [out_dir / n for n in ("panel.csv", "fit.nc", "report.html")]
    from markov_migration.plots.check_figures import OUTPUT_FILES

    files += [out_dir / "checks" / n for n in OUTPUT_FILES]
    files += [out_dir / "summaries" / f"{stem}.csv" for stem, _, _ in DEMO_SUMMARIES]
    files += [out_dir / "projection" / n for n in PROJECTION_FILES]
    return folders, files


def check_outputs(out_dir: Path, force: bool) -> None:
    """Refuse, before anything runs, every output the demo cannot write.

    A folder that is a file (or lies under one), a file that is a folder, and,
    without ``force``, any output of an earlier run.

    Raises
    ------
    InputError
        Naming the first path in the way.
    """
    from markov_migration.errors import InputError

    folders, files = planned_outputs(out_dir)
    # the nearest existing ancestor of the output folder must be a folder
    for parent in [out_dir, *out_dir.parents]:
        if parent.exists():
            if parent == out_dir and not parent.is_dir():
                raise InputError("--out-dir is a file, not a folder", path=out_dir)
            if not parent.is_dir():
                raise InputError(
                    f"--out-dir is under '{parent}', which is a file, not a folder", path=out_dir
                )
            break
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise InputError("is a file, not a folder (the demo writes a folder here)", path=folder)
    for path in files:
        if path.is_dir():
            raise InputError("output is a directory", path=path)
        if path.exists() and not force:
            raise InputError("output exists; use --force to overwrite it", path=path)


def _check(tree, fit_path: Path, out_dir: Path, *, seed: int, force: bool) -> None:
    from markov_migration.cli.results import print_checks
    from markov_migration.io import check_output
    from markov_migration.plots.check_figures import write_outputs
    from markov_migration.plots.report import render_report, write_report
    from markov_migration.results.checks import run_checks

    report = out_dir / "report.html"
    check_output(report, force)
    result = run_checks(tree, n_draws=500, seed=seed)
    print_checks(result)
    written = write_outputs(result, tree, out_dir / "checks", force)
    write_report(render_report(tree, result, fit_path=fit_path), report, force)
    verdict = "all checks pass" if result.ok else f"{len(result.failed)} check(s) FAIL"
    _line(f"{verdict}; wrote {len(written)} files to {out_dir / 'checks'} and {report}")


def _summaries(tree, out: Path, *, force: bool) -> None:
    from markov_migration.cli.results import print_summary
    from markov_migration.io import atomic_output
    from markov_migration.results.summaries import summarize, to_frame

    out.mkdir(parents=True, exist_ok=True)
    for stem, what, kwargs in DEMO_SUMMARIES:
        summary = summarize(tree, what, **kwargs)
        print_summary(summary)
        with atomic_output(out / f"{stem}.csv", force) as tmp:
            to_frame(summary).to_csv(tmp, index=False, float_format="%.6g")
    _line(f"wrote {len(DEMO_SUMMARIES)} tables to {out}")


#: About 650,000 emigrants who left since 2022 had not returned by July 2024 (DOMAIN.md).
DEMO_STILL_ABROAD = 650_000
DEMO_START, DEMO_HORIZON = 2024.5, 2035.0
#: Projection draws (resampled from the fit's posterior draws).
DEMO_PROJECTION_DRAWS = PROJECTION_DRAWS
#: The bundled working-age death series (models/exits/; docs/projection.md gives its source).
DEMO_EXITS = "working-age-2022"


def _project(fit_path: Path, out: Path, *, seed: int, force: bool) -> None:
    from markov_migration.fitfile.format import fit_spec, read_fit
    from markov_migration.plots.fan import write_projection_outputs
    from markov_migration.projection.exits import ExitRates
    from markov_migration.projection.files import summary_lines
    from markov_migration.projection.initial import InitialTotal, initial_stocks_from_fit
    from markov_migration.projection.run import project_fit

    stocks = initial_stocks_from_fit(fit_path, DEMO_STILL_ABROAD, at=DEMO_START)
    split = ", ".join(f"{k} {v:,}" for k, v in stocks.items() if v)
    _line(
        f"initial stocks at {DEMO_START}: {DEMO_STILL_ABROAD:,} still abroad, split as the fit "
        f"implies (posterior mean: {split}; each draw uses its own split)"
    )
    exits = ExitRates.read_csv(DEMO_EXITS, fit_spec(read_fit(fit_path)))
    _line(
        f"exits (deaths) from the bundled series {DEMO_EXITS}: "
        + ", ".join(f"{r[0]:.4f} from {t:g}" for t, r in zip(exits.times, exits.rates, strict=True))
        + " per person-year (docs/projection.md)"
    )
    kw = dict(
        start=DEMO_START, horizon=DEMO_HORIZON, draws=DEMO_PROJECTION_DRAWS, seed=seed, fit_file=fit_path,
        exit_rates=exits,
    )  # fmt: skip
    ds = project_fit(fit_path, InitialTotal(DEMO_STILL_ABROAD), scenarios=["ceasefire-2026"], **kw)
    paths = write_projection_outputs(ds, out, force=force)
    for line in summary_lines(ds, [2030.0, 2035.0]):
        _line(line)
    _step_invariance(fit_path, ds, kw)
    _line(f"wrote projection files to {out}/:")
    for p in paths:
        _line(f"  {p}")


def _step_invariance(fit_path: Path, ds, kw: dict) -> None:
    """Baseline cumulative returns and ever returned by the horizon: yearly vs monthly steps.

    Flows are transition events, so the figures agree (within Monte Carlo
    error) whatever the output step; the Van Loan expectation of the return
    events (mean over the draws) is printed next to them.
    """
    import numpy as np

    from markov_migration.projection.initial import InitialTotal
    from markov_migration.projection.reference import expected_returns
    from markov_migration.projection.run import project_fit

    monthly = project_fit(fit_path, InitialTotal(DEMO_STILL_ABROAD), step=1 / 12, **kw)
    yearly = ds.sel(scenario="baseline") if "scenario" in ds.dims else ds
    expected = expected_returns(fit_path, yearly, kw.get("exit_rates"))
    for name in ("cumulative_returns", "ever_returned", "exited"):
        label = name.replace("_", " ")
        cells = []
        for what, run in (("yearly steps", yearly), ("monthly steps", monthly)):
            v = run[name].isel(time=-1).values
            cells.append(f"{what} mean {v.mean():,.0f} (median {np.median(v):,.0f})")
        if name == "cumulative_returns":
            cells.append(f"Van Loan expectation {expected:,.0f}")
        _line(f"baseline: {label} by {DEMO_HORIZON:g}: " + "; ".join(cells))


def print_calibration(table, con) -> None:
    """The calibration table (published figure vs simulated panel) as a rich table."""
    from rich.table import Table

    out = Table(title="Published figures vs the simulated example panel")
    for c in ("figure", "from", "target", "simulated", "accepted range", "ok"):
        out.add_column(c, justify="left" if c in ("figure", "from") else "right")
    for row in table.rename(columns={"pass": "ok"}).itertuples(index=False):
        out.add_row(
            str(row.figure),
            str(row.source),
            f"{row.target:.3f}",
            f"{row.simulated:.3f}",
            f"{row.low:.3f}-{row.high:.3f}",
            "yes" if row.ok else "NO",
        )
    con.print(out)


def _fit(spec, panel_path: Path, fit_path: Path, *, seed: int, draws: int, force: bool):
    from markov_migration.cli._common import command_line
    from markov_migration.fitfile.format import write_fit
    from markov_migration.inference.fit import FitSettings, sample
    from markov_migration.inputs.aggregate import load_data
    from markov_migration.io import check_output

    check_output(fit_path, force)
    validated, agg = load_data(panel_path, spec)
    settings = FitSettings(chains=CHAINS, draws=draws, tune=TUNE, seed=seed)
    tree = sample(spec, agg, settings, progress=True, command=command_line(), panel=validated)
    write_fit(tree, fit_path, force)
    t = settings.timings
    _line(f"wrote {fit_path} (compile {t['compile']:.1f} s, sampling {t['sample']:.1f} s)")
    return tree


def print_recovery(tree, spec, con) -> None:
    """Posterior intensities next to the true ones the panel was simulated with."""
    import numpy as np
    from rich.table import Table

    rate = tree["posterior"]["rate"].values.reshape(-1, len(spec.transitions))
    from markov_migration.defaults import CI_PROB

    lo, hi = np.quantile(rate, [(1 - CI_PROB) / 2, (1 + CI_PROB) / 2], axis=0)
    table = Table(title="Posterior intensities (moves per person-year) vs the simulating truth")
    for c in ("transition", "true", "posterior mean", f"{100 * CI_PROB:g}% interval", "covers"):
        table.add_column(c, justify="left" if c == "transition" else "right")
    covered = 0
    for k, (pair, label) in enumerate(zip(spec.transitions, spec.transition_labels, strict=True)):
        truth = spec.rates[pair]
        ok = lo[k] <= truth <= hi[k]
        covered += ok
        table.add_row(
            label,
            f"{truth:.3f}",
            f"{rate[:, k].mean():.3f}",
            f"{lo[k]:.3f}-{hi[k]:.3f}",
            "yes" if ok else "no",
        )
    con.print(table)
    n_div = int(np.asarray(tree["sample_stats"]["diverging"]).sum())
    con.print(
        f"{covered} of {len(spec.transitions)} true intensities inside their {100 * CI_PROB:g}% "
        f"interval; {n_div} divergences"
    )
