"""Pearson-type goodness-of-fit test of a fit, as R msm's ``pearson.msm``, and its Bayesian use.

Layer 4 (results); reads fit files, never imports PyMC. The arithmetic is in
:mod:`markov_migration.core.pearson`.

Every interval between consecutive observations of a respondent in the fit's embedded
panel is a transition ``from -> to`` over ``dt``. As ``pearson.msm`` does, the
transitions are grouped by the observation time that ends them (``timegroups``
quantile groups) and, within each, by interval length (``intervalgroups`` quantile
groups), and within each category and from-state the observed counts of each reachable
to-state are compared with ``E = sum P(dt)[from, to]``; the statistic is
``X = sum (O - E)^2 / E``.

Two uses:

- **Plug-in, comparable with msm**: ``E`` from ``P(dt)`` of the posterior mean
  generator (msm uses its MLE), with msm's reference distributions: the ``chi2``
  bounds ``p_lower`` (``df_upper`` less the number of intensities) and ``p_upper``,
  and Titman's (2009) asymptotic p-value ``p``. These treat the posterior mean as an
  MLE; they are approximate for a Bayesian fit.
- **Posterior predictive p-value** (the check): for each of ``n_draws`` posterior draws
  ``theta_d``, ``X(y, theta_d)`` of the observed panel against the expectations of
  ``theta_d``, and ``X(y_rep, theta_d)`` of a panel replicated from the joint Markov
  predictive (each respondent's states simulated from their first observed state,
  observation to observation, through ``P(gap)`` of ``theta_d``; same times, so the same
  categories). The p-value is the share of draws whose replicated panel was at least as
  discrepant as the observed one; the check fails below ``THRESHOLDS["ppp_min"]``.
  Posterior predictive p-values can be conservative (Hjort et al. 2006); for this
  many-celled statistic they were close to uniform under a true model, and close to
  Titman's p, in the calibration of ``tests/test_pearson.py`` (docs/results.md).

Fits with covariates, groups or periods use each interval's own ``P`` (from the
likelihood kernel) and have no covariate groups (msm's ``covgroups``); their plug-in
expectation is the posterior mean of ``P`` over the draws, and only ``p_upper`` is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.core.pearson import (
    Categories,
    chi_square_bounds,
    degrees_of_freedom,
    interval_transitions,
    msm_categories,
    pearson_statistic,
    pearson_tables,
    pmatrix_derivatives,
    titman_weights,
    weighted_chi_square_sf,
)
from markov_migration.core.ppc import ppp
from markov_migration.defaults import CI_PROB, PPC_DRAWS, SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.format import fit_spec
from markov_migration.fitfile.readback import panel_sequences
from markov_migration.results.ppc import PPCResult, gap_matrices, simulate_paths
from markov_migration.results.ppc_keyed import has_keys, keyed_gap_matrices

#: msm's default numbers of observation-time and interval groups.
TIME_GROUPS = 3
INTERVAL_GROUPS = 3
#: The plug-in test evaluates ``P`` and its derivatives at each distinct interval as
#: msm does, up to this many; beyond, at the intervals rounded to the fit's resolution.
MAX_EXACT_INTERVALS = 5000
#: Largest number of per-interval probabilities (draws x intervals x states) held at once.
CHUNK_ELEMENTS = 4_000_000


@dataclass
class PearsonResult(PPCResult):
    """The Pearson-type test: per-draw discrepancies (the check) and the plug-in test.

    Attributes (beyond :class:`~markov_migration.results.ppc.PPCResult`)
    --------------------------------------------------------------------
    statistic : float
        ``X`` at the plug-in expectations (posterior mean generator).
    df_lower, df_upper : int
        msm's degrees of freedom (``df_lower`` is ``df_upper`` less the intensities).
    p_lower, p_upper : float
        ``chi2`` tail probabilities of ``statistic`` with ``df_lower``, ``df_upper``.
    p : float
        Titman's (2009) asymptotic p-value (nan when not available).
    weights : ndarray
        Titman's weights of the ``chi2(1)`` terms (empty when not available).
    categories : Categories
        The groupings (cut points of observation time and of intervals).
    """

    statistic: float = float("nan")
    df_lower: int = 0
    df_upper: int = 0
    p_lower: float = float("nan")
    p_upper: float = float("nan")
    p: float = float("nan")
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    categories: Categories | None = None


def group_labels(breaks: np.ndarray, digits: int = 3) -> list[str]:
    """Labels ``[a, b)`` of the groups between ``breaks``, the last ``[a, b]``."""
    n = breaks.size - 1
    return [
        f"[{breaks[i]:.{digits}g}, {breaks[i + 1]:.{digits}g}{']' if i == n - 1 else ')'}"
        for i in range(n)
    ]


def pearson_test(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    ci: float = CI_PROB,
    seed: int = 0,
    timegroups: int = TIME_GROUPS,
    intervalgroups: int = INTERVAL_GROUPS,
) -> PearsonResult:
    """Pearson-type goodness-of-fit test of a fit (msm's ``pearson.msm``), plug-in and predictive.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit with its panel embedded.
    n_draws : int
        Posterior draws of the predictive p-value (thinned evenly).
    ci : float
        Probability of the replicated-count intervals in the table.
    seed : int
        Seed of the replications.
    timegroups, intervalgroups : int
        Quantile groups of the observation time ending each interval, and of the
        interval length within each time group (msm's defaults 3 and 3).

    Returns
    -------
    PearsonResult
        ``table`` columns: ``time_group, interval_group, from, to, observed, expected,
        deviance, replicated_lower, replicated_upper``: per category and interval
        transition, observed transitions (count), plug-in expected (count), msm's
        signed deviance ``sign(O - E) (O - E)^2 / E``, and the ``ci`` interval of the
        replicated counts.

    Raises
    ------
    InputError
        If the fit has no embedded panel, has an observation model (``[observation]``,
        ``[misclassification]``, ``[phases]``) or no respondent has two observations.
    """
    if timegroups < 1 or intervalgroups < 1:
        raise InputError("the Pearson test needs at least one time and one interval group")
    if "panel_data" not in tree.children:
        raise InputError(
            "the fit file has no embedded panel (fitted from a counts table?): no Pearson test"
        )
    spec = fit_spec(tree)
    if spec.observation.latent:
        # msm modifies the test for these (Titman and Sharples 2008: imputed scheduled
        # times after exact deaths, hidden-state probabilities); not implemented here
        raise InputError(
            "the fit has an observation model (exact times, censoring, misclassification "
            "or phases): no Pearson test"
        )
    states = json.loads(tree.attrs["states"])
    k = len(states)
    resp, time, state, first, order = panel_sequences(tree)
    later = np.flatnonzero(~first)
    if later.size == 0:
        raise InputError("no respondent has two observations: no Pearson test")
    origin, destination = state[later - 1], state[later]
    dt = time[later] - time[later - 1]
    cats = msm_categories(time[later], dt, timegroups, intervalgroups)
    allowed = np.zeros((k, k), dtype=bool)
    for r, s in spec.transitions:
        allowed[r, s] = True
    pairs = interval_transitions(allowed)

    keyed = has_keys(tree)
    resolution = (
        float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 1.0
    )
    gap = np.round(dt / resolution) * resolution
    if keyed:
        p_gap, gap_key = keyed_gap_matrices(tree, order[later - 1], time[later - 1], gap, n_draws)
    else:
        p_gap, gap_key = gap_matrices(tree, gap, n_draws)
    n_draw = p_gap.shape[0]
    rng = np.random.default_rng(seed + 3)
    sim = simulate_paths(rng, p_gap, state[first], resp_start=first, gap_key=gap_key)
    rep_from, rep_to = sim[:, later - 1], sim[:, later]
    del sim

    # the predictive p-value: observed and replicated panels against each draw's
    # expectations, a chunk of draws at a time (the per-interval rows are (draws, n, K))
    obs = np.zeros((cats.n_categories, k, k))
    rep = np.zeros((n_draw, cats.n_categories, k, k))
    x_obs, x_rep = np.zeros(n_draw), np.zeros(n_draw)
    mean_probs = np.zeros((later.size, k))
    chunk = max(1, CHUNK_ELEMENTS // (later.size * k))
    for lo in range(0, n_draw, chunk):
        d = np.arange(lo, min(lo + chunk, n_draw))[:, None]
        probs = p_gap[d, gap_key[None, :], origin[None, :]]
        o, e = pearson_tables(cats.code, origin, destination, probs, cats.n_categories)
        obs, x_obs[d[:, 0]] = o[0], pearson_statistic(o, e, pairs)
        mean_probs += probs.sum(axis=0) / n_draw
        probs = p_gap[d, gap_key[None, :], rep_from[d[:, 0]]]
        r, e = pearson_tables(
            cats.code, rep_from[d[:, 0]], rep_to[d[:, 0]], probs, cats.n_categories
        )
        rep[d[:, 0]], x_rep[d[:, 0]] = r, pearson_statistic(r, e, pairs)

    plug = _plug_in(tree, spec, cats, origin, destination, dt, gap, pairs, keyed, mean_probs, obs)
    table = _table(cats, states, pairs, obs, plug["expected"], rep, ci)
    notes = [
        f"{later.size} intervals of {np.unique(resp[later]).size} respondents in "
        f"{cats.n_time} observation-time x {cats.n_interval} interval groups",
        f"plug-in (posterior mean) statistic {plug['statistic']:.1f}, df {plug['df_lower']}"
        f"-{plug['df_upper']}: chi-square p between {plug['p_lower']:.3g} and "
        f"{plug['p_upper']:.3g}"
        + (f", Titman's p {plug['p']:.3g}" if np.isfinite(plug["p"]) else ""),
        f"posterior predictive p-value {ppp(x_obs, x_rep):.3f}: replicated panels were at least "
        f"as discrepant as the observed one in {100 * ppp(x_obs, x_rep):.1f}% of {n_draw} draws",
    ]
    return PearsonResult(
        table, x_obs, x_rep, ppp(x_obs, x_rep), ci, notes,
        statistic=plug["statistic"], df_lower=plug["df_lower"], df_upper=plug["df_upper"],
        p_lower=plug["p_lower"], p_upper=plug["p_upper"], p=plug["p"],
        weights=plug["weights"], categories=cats,
    )  # fmt: skip


def _plug_in(
    tree, spec, cats, origin, destination, dt, gap, pairs, keyed, mean_probs, observed
) -> dict:
    """The test as msm computes it, at the posterior mean (keyed or discrete fits: mean ``P``)."""
    post = tree["posterior"]
    continuous = "Q" in post and not keyed
    weights = np.zeros(0)
    if continuous:
        q = post["Q"].transpose(*SAMPLE_DIMS, "from_state", "to_state").to_numpy()
        q = q.reshape(-1, *q.shape[-2:]).mean(axis=0)
        moves = np.array(spec.transitions, dtype=np.int64).reshape(-1, 2)
        # msm's exact intervals; the fit's rounded ones when there are very many distinct
        exact = np.unique(dt).size <= MAX_EXACT_INTERVALS
        p_u, dp_u, key = pmatrix_derivatives(q, dt if exact else gap, moves)
        p_i, dp_i = p_u[key, origin], dp_u[key, origin]
        _, expected = pearson_tables(cats.code, origin, destination, p_i, cats.n_categories)
    else:
        p_i = mean_probs
        _, expected = pearson_tables(cats.code, origin, destination, p_i, cats.n_categories)
    stat = float(pearson_statistic(observed, expected, pairs))
    n_par = len(spec.transitions)
    df_lower, df_upper = degrees_of_freedom(observed, pairs, n_par)
    p_lower, p_upper = chi_square_bounds(stat, df_lower, df_upper)
    p = float("nan")
    if continuous:
        try:
            weights = titman_weights(cats.code, origin, p_i, dp_i, expected, pairs)
            p = weighted_chi_square_sf(stat, weights)
        except np.linalg.LinAlgError:
            weights = np.zeros(0)  # singular information: bounds only
    if keyed or not continuous:
        df_lower, p_lower = df_upper, p_upper  # the parameter count does not apply
    return {
        "expected": expected, "statistic": stat, "df_lower": df_lower, "df_upper": df_upper,
        "p_lower": p_lower, "p_upper": p_upper, "p": p, "weights": weights,
    }  # fmt: skip


def _table(cats, states, pairs, observed, expected, replicated, ci) -> pd.DataFrame:
    """One row per category and interval transition (msm's rows and columns, long)."""
    time_labels = group_labels(cats.time_breaks)
    rows = []
    lo, hi = np.quantile(replicated, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    for c in range(cats.n_categories):
        tg, ig = divmod(c, cats.n_interval)
        breaks = cats.interval_breaks[tg]
        if ig >= breaks.size - 1:
            continue  # this time group has fewer interval groups
        interval_label = group_labels(breaks)[ig]
        for a, b in pairs:
            o, e = observed[c, a, b], expected[c, a, b]
            rows.append(
                {
                    "time_group": time_labels[tg],
                    "interval_group": interval_label,
                    "from": states[a],
                    "to": states[b],
                    "observed": int(o),
                    "expected": e,
                    "deviance": np.sign(o - e) * (o - e) ** 2 / (e + (e == 0)),
                    "replicated_lower": lo[c, a, b],
                    "replicated_upper": hi[c, a, b],
                }
            )
    return pd.DataFrame(rows)
