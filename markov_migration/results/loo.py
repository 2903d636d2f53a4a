"""What PSIS-LOO results and units share: the result record, draw checks, panel pairs.

Layer 4 (results). Used by :mod:`markov_migration.results.compare` (units
``transition`` and ``row``) and :mod:`markov_migration.results.compare_respondent`
(unit ``respondent``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import LOO_FEW_DRAWS, LOO_MIN_DRAWS
from markov_migration.errors import InputError


@dataclass
class LooResult:
    """PSIS-LOO of one fit.

    Attributes
    ----------
    name : str
    elpd : arviz_stats.ELPDDataLOO
        With pointwise ``elpd_i`` and ``pareto_k`` over the units.
    unit : {"transition", "row"}
    n_rows : int
        Aggregated rows.
    n_units : int
        Observations LOO left out one at a time (transitions or rows).
    high_k_rows : int
        Rows with Pareto k above ``elpd.good_k``.
    high_k_units : int
        Units with Pareto k above ``elpd.good_k``.
    notes : list of str
    """

    name: str
    elpd: object
    unit: str
    n_rows: int
    n_units: int
    high_k_rows: int
    high_k_units: int
    notes: list[str] = field(default_factory=list)

    @property
    def max_k(self) -> float:
        """Largest Pareto k."""
        return float(np.max(self.elpd.pareto_k.values)) if self.n_units else float("nan")


def panel_pairs(tree: xr.DataTree) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The embedded panel's observation pairs and the aggregated row of each, or None.

    ``None`` when the fit does not embed its panel with every column its model
    reads. Raises InputError when the embedded panel does not reproduce the
    fit's aggregated data.
    """
    from markov_migration.fitfile.format import fit_spec
    from markov_migration.fitfile.readback import embeds_panel, recorded_data
    from markov_migration.inputs.aggregate import pair_rows

    spec = fit_spec(tree)
    if not embeds_panel(tree, spec):
        return None
    # the embedded panel, re-aggregated and checked against observed_data
    panel, agg, _ = recorded_data(tree, spec)
    return pair_rows(panel, spec, agg)


def check_draws(n_draws: int, name: str) -> list[str]:
    """Refuse too few posterior draws for PSIS-LOO; a note when they are few."""
    if n_draws < LOO_MIN_DRAWS:
        raise InputError(
            f"{name}: {n_draws} posterior draws are too few for PSIS-LOO "
            f"(at least {LOO_MIN_DRAWS}; refit with more --draws)"
        )
    if n_draws < LOO_FEW_DRAWS:
        return [f"only {n_draws} posterior draws: LOO estimates are noisy"]
    return []
