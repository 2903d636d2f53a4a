"""``backtest``: refit without the last wave and score the predictions of what was held out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from markov_migration.cli._common import command_line, console, handle_errors
from markov_migration.defaults import CHAINS, DRAWS, TUNE


@handle_errors
def backtest(
    panel: Annotated[Path, typer.Argument(help="Panel file (CSV/Parquet, long format).")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for coverage.csv, scores.csv, the PIT plot."),
    ],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Model file (TOML), or the name of a bundled model."),
    ] = "migration5",
    holdout_after: Annotated[
        float | None,
        typer.Option(
            "--holdout-after",
            help="Hold out every observation after this time (time units); default: the last wave.",
        ),
    ] = None,
    chains: Annotated[int, typer.Option(min=1, help="Chains of the refit.")] = CHAINS,
    draws: Annotated[int, typer.Option(min=1, help="Draws kept per chain of the refit.")] = DRAWS,
    tune: Annotated[int, typer.Option(min=0, help="Warm-up draws per chain of the refit.")] = TUNE,
    seed: Annotated[int, typer.Option(help="Seed of the refit and the predictions.")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing files in the folder.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    r"""Refit without the last wave, predict it, write interval coverage and scores.

    Held out: every respondent's first observation in the last wave (or after
    --holdout-after), predicted from their last kept observation; for a
    \[nonresponse] model every scheduled interview after the cut, missed ones
    included. Exact entry or transition times are scored by their density.
    """
    import math

    from markov_migration.errors import InputError
    from markov_migration.inference.fit import FitSettings
    from markov_migration.inputs.spec import load_spec
    from markov_migration.io import resolve_model
    from markov_migration.plots.backtest_figures import planned_outputs, write_backtest
    from markov_migration.results.backtest import backtest_fit, refit_kept

    if holdout_after is not None and not math.isfinite(holdout_after):
        raise InputError(f"--holdout-after must be a finite time, not {holdout_after}")
    planned_outputs(out, force)  # refuse before the refit
    settings = FitSettings(chains, draws, tune, seed)
    settings.check()
    spec = load_spec(resolve_model(model))
    start = time.perf_counter()
    tree, heldout = refit_kept(panel, spec, settings, holdout_after, command=command_line(),
                               progress=not quiet)  # fmt: skip
    fitted = time.perf_counter() - start
    result = backtest_fit(tree, heldout, seed=seed)
    written = write_backtest(result, tree, out, force)
    console.print(
        f"held out {heldout.origin.size:,} transitions after {heldout.cut:g} "
        f"(refit {fitted:.1f} s, total {time.perf_counter() - start:.1f} s)"
    )
    cov = result.coverage
    summary = cov[cov["quantity"].isin(["counts (all cells)", "prevalence (all states)"])]
    for _, row in summary.iterrows():
        console.print(
            f"{row['quantity']}: {row['interval']} intervals cover {100 * row['covered']:.0f}%"
        )
    sc = result.scores[result.scores["origin"] == "all"].set_index("score")["value"]
    console.print(
        f"log predictive density {sc['lpd']:.1f} ({sc['lpd_mean']:.3f} per respondent), "
        f"ranked probability score {sc['rps_mean']:.4f}"
    )
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"wrote {', '.join(str(p) for p in written)}")
