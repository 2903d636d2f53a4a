"""The PIT figure of a backtest and the files ``backtest --out`` writes.

Layer 5 (plots): matplotlib ``Figure`` objects (no pyplot state, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from markov_migration.errors import InputError
from markov_migration.io import atomic_output, check_output
from markov_migration.results.backtest import Backtest

#: Files ``backtest --out DIR`` writes, in order (the refit is ``refit.nc``).
BACKTEST_FILES: tuple[str, ...] = (
    "coverage.csv",
    "scores.csv",
    "predictions.csv",
    "pit.png",
    "refit.nc",
)
#: Bins of the PIT histogram.
PIT_BINS = 20


def pit_figure(result: Backtest):
    """Histogram of the respondents' PITs and ECDF of the counts' and prevalences' PITs.

    Left: randomized PIT of every held-out destination, with the uniform density
    and a band of +-2 binomial sd per bin (where a calibrated forecast's bars fall
    about 95% of the time). Right: empirical CDF of the PITs of the predicted
    transition counts and prevalences against the diagonal, with the 95%
    Dvoretzky-Kiefer-Wolfowitz band (treating them as independent, which they are
    not: cells of one forecast share its posterior draws).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    pit = np.asarray(result.pit)
    n = pit.size
    ax.hist(pit, bins=PIT_BINS, range=(0, 1), density=True, color="#4477aa", alpha=0.8)
    p = 1.0 / PIT_BINS
    band = 2 * np.sqrt(p * (1 - p) / max(n, 1)) / p
    ax.axhspan(1 - band, 1 + band, color="grey", alpha=0.25, lw=0)
    ax.axhline(1.0, color="black", lw=1)
    ax.set(
        xlabel="PIT of the held-out destination",
        ylabel="density",
        title=f"Held-out respondents (n = {n:,})",
        xlim=(0, 1),
    )
    pred = result.predictions
    for prefix, colour, label in (("count:", "#cc6677", "transition counts"),
                                  ("prevalence:", "#117733", "prevalence by state")):  # fmt: skip
        sel = pred["quantity"].str.startswith(prefix).to_numpy()
        if sel.any():
            x = np.sort(pred["pit"].to_numpy()[sel])
            y = np.arange(1, x.size + 1) / x.size
            ax2.step(np.r_[0, x, 1], np.r_[0, y, 1], where="post", color=colour,
                     label=f"{label} ({x.size})")  # fmt: skip
    m = len(pred)
    eps = np.sqrt(np.log(2 / 0.05) / (2 * max(m, 1)))
    grid = np.linspace(0, 1, 101)
    ax2.fill_between(grid, np.clip(grid - eps, 0, 1), np.clip(grid + eps, 0, 1), color="grey",
                     alpha=0.25, lw=0, label="95% DKW band (all)")  # fmt: skip
    ax2.plot([0, 1], [0, 1], color="black", lw=1)
    ax2.set(xlabel="PIT", ylabel="empirical CDF", title="Predicted counts and prevalences",
            xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    ax2.legend(loc="upper left", fontsize=8)
    return fig


def planned_outputs(out_dir: str | Path, force: bool = False) -> list[Path]:
    """Check that ``out_dir`` can take the backtest's files; refuse before any work."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out exists and is not a folder", path=out_dir)
    paths = [out_dir / n for n in BACKTEST_FILES]
    if out_dir.exists():
        for p in paths:
            check_output(p, force)
    return paths


def write_backtest(result: Backtest, tree, out_dir: str | Path, force: bool = False) -> list[Path]:
    """Write the backtest's tables, PIT figure and refit into ``out_dir`` (atomically each).

    Returns
    -------
    list of Path
        The files written, in the order of :data:`BACKTEST_FILES`.
    """
    from markov_migration.fitfile.format import write_fit

    paths = planned_outputs(out_dir, force)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tables = {
        "coverage.csv": result.coverage,
        "scores.csv": result.scores,
        "predictions.csv": result.predictions,
    }
    for p in paths:
        if p.name in tables:
            with atomic_output(p, force) as tmp:
                tables[p.name].to_csv(tmp, index=False, float_format="%.6g")
        elif p.suffix == ".png":
            with atomic_output(p, force) as tmp:
                pit_figure(result).savefig(tmp, format="png")
        else:
            write_fit(tree, p, force)
    return paths
