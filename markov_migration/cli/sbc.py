"""``sbc``: simulation-based calibration of the fitting layer on a design panel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import console, fail, handle_errors

#: Files written to ``--out``.
OUTPUT_FILES = ("ranks.csv", "uniformity.csv", "sbc_ecdf.png")


@handle_errors
def sbc(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Model file (TOML), or the name of a bundled model."),
    ],
    design: Annotated[
        Path,
        typer.Option(
            "--design",
            help="Panel whose respondents and observation times (and attrition) every "
            "simulated panel keeps; its first state per respondent is the start.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for ranks.csv, uniformity.csv, PNG.")
    ],
    sims: Annotated[int, typer.Option("--sims", min=1, help="Number of simulations.")] = 100,
    draws: Annotated[
        int,
        typer.Option("--draws", min=1, help="Posterior draws per fit after thinning (ranks 0..D)."),
    ] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the whole run.")] = 0,
    chains: Annotated[int, typer.Option(min=1, help="Chains per fit.")] = 4,
    tune: Annotated[int, typer.Option(min=0, help="Warm-up draws per chain.")] = 300,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Run the simulations on Dask: 'local' (a LocalCluster on this machine) or "
            "a scheduler address; default sequential.",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when any parameter fails uniformity.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
) -> None:
    """Simulation-based calibration: prior draw, simulated panel, fit and rank, N times."""
    import time

    from markov_migration.errors import InputError
    from markov_migration.inputs.panel import load_panel
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import atomic_output, check_output, resolve_model
    from markov_migration.plots.sbc_figures import ecdf_figure
    from markov_migration.results.sbc import (
        SbcSettings,
        check_sbc_spec,
        run_sbc,
        sbc_design,
        uniformity,
    )

    settings = SbcSettings(sims=sims, draws=draws, seed=seed, chains=chains, tune=tune)
    settings.check()
    if out.exists() and not out.is_dir():
        raise InputError("--out exists and is not a folder", path=out)
    spec = load_spec(resolve_model(model))
    check_sbc_spec(spec)
    panel = load_panel(design, spec)
    sbc_design(spec, panel)  # covariates constant within respondents, before any fit
    if out.is_dir():
        for name in OUTPUT_FILES:
            check_output(out / name, force)
    t0 = time.perf_counter()
    if dask is None:
        from rich.progress import Progress

        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("fitting simulated panels", total=sims)
            ranks, seconds = run_sbc(
                spec, panel, settings, progress=lambda n: bar.update(task, completed=n)
            )
    else:
        ranks, seconds = run_sbc(spec, panel, settings, dask=dask)
    wall = time.perf_counter() - t0
    table = uniformity(ranks)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "ranks.csv", force) as tmp:
        ranks.to_csv(tmp, index=False)
    with atomic_output(out / "uniformity.csv", force) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_output(out / "sbc_ecdf.png", force) as tmp:
        ecdf_figure(ranks, tmp, seed=seed)
    _print(table, wall, seconds)
    console.print(f"wrote {', '.join(OUTPUT_FILES)} to {out}")
    failed = table.loc[~table["passed"], "parameter"].tolist()
    if strict and failed:
        raise fail(f"{len(failed)} parameter(s) fail uniformity: {', '.join(failed)}", code=1)


def _print(table, wall: float, seconds: list[float]) -> None:
    """The uniformity table and the timing."""
    import numpy as np
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="SBC rank uniformity (chi-square, Bonferroni over parameters)")
    for c in ("parameter", "sims", "bins", "chi2", "p", "status"):
        t.add_column(c)
    for r in table.itertuples():
        status = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
        t.add_row(
            escape(r.parameter),
            str(r.sims),
            str(r.bins),
            f"{r.chi2:.2f}",
            f"{r.p_value:.3f}",
            status,
        )
    console.print(t)
    console.print(
        f"{len(seconds)} simulations in {wall:.1f} s wall time; per simulation "
        f"median {np.median(seconds):.2f} s, max {np.max(seconds):.2f} s"
    )
