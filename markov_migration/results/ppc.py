"""Posterior predictive checks of a fit: transition counts and prevalence by wave.

Layer 4 (results); reads fit files, never imports PyMC. Both checks use up to
``n_draws`` posterior draws, thinned evenly.

``ppc_transitions``
    For every draw, the observed transitions are replicated: the respondents
    in each (from state, interval) row are redistributed over the to-states by
    a multinomial draw from the row of ``P(interval)``. Observed and replicated
    counts are compared by (from, to, interval band); the discrepancy is
    Pearson's chi-square ``X(y, theta) = sum (y - E)^2 / E`` over cells with a
    positive expectation ``E``, and the posterior predictive p-value is
    ``Pr(X(y_rep, theta) >= X(y, theta))``: the share of replicated data sets
    whose discrepancy is at least as large as the observed data's. The check
    fails when it is below 0.01 (fewer than 1% of the replications are as far
    from their expectation as the data).
``ppc_prevalence``
    Observation times are binned into waves; at every wave, the states of the
    respondents seen there (after an earlier first observation) are compared
    with the prevalence expected from each respondent's first observed state
    propagated by ``P(t - t_first)`` (as R msm's ``prevalence.msm``). The
    replications use the joint Markov predictive: each respondent's state is
    simulated from observation to observation, carried forward through
    ``P(gap)``, so a respondent's replicated states at different waves are
    dependent as the model says (replicating every wave independently from
    ``P(t - t_first)`` understates the spread of the discrepancy summed over
    waves). Same chi-square discrepancy and p-value rule. Needs the panel
    embedded in the fit file.

The two checks are not independent: prevalences are first-to-later
transitions. Both treat observations as unweighted. ArviZ's predictive checks
(``arviz_stats.loo_pit``, the ``arviz_plots`` ``ppc_*`` plots) work on
``posterior_predictive`` draws stored with a fit; these replications are drawn here
from ``P(t)`` and summed into cells, so the checks are our own. The array arithmetic
is in :mod:`markov_migration.core.ppc`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.core.ppc import (
    band_index,
    band_labels,
    chi_square,
    interval_bands,
    ppp,
    transition_matrices,
)
from markov_migration.defaults import CI_PROB, PPC_DRAWS, SAMPLE_DIMS
from markov_migration.errors import InputError
from markov_migration.fitfile.readback import panel_sequences
from markov_migration.inputs.waves import wave_bins, wave_index
from markov_migration.results.ppc_keyed import (
    destination_probs,
    has_keys,
    keyed_gap_matrices,
    keyed_prevalence_rows,
    keyed_row_groups,
    thinned_indices,
)

#: Default number of interval bands of the transition-count check.
PPC_BANDS = 3


@dataclass
class PPCResult:
    """A posterior predictive check.

    Attributes
    ----------
    table : pandas.DataFrame
        Observed vs replicated values per cell.
    observed_discrepancy, replicated_discrepancy : ndarray, shape (n_draws,)
        ``X(y, theta_d)`` and ``X(y_rep_d, theta_d)``.
    ppp : float
        Posterior predictive p-value ``Pr(X(y_rep) >= X(y))``.
    ci : float
        Probability of the intervals in ``table``.
    notes : list of str
    """

    table: pd.DataFrame
    observed_discrepancy: np.ndarray
    replicated_discrepancy: np.ndarray
    ppp: float
    ci: float
    notes: list[str] = field(default_factory=list)


def thinned_matrices(tree: xr.DataTree, n_draws: int = PPC_DRAWS) -> tuple[np.ndarray, bool]:
    """Up to ``n_draws`` posterior generators (or one-step matrices), evenly thinned.

    Returns
    -------
    matrices : ndarray, shape (D, K, K)
    discrete : bool
    """
    post = tree["posterior"]
    discrete = "Q" not in post
    m = post["P" if discrete else "Q"].transpose(*SAMPLE_DIMS, "from_state", "to_state").to_numpy()
    k = m.shape[-1]
    m = m.reshape(-1, k, k)
    return np.ascontiguousarray(m[thinned_indices(post, n_draws)]), discrete


def _resolution(tree: xr.DataTree) -> float:
    """Length of one time step of the fit (time units); 1 when the file records none."""
    return float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 1.0


def ppc_transitions(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    n_bands: int = PPC_BANDS,
    ci: float = CI_PROB,
    seed: int = 0,
) -> PPCResult:
    """Observed vs replicated transition counts by (from, to, interval band).

    Parameters
    ----------
    tree : xarray.DataTree
        A fit.
    n_draws : int
        Posterior draws used (thinned evenly).
    n_bands : int
        Interval bands (about equal numbers of transitions in each).
    ci : float
        Probability of the replicated-count intervals.
    seed : int
        Seed of the replications.

    Returns
    -------
    PPCResult
        ``table`` columns: ``from, to, band, band_lower, band_upper, observed,
        expected, mean, median, lower, upper`` (counts of transitions).
    """
    rng = np.random.default_rng(seed)
    obs = tree["observed_data"]
    states = json.loads(tree.attrs["states"])
    k = len(states)
    frm = obs["from"].to_numpy().astype(np.int64)
    to = obs["to"].to_numpy().astype(np.int64)
    count = obs["count"].to_numpy().astype(float)
    notes = []
    if not np.allclose(count, np.round(count)):
        notes.append("weighted counts were rounded to whole transitions for the replications")
    count = np.round(count).astype(np.int64)

    if has_keys(tree):
        # Rows share a predictive distribution when they share the starting state and
        # the generator pieces (covariate pattern, group, periods crossed, interval).
        row_g, g_from, g_interval, probs = keyed_row_groups(tree, n_draws)
    else:
        interval = obs["interval"].to_numpy().astype(float)
        intervals, row_iv = np.unique(interval, return_inverse=True)
        # groups: distinct (from, interval)
        gkey = frm * intervals.size + row_iv
        groups, row_g = np.unique(gkey, return_inverse=True)
        g_from, g_iv = groups // intervals.size, groups % intervals.size
        g_interval = intervals[g_iv]
        mats, discrete = thinned_matrices(tree, n_draws)
        resolution = _resolution(tree)
        p_iv = transition_matrices(mats, intervals, discrete, resolution)  # (D, I, K, K)
        probs = p_iv[:, g_iv, g_from, :]  # (D, G, K)
    # y[g, s]: observed counts of each group
    y = np.zeros((g_from.size, k), dtype=np.int64)
    np.add.at(y, (row_g, to), count)
    n_g = y.sum(axis=1)

    edges = interval_bands(g_interval, n_g.astype(float), n_bands)
    g_band = band_index(g_interval, edges)
    n_band = edges.size - 1 if edges.size > 1 else 1

    probs = np.clip(probs, 0.0, None)
    probs /= probs.sum(axis=-1, keepdims=True)
    y_rep = rng.multinomial(n_g[None, :], probs)  # (D, G, K)
    expected = n_g[None, :, None] * probs

    # cells (from, band, to)
    cell = g_from * n_band + g_band
    n_cells = k * n_band

    member = np.zeros((n_cells, g_from.size))
    member[cell, np.arange(g_from.size)] = 1.0

    def to_cells(a: np.ndarray) -> np.ndarray:
        """Sum groups (..., G, K) into cells, flattened to (..., n_cells * K)."""
        out = np.einsum("cg,...gk->...ck", member, a)
        return out.reshape(*a.shape[:-2], n_cells * k)

    y_cells = to_cells(y.astype(float))
    rep_cells = to_cells(y_rep.astype(float))
    exp_cells = to_cells(expected)
    x_obs = chi_square(y_cells[None, :], exp_cells)
    x_rep = chi_square(rep_cells, exp_cells)

    lo, med, hi = np.quantile(rep_cells, [(1 - ci) / 2, 0.5, (1 + ci) / 2], axis=0)
    fi, bi, ti = np.unravel_index(np.arange(n_cells * k), (k, n_band, k))
    labels = band_labels(edges)
    table = pd.DataFrame(
        {
            "from": [states[i] for i in fi],
            "to": [states[i] for i in ti],
            "band": [labels[i] for i in bi],
            "band_lower": edges[bi] if edges.size > 1 else edges[0],
            "band_upper": edges[bi + 1] if edges.size > 1 else edges[0],
            "observed": y_cells,
            "expected": exp_cells.mean(axis=0),
            "mean": rep_cells.mean(axis=0),
            "median": med,
            "lower": lo,
            "upper": hi,
        }
    )
    # keep cells that had respondents and a possible destination
    n_cell_from = np.zeros(n_cells)
    np.add.at(n_cell_from, cell, n_g)
    keep = (np.repeat(n_cell_from, k) > 0) & (table["expected"].to_numpy() > 0)
    table = table[keep].reset_index(drop=True)
    return PPCResult(table, x_obs, x_rep, ppp(x_obs, x_rep), ci, notes)


def ppc_prevalence(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    ci: float = CI_PROB,
    seed: int = 0,
) -> PPCResult:
    """Observed vs expected prevalence of each state at each wave.

    Every respondent seen at a wave after an earlier first observation counts
    once (their last observation in the wave); their expected state
    distribution is row ``s_first`` of ``P(t - t_first)``. Replicated states
    are simulated along each respondent's observation times from the first
    observed state, every gap from the state simulated at its start
    (:func:`simulate_paths`).

    Returns
    -------
    PPCResult
        ``table`` columns: ``wave, time, time_lower, time_upper, state, n,
        observed, observed_pct, expected_pct, mean_pct, median_pct,
        lower_pct, upper_pct`` (``n`` respondents at the wave, ``observed``
        of them in the state, percentages of ``n``; the intervals are
        posterior predictive, i.e. include the respondents' randomness).

    For fits with covariates, groups or periods every respondent's expected
    distribution comes from their own generator(s): the covariates and group
    of their first observation, and the periods the time since crosses; the
    replications use, for each gap, the covariates and group at its start
    (as the likelihood does) and the periods it crosses.

    Raises
    ------
    InputError
        If the fit file has no embedded panel.
    """
    if "panel_data" not in tree.children:
        raise InputError(
            "the fit file has no embedded panel (fitted from a counts table?): no prevalence check"
        )
    rng = np.random.default_rng(seed + 1)
    states = json.loads(tree.attrs["states"])
    k = len(states)
    resp, time, state, first, order = panel_sequences(tree)
    first_idx = np.maximum.accumulate(np.where(first, np.arange(resp.size), 0))
    t0, s0 = time[first_idx], state[first_idx]

    edges = wave_bins(time)
    wave = wave_index(time, edges)
    n_waves = max(edges.size - 1, 1)
    # the last observation of each respondent in each wave, not the first observation
    last_in_wave = np.ones(resp.size, dtype=bool)
    last_in_wave[:-1] = (resp[1:] != resp[:-1]) | (wave[1:] != wave[:-1])
    use = last_in_wave & (time > t0)
    resolution = _resolution(tree)
    dt = np.round((time[use] - t0[use]) / resolution) * resolution
    w, a, b = wave[use], s0[use], state[use]

    observed = np.zeros((n_waves, k))
    np.add.at(observed, (w, b), 1.0)
    n_w = observed.sum(axis=1)

    if has_keys(tree):
        # every observation from its respondent's own generator pieces
        q, data, rows, key_index = keyed_prevalence_rows(
            tree, order[first_idx][use], t0[use], a, dt, n_draws
        )
        groups, g_inv = np.unique(w * rows.size + key_index, return_inverse=True)
        n_g = np.bincount(g_inv, minlength=groups.size)
        g_w = groups // rows.size
        # in chunks of groups: a numeric covariate can make every respondent distinct
        chunk = max(1, 4_000_000 // (q.shape[0] * k))
        probs = np.concatenate(
            [
                destination_probs(q, data, rows[groups[i : i + chunk] % rows.size], k)
                for i in range(0, groups.size, chunk)
            ],
            axis=1,
        )
    else:
        durations, d_idx = np.unique(dt, return_inverse=True)
        gkey = (w * k + a) * durations.size + d_idx
        groups, g_inv = np.unique(gkey, return_inverse=True)
        n_g = np.bincount(g_inv, minlength=groups.size)
        g_d = groups % durations.size
        g_a = (groups // durations.size) % k
        g_w = groups // (durations.size * k)
        mats, discrete = thinned_matrices(tree, n_draws)
        p = transition_matrices(mats, durations, discrete, resolution)  # (D, T, K, K)
        probs = p[:, g_d, g_a, :]
    probs = normalised(probs)
    expected_g = n_g[None, :, None] * probs
    n_draw = probs.shape[0]
    expected = np.zeros((n_draw, n_waves, k))
    for wi in range(n_waves):
        sel = g_w == wi
        if sel.any():
            expected[:, wi] = expected_g[:, sel].sum(axis=1)

    # replications from the joint predictive: states carried from observation to observation
    i0 = np.flatnonzero(~first[1:])  # start of every gap between consecutive observations
    i1 = i0 + 1
    gap = np.round((time[i1] - time[i0]) / resolution) * resolution
    if has_keys(tree):
        p_gap, gap_key = keyed_gap_matrices(tree, order[i0], time[i0], gap, n_draws)
    else:
        p_gap, gap_key = gap_matrices(tree, gap, n_draws)
    sim = simulate_paths(rng, p_gap, state[first], resp_start=first, gap_key=gap_key)
    used = np.flatnonzero(use)
    cell = (np.arange(n_draw)[:, None] * n_waves + wave[used][None, :]) * k + sim[:, used]
    rep = np.bincount(cell.ravel(), minlength=n_draw * n_waves * k).reshape(n_draw, n_waves, k)

    x_obs = chi_square(observed.reshape(1, -1), expected.reshape(n_draw, -1))
    x_rep = chi_square(rep.reshape(n_draw, -1), expected.reshape(n_draw, -1))

    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n_w > 0, 100.0 / np.where(n_w > 0, n_w, 1.0), np.nan)[:, None]
    rep_pct = rep * scale
    lo, med, hi = np.quantile(rep_pct, [(1 - ci) / 2, 0.5, (1 + ci) / 2], axis=0)
    mid = np.array(
        [time[use][w == wi].mean() if np.any(w == wi) else np.nan for wi in range(n_waves)]
    )
    wi, si = np.meshgrid(np.arange(n_waves), np.arange(k), indexing="ij")
    wi, si = wi.ravel(), si.ravel()
    table = pd.DataFrame(
        {
            "wave": wi + 1,
            "time": mid[wi],
            "time_lower": edges[wi],
            "time_upper": edges[np.minimum(wi + 1, edges.size - 1)],
            "state": [states[s] for s in si],
            "n": n_w[wi].astype(np.int64),
            "observed": observed.ravel().astype(np.int64),
            "observed_pct": (observed * scale).ravel(),
            "expected_pct": (expected.mean(axis=0) * scale).ravel(),
            "mean_pct": rep_pct.mean(axis=0).ravel(),
            "median_pct": med.ravel(),
            "lower_pct": lo.ravel(),
            "upper_pct": hi.ravel(),
        }
    )
    table = table[table["n"] > 0].reset_index(drop=True)
    notes = []
    skipped = int(np.sum(n_w == 0))
    if skipped:
        notes.append(
            f"{skipped} wave(s) without respondents seen before (e.g. the first wave) are left out"
        )
    return PPCResult(table, x_obs, x_rep, ppp(x_obs, x_rep), ci, notes)


def normalised(probs: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, negative rounding errors clipped, rows summing to 1."""
    probs = np.clip(probs, 0.0, None)
    return probs / probs.sum(axis=-1, keepdims=True)


def draw_states(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One state drawn from every distribution ``probs[..., :]`` (inverse CDF).

    Parameters
    ----------
    rng : numpy.random.Generator
    probs : ndarray, shape (..., K)
        Distributions over the K states (rows summing to 1).

    Returns
    -------
    ndarray of int64, shape (...)
    """
    cum = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1]) * cum[..., -1]
    return np.minimum((cum <= u[..., None]).sum(axis=-1), probs.shape[-1] - 1).astype(np.int64)


def gap_matrices(
    tree: xr.DataTree, gaps: np.ndarray, n_draws: int = PPC_DRAWS
) -> tuple[np.ndarray, np.ndarray]:
    """``P(gap)`` of every thinned draw for the distinct gaps of a fit without design keys.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit without covariates, groups or periods.
    gaps : ndarray, shape (n,)
        Time between two observations (time units), rounded to the fit's resolution here.
    n_draws : int
        Posterior draws (thinned evenly, as :func:`thinned_matrices`).

    Returns
    -------
    p : ndarray, shape (D, U, K, K)
        Transition matrices of the U distinct gaps.
    key : ndarray, shape (n,)
        The distinct gap of each gap.
    """
    resolution = _resolution(tree)
    gaps = np.round(np.asarray(gaps, dtype=float) / resolution) * resolution
    durations, key = np.unique(gaps, return_inverse=True)
    mats, discrete = thinned_matrices(tree, n_draws)
    return transition_matrices(mats, durations, discrete, resolution), key


def simulate_paths(
    rng: np.random.Generator,
    p_gap: np.ndarray,
    first_states: np.ndarray,
    *,
    resp_start: np.ndarray,
    gap_key: np.ndarray,
) -> np.ndarray:
    """Replicated states at every observation, each gap from the state simulated before it.

    Parameters
    ----------
    rng : numpy.random.Generator
    p_gap : ndarray, shape (D, U, K, K)
        Transition matrices of the distinct gaps, per draw.
    first_states : ndarray, shape (R,)
        Observed state of every respondent's first observation.
    resp_start : ndarray of bool, shape (n_obs,)
        Whether an observation is its respondent's first; observations are sorted
        by respondent and time.
    gap_key : ndarray, shape (n_obs - R,)
        Distinct gap (index into ``p_gap``) of each later observation, in order.

    Returns
    -------
    ndarray of int64, shape (D, n_obs)
        Simulated states; first observations keep their observed state.
    """
    n_draw = p_gap.shape[0]
    n_obs = resp_start.size
    resp = np.cumsum(resp_start) - 1
    step = np.arange(n_obs) - np.flatnonzero(resp_start)[resp]  # 0 at first observations
    out = np.empty((n_draw, n_obs), dtype=np.int64)
    out[:, resp_start] = first_states[None, :]
    key = np.full(n_obs, -1, dtype=np.int64)
    key[~resp_start] = gap_key
    n_gap, k = p_gap.shape[1], p_gap.shape[-1]
    # cumulative rows once, then gathered by flat index (faster than fancy indexing)
    cum = np.cumsum(normalised(p_gap), axis=-1).reshape(-1, k)
    base = (np.arange(n_draw, dtype=np.int64) * n_gap)[:, None]
    for j in range(1, int(step.max(initial=0)) + 1):
        at = np.flatnonzero(step == j)
        rows = np.take(cum, ((base + key[at][None, :]) * k + out[:, at - 1]).ravel(), axis=0)
        u = rng.random(rows.shape[0])[:, None]
        new = np.minimum((rows <= u).sum(axis=1), k - 1)
        out[:, at] = new.reshape(n_draw, at.size)
    return out
