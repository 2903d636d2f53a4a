"""Predictive distributions for fits with covariates, groups or periods.

Such a fit has no single generator per draw: every aggregated row (and every
respondent of the prevalence check) has its own generator pieces. These helpers
rebuild the fit's design from the file, check it against the stored pointwise
log-likelihood and evaluate the next-state distributions with the likelihood kernel,
for :mod:`markov_migration.results.ppc`.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.core.draws import select_draws
from markov_migration.core.likelihood import row_loglik_draws
from markov_migration.defaults import PPC_DRAWS, SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.fitfile.generators import design_generators
from markov_migration.fitfile.readback import aggregated_from_fit, embeds_panel, recorded_panel
from markov_migration.inputs.aggregate import LEAD_TIME, START_PERIOD, period_keys
from markov_migration.inputs.columns import model_columns
from markov_migration.inputs.design import model_design


def has_keys(tree: xr.DataTree) -> bool:
    """Whether the fit's observed data has covariate, group or period columns."""
    obs = tree["observed_data"]
    return any(v not in ("from", "to", "interval", "count") for v in obs.data_vars)


def thinned_indices(post: xr.Dataset | xr.DataTree, n_draws: int) -> np.ndarray:
    """Indices of at most ``n_draws`` flattened posterior samples, evenly spread."""
    n_total = int(np.prod([post.sizes[d] for d in SAMPLE_DIMS]))
    # never more draws than the posterior holds: replications of one sample add nothing
    return select_draws(n_total, min(n_draws, n_total))


