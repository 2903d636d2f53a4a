"""Prior sensitivity by power-scaling, and transitions the data barely inform.

Layer 4 (results). :func:`prior_sensitivity` runs ArviZ's power-scaling
sensitivity diagnostic (``arviz_stats.psense_summary``; Kallioinen et al. 2024,
Stat Comput 34:57) on every sampled parameter of a fit: the prior, then the
likelihood, is raised to a power near 1 by Pareto-smoothed importance weights
and the change of each parameter's posterior is measured (cumulative Jensen-
Shannon distance per unit of log power). ArviZ's reading, with its threshold
0.05:

- prior sensitivity >= 0.05 and likelihood sensitivity >= 0.05: *prior-data
  conflict* (the prior and the data pull different ways);
- likelihood sensitivity < 0.05: a *weak likelihood*: the posterior of that
  parameter is mostly its prior (**prior-dominated**), e.g. a transition never or
  rarely observed.

For transitions (``log_rate``) the table also gives the number of observed moves
(from the fit's aggregated data), so a reviewer sees why. The fit file must hold a
``log_prior`` group (written by ``fit`` since this version: PyMC's
``compute_log_prior`` of the fitted model, so the prior is the model's own).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.defaults import SAMPLE_DIMS
from markov_migration.errors import InputError

#: ArviZ's threshold of the power-scaling sensitivity (psense_summary's default).
PSENSE_THRESHOLD = 0.05
#: Columns of ``prior_sensitivity.csv``.
SENSITIVITY_COLUMNS = ("parameter", "prior", "likelihood", "diagnosis", "observed", "flag")


def has_log_prior(tree: xr.DataTree) -> bool:
    """Whether a fit file holds the log prior of its draws."""
    return "log_prior" in tree.children and len(tree["log_prior"].data_vars) > 0


def prior_sensitivity(tree: xr.DataTree) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity of every sampled parameter.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SENSITIVITY_COLUMNS`: ``parameter`` (``name[label]``),
        ``prior`` and ``likelihood`` sensitivity, ArviZ's ``diagnosis``,
        ``observed`` (moves observed, for transitions; else empty) and ``flag``
        (``prior-data conflict``, ``prior-dominated`` or empty).

    Raises
    ------
    InputError
        A fit without ``log_prior`` (written by an older version; refit) or
        without a per-observation log-likelihood.
    """
    import arviz_stats as azs

    if not has_log_prior(tree):
        raise InputError(
            "the fit file has no log_prior group (written before prior sensitivity was "
            "recorded): refit to get it"
        )
    if "log_likelihood" not in tree.children:
        raise InputError("the fit file has no log_likelihood group: no prior sensitivity")
    log_prior = tree["log_prior"].to_dataset()
    prior_vars = [v for v in log_prior.data_vars if v in tree["posterior"]]
    # the transitions' intensities first (what a reviewer reads), then every sampled
    # variable; psense reweights the draws, so derived quantities work as well
    names = [v for v in ("log_rate", "log_hazard_ratio") if v in tree["posterior"]]
    names += [v for v in prior_vars if v not in names]
    post = tree["posterior"].to_dataset()[names]
    loglik = tree["log_likelihood"].to_dataset()
    # one log-likelihood variable: psense sums it over observations
    var = next(iter(loglik.data_vars))
    data = xr.DataTree.from_dict(
        {"posterior": post, "log_prior": log_prior[prior_vars], "log_likelihood": loglik[[var]]}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k warnings of the importance weights
        prior = azs.psense(data, group="prior", sample_dims=list(SAMPLE_DIMS))
        like = azs.psense(data, group="likelihood", sample_dims=list(SAMPLE_DIMS))
    counts = _observed_moves(tree)
    rows = []
    for name in names:
        p_da, l_da = prior[name], like[name]
        flat_p = p_da.stack(_i=p_da.dims) if p_da.dims else p_da.expand_dims(_i=[0])
        flat_l = l_da.stack(_i=l_da.dims) if l_da.dims else l_da.expand_dims(_i=[0])
        for i in range(flat_p.sizes["_i"]):
            label = _label(name, flat_p.isel(_i=i))
            ps, ls = float(flat_p.values[i]), float(flat_l.values[i])
            conflict = ps >= PSENSE_THRESHOLD and ls >= PSENSE_THRESHOLD
            weak = ls < PSENSE_THRESHOLD
            diagnosis = (
                "potential prior-data conflict"
                if conflict
                else "potential strong prior / weak likelihood"
                if weak
                else "-"
            )
            flag = "prior-data conflict" if conflict else "prior-dominated" if weak else ""
            key = (
                label.split("[", 1)[1].rstrip("]") if name == "log_rate" and "[" in label else None
            )
            observed = np.nan if key is None else counts.get(key, 0.0)
            rows.append((label, ps, ls, diagnosis, observed, flag))
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))


def _label(name: str, point: xr.DataArray) -> str:
    parts = [
        str(point.coords[d].values)
        for d in point.coords
        if d not in ("_i",) and point.coords[d].ndim == 0 and d not in point.dims
    ]
    return f"{name}[{', '.join(parts)}]" if parts else name


def _observed_moves(tree: xr.DataTree) -> dict[str, float]:
    """Observed moves ``a->b`` (weighted counts) from the fit's aggregated data."""
    import json

    if "observed_data" not in tree.children:
        return {}
    obs = tree["observed_data"]
    states = json.loads(tree.attrs["states"])
    frm = obs["from"].to_numpy().astype(np.int64)
    to = obs["to"].to_numpy().astype(np.int64)
    count = obs["count"].to_numpy().astype(float)
    out: dict[str, float] = {}
    for a, b, c in zip(frm, to, count, strict=True):
        if a != b and a < len(states) and b < len(states):
            key = f"{states[a]}->{states[b]}"
            out[key] = out.get(key, 0.0) + float(c)
    return out


def flagged(table: pd.DataFrame) -> dict[str, list[str]]:
    """Parameters flagged ``prior-dominated`` and ``prior-data conflict``."""
    return {
        kind: table.loc[table["flag"] == kind, "parameter"].tolist()
        for kind in ("prior-dominated", "prior-data conflict")
    }
