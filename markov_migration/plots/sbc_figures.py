"""Figures of a simulation-based calibration run: ECDF-difference plots of the ranks.

The ranks (``0..draws``) are turned into PIT values ``(rank + u) / (draws + 1)`` with
``u ~ Uniform(0, 1)`` (seeded), which are exactly Uniform(0, 1) when the ranks are
uniform; :func:`arviz_plots.plot_ecdf_pit` draws the difference between their ECDF and
the uniform CDF, one panel per parameter, with ArviZ's default uniformity test
(``method="pot_c"``: pointwise tests of the ECDF combined by the Cauchy combination rule
into one p-value per panel, printed in its corner; points where the ECDF is implausible
are marked). Its simultaneous-envelope method (``method="envelope"``) fails in
arviz-plots 1.3.2 (``np.linspace`` given a DataArray), so it is not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

#: Level at which ArviZ marks suspicious points and judges its p-value.
ENVELOPE_PROB = 0.99


def rank_pit(ranks: pd.DataFrame, seed: int = 0) -> xr.Dataset:
    """PIT values of the ranks, dims ``(sim, parameter)`` (variable ``pit``)."""
    wide = ranks.pivot(index="sim", columns="parameter", values="rank")
    wide = wide[list(dict.fromkeys(ranks["parameter"]))]
    draws = int(ranks["draws"].iloc[0])
    u = np.random.default_rng(seed).uniform(size=wide.shape)
    pit = (wide.to_numpy(dtype=float) + u) / (draws + 1)
    return xr.Dataset(
        {"pit": (("sim", "parameter"), pit)},
        coords={"sim": wide.index.to_numpy(), "parameter": list(wide.columns)},
    )


def ecdf_figure(
    ranks: pd.DataFrame, path: str | Path, *, seed: int = 0, cols: int | None = None
) -> Path:
    """Write the ECDF-difference plots of every parameter to a PNG (see module docstring)."""
    import arviz_plots as ap
    import matplotlib
    from arviz_base import rc_context
    from arviz_base.labels import NoVarLabeller

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pit = rank_pit(ranks, seed)
    n = pit.sizes["parameter"]
    cols = cols or (4 if n <= 20 else 6)
    rows = -(-n // cols)
    tree = xr.DataTree.from_dict({"prior_sbc": pit})
    with rc_context({"plot.max_subplots": max(40, n)}):  # 5 states: 41 parameters
        pc = _plot(ap, tree, cols, n, rows, NoVarLabeller)
    fig = pc.viz["figure"].item() if hasattr(pc.viz["figure"], "item") else pc.viz["figure"]
    fig.suptitle(
        f"SBC: ECDF - uniform CDF of {pit.sizes['sim']} ranks out of "
        f"{int(ranks['draws'].iloc[0])} draws (p: ArviZ pot_c uniformity test)"
    )
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _plot(ap, tree, cols, n, rows, labeller):
    """The arviz-plots call (one panel per parameter)."""
    return ap.plot_ecdf_pit(
        tree,
        sample_dims=["sim"],
        envelope_prob=ENVELOPE_PROB,
        backend="matplotlib",
        labeller=labeller(),  # panel titles: the parameter alone
        visuals={"xlabel": False},  # the x axis is the PIT in every panel (see the title)
        col_wrap=cols,
        figure_kwargs={"figsize": (3.2 * min(cols, n), 3.0 * rows)},
    )