def keyed_row_groups(
    tree: xr.DataTree, n_draws: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predictive groups of a fit with covariates, groups or periods.

    Rebuilds the fit's design from its ``observed_data`` (checked: the rebuilt
    likelihood reproduces the stored pointwise log-likelihood), groups the rows
    by starting state and generator pieces, and evaluates ``P[from, s]`` of each
    group for every state ``s`` with the likelihood kernel.

    Returns
    -------
    row_group : (n_rows,) group of each aggregated row
    g_from, g_interval : (G,) starting state and interval of each group
    probs : (D, G, K) predictive distribution of the next state
    """
    spec = fit_spec(tree)
    if spec.time != "continuous":
        raise InputError(
            "predictive checks of discrete-time fits with covariates are not supported"
        )
    agg = aggregated_from_fit(tree)
    design = model_design(spec, agg)
    data = design.likelihood
    post = tree["posterior"].to_dataset()
    draws = thinned_indices(post, n_draws)
    q = design_generators(spec, design, post, draws)
    # the rebuilt design must give the log-likelihood stored at fitting time
    stored = tree["log_likelihood"]["transitions"].transpose(*SAMPLE_DIMS, "obs").to_numpy()
    stored = stored.reshape(-1, stored.shape[-1])[draws]
    again = row_loglik_draws(q, *data.arrays()) * data.row_count
    if not np.allclose(again, stored, rtol=1e-8, atol=1e-8):
        raise InputError("could not rebuild the fit's likelihood from its observed data")

    pieces = [
        tuple(data.row_piece[data.row_ptr[r] : data.row_ptr[r + 1]]) for r in range(data.n_rows)
    ]
    keys = list(zip(data.row_from.tolist(), pieces, strict=True))
    index: dict = {}
    row_group = np.array([index.setdefault(key, len(index)) for key in keys], dtype=np.int64)
    first = np.unique(row_group, return_index=True)[1]  # a representative row per group
    g_from = data.row_from[first]
    g_interval = np.asarray(agg.table["interval"], dtype=float)[first]
    probs = destination_probs(q, data, first, spec.n_states)
    return row_group, g_from, g_interval, probs


def destination_probs(q: np.ndarray, data, rows: np.ndarray, k: int) -> np.ndarray:
    """``P_r[from_r, s]`` for every draw, chosen row r of a likelihood layout and state s.

    ``q`` (D, M, K, K) generators, ``data`` the :class:`LikelihoodData` whose
    rows' pieces (products over period pieces included) give ``P_r``.
    Returns (D, len(rows), K).
    """
    rows = np.repeat(np.asarray(rows, dtype=np.int64), k)  # every row once per destination
    lengths = data.row_ptr[rows + 1] - data.row_ptr[rows]
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    piece = np.concatenate([data.row_piece[data.row_ptr[r] : data.row_ptr[r + 1]] for r in rows])
    dest = np.tile(np.arange(k, dtype=np.int64), rows.size // k)
    with np.errstate(divide="ignore"):
        logp = row_loglik_draws(
            q, data.piece_q, data.piece_t, ptr.astype(np.int64), piece.astype(np.int64),
            data.row_from[rows], dest,
        )  # fmt: skip
    return np.exp(logp).reshape(q.shape[0], rows.size // k, k)


def keyed_prevalence_rows(
    tree: xr.DataTree,
    first_obs: np.ndarray,
    t0: np.ndarray,
    s0: np.ndarray,
    dt: np.ndarray,
    n_draws: int,
):
    """Expected state distribution of observations of a fit with covariates, groups or periods.

    Observation ``i`` is ``dt[i]`` after its respondent's first observation
    (row ``first_obs[i]`` of the embedded panel, at ``t0[i]`` in state ``s0[i]``),
    with the covariates and group of that first observation. Each becomes a
    row with count 0 appended to the fit's aggregated data, so the rebuilt
    design keeps the fit's levels, centres and effects, and the kernel gives
    ``P[s0, :]`` from each row's own generator pieces (periods crossed
    included).

    Returns
    -------
    q : (D, M, K, K) generators of the thinned draws
    data : LikelihoodData of the rebuilt design
    rows : (U,) its rows of the distinct observations (same keys)
    key_index : (n,) distinct observation of each observation
    """
    spec = fit_spec(tree)
    if spec.time != "continuous":
        raise InputError(
            "predictive checks of discrete-time fits with covariates are not supported"
        )
    if not embeds_panel(tree, spec):
        raise InputError(
            "the fit file's embedded panel lacks its covariate or group columns (written by an "
            "older version): no prevalence check"
        )
    agg = aggregated_from_fit(tree)
    panel = recorded_panel(tree, spec).data
    extra = pd.DataFrame(
        {"from": s0, "to": s0, "interval": dt, "count": np.zeros(dt.size)},
    )
    for c in model_columns(spec):
        extra[c] = panel[c].to_numpy()[first_obs]
    if spec.periods:
        ticks = np.round(dt / agg.resolution)
        extra[START_PERIOD], extra[LEAD_TIME] = period_keys(t0, ticks, spec, agg.resolution)
    keys = [c for c in extra.columns if c != "count"]
    key_index = extra.groupby(keys, sort=False, observed=True).ngroup().to_numpy()
    unique = extra.drop_duplicates(keys).reset_index(drop=True)
    table = pd.concat([agg.table, unique[agg.table.columns]], ignore_index=True)
    design = model_design(spec, replace(agg, table=table))
    post = tree["posterior"]
    effects = (
        [str(x) for x in post["covariate_effect"].values]
        if "covariate_effect" in post.coords
        else []
    )
    groups = [str(x) for x in post["group"].values] if "group" in post.coords else []
    if [e.label for e in design.effects] != effects or list(design.group_levels) != groups:
        raise InputError(
            "respondents' first covariate values or groups are not among the fit's: "
            "no prevalence check"
        )
    post = post.to_dataset()
    draws = thinned_indices(post, n_draws)
    q = design_generators(spec, design, post, draws)
    rows = len(agg.table) + np.arange(len(unique))
    return q, design.likelihood, rows, key_index


def keyed_gap_matrices(
    tree: xr.DataTree,
    start_rows: np.ndarray,
    start_times: np.ndarray,
    gaps: np.ndarray,
    n_draws: int = PPC_DRAWS,
) -> tuple[np.ndarray, np.ndarray]:
    """``P(gap)`` per draw and distinct gap of a fit with covariates, groups or periods.

    Gap ``i`` starts at row ``start_rows[i]`` of the embedded panel (its covariates
    and group) at ``start_times[i]`` (the periods it crosses). Every row of its
    ``P`` comes from the likelihood kernel through
    :func:`~markov_migration.results.ppc_keyed.keyed_prevalence_rows`, one
    starting state at a time.
    """
    states = json.loads(tree.attrs["states"])
    k = len(states)
    n = np.asarray(gaps).size
    origin = np.tile(np.arange(k), n)
    q, data, rows, key_index = keyed_prevalence_rows(
        tree, np.repeat(start_rows, k), np.repeat(start_times, k), origin,
        np.repeat(gaps, k), n_draws,
    )  # fmt: skip
    # gaps with the same rows for every starting state share one matrix
    per_gap = key_index.reshape(n, k)
    distinct, key = np.unique(per_gap, axis=0, return_inverse=True)
    chunk = max(1, 4_000_000 // (q.shape[0] * k * k))
    p = np.concatenate(
        [
            destination_probs(q, data, rows[distinct[i : i + chunk].ravel()], k)
            for i in range(0, distinct.shape[0], chunk)
        ],
        axis=1,
    )
    return p.reshape(q.shape[0], distinct.shape[0], k, k), key.ravel()
