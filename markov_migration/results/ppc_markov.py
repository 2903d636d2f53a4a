"""Posterior predictive check of the Markov assumption on triples of observations.

Layer 4 (results); reads fit files, never imports PyMC.

For every respondent with at least three observations, each consecutive triple
(``s1`` at ``t1``, ``s2`` at ``t2``, ``s3`` at ``t3``) is a cell ``(s1, s2, s3)``.
Under a Markov model the third state depends on the past only through the second:
given ``(s1, s2)``, ``s3`` is distributed as row ``s2`` of ``P(t3 - t2)``, whatever
``s1`` was. The discrepancy is Pearson's chi-square of the observed counts of
``s3`` within each ``(s1, s2)`` against ``E[s1, s2, s3] = sum P(t3 - t2)[s2, s3]``
over the triples in ``(s1, s2)``. A mover-stayer population breaks it: respondents
who stayed from ``t1`` to ``t2`` stay again more often, and those who just moved
move again more often, than a single generator says.

The replications are the joint Markov predictive (as the prevalence check of
:mod:`markov_migration.results.ppc`): each respondent's states are simulated from
their first observed state, observation to observation, through ``P(gap)`` of the
draw; the replicated triples and the discrepancy's conditioning on ``(s1, s2)``
come from the replicated panel. The posterior predictive p-value is the share of
replicated data sets whose discrepancy is at least as large as the observed
data's; the check fails below ``THRESHOLDS["ppp_min"]``. The discrepancy also
reacts to a misfit of ``P(t)`` itself (the transition-count check sees that
too); a failure here while the transition counts pass points at the Markov
assumption. Fits with covariates, groups or periods are not checked.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.core.ppc import chi_square, ppp, triple_cell_counts, triple_expected
from markov_migration.defaults import CI_PROB, PPC_DRAWS
from markov_migration.errors import InputError
from markov_migration.fitfile.readback import panel_sequences
from markov_migration.results.ppc import PPCResult, gap_matrices, simulate_paths
from markov_migration.results.ppc_keyed import has_keys


def ppc_markov(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    ci: float = CI_PROB,
    seed: int = 0,
) -> PPCResult:
    """Observed vs replicated third states of observation triples, given the first two.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit with its panel embedded, without covariates, groups or periods.
    n_draws : int
        Posterior draws used (thinned evenly).
    ci : float
        Probability of the replicated intervals.
    seed : int
        Seed of the replications.

    Returns
    -------
    PPCResult
        ``table`` columns: ``first, second, third, n, observed, expected,
        observed_pct, expected_pct, mean_pct, median_pct, lower_pct, upper_pct``:
        ``n`` observed triples starting ``(first, second)``, ``observed`` of them
        ending in ``third`` (counts), ``expected`` its posterior mean expectation;
        percentages are of the triples starting ``(first, second)``, in the observed
        and (replicated intervals) in each replicated panel.

    Raises
    ------
    InputError
        If the fit has no embedded panel, has covariates, groups or periods, or no
        respondent has three observations.
    """
    if "panel_data" not in tree.children:
        raise InputError(
            "the fit file has no embedded panel (fitted from a counts table?): no Markov check"
        )
    if has_keys(tree):
        raise InputError("the fit has covariates, groups or periods: no Markov check")
    rng = np.random.default_rng(seed + 2)
    states = json.loads(tree.attrs["states"])
    k = len(states)
    resp, time, state, first, _ = panel_sequences(tree)
    # triples start where the respondent is the same two observations later
    t0 = np.flatnonzero(resp[:-2] == resp[2:]) if resp.size >= 3 else np.array([], dtype=np.int64)
    if t0.size == 0:
        raise InputError("no respondent has three observations: no Markov check")

    later = np.flatnonzero(~first)  # every observation after a first one
    gap = time[later] - time[later - 1]
    p_gap, gap_key = gap_matrices(tree, gap, n_draws)
    key_at = np.full(resp.size, -1, dtype=np.int64)
    key_at[later] = gap_key
    key3 = key_at[t0 + 2]  # the second gap of each triple

    obs = triple_cell_counts(state[t0], state[t0 + 1], state[t0 + 2], k)[0]
    exp_obs = triple_expected(state[t0], state[t0 + 1], key3, p_gap)  # (D, K^3)
    sim = simulate_paths(rng, p_gap, state[first], resp_start=first, gap_key=gap_key)
    a, b, c = sim[:, t0], sim[:, t0 + 1], sim[:, t0 + 2]
    rep = triple_cell_counts(a, b, c, k)
    exp_rep = triple_expected(a, b, key3, p_gap)
    x_obs = chi_square(obs[None, :], exp_obs)
    x_rep = chi_square(rep, exp_rep)

    n_obs = obs.reshape(k * k, k).sum(axis=1)  # triples per (s1, s2)
    n_rep = rep.reshape(-1, k * k, k).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        obs_pct = 100 * obs.reshape(k * k, k) / n_obs[:, None]
        exp_pct = 100 * exp_obs.mean(axis=0).reshape(k * k, k) / n_obs[:, None]
        rep_pct = 100 * rep.reshape(-1, k * k, k) / n_rep[:, :, None]
    lo, med, hi = (
        np.full((k * k, k), np.nan),
        np.full((k * k, k), np.nan),
        np.full((k * k, k), np.nan),
    )
    mean = np.full((k * k, k), np.nan)
    for g in range(k * k):
        ok = n_rep[:, g] > 0
        if ok.any():
            lo[g], med[g], hi[g] = np.quantile(
                rep_pct[ok, g], [(1 - ci) / 2, 0.5, (1 + ci) / 2], axis=0
            )
            mean[g] = rep_pct[ok, g].mean(axis=0)
    i1, i2, i3 = np.unravel_index(np.arange(k**3), (k, k, k))
    table = pd.DataFrame(
        {
            "first": [states[i] for i in i1],
            "second": [states[i] for i in i2],
            "third": [states[i] for i in i3],
            "n": np.repeat(n_obs, k).astype(np.int64),
            "observed": obs.astype(np.int64),
            "expected": exp_obs.mean(axis=0),
            "observed_pct": obs_pct.ravel(),
            "expected_pct": exp_pct.ravel(),
            "mean_pct": mean.ravel(),
            "median_pct": med.ravel(),
            "lower_pct": lo.ravel(),
            "upper_pct": hi.ravel(),
        }
    )
    keep = (table["n"].to_numpy() > 0) & (table["expected"].to_numpy() > 0)
    table = table[keep].reset_index(drop=True)
    n_resp = int(np.unique(resp[t0]).size)
    notes = [f"{t0.size} triples of {n_resp} respondents with three or more observations"]
    return PPCResult(table, x_obs, x_rep, ppp(x_obs, x_rep), ci, notes)
