"""Convergence diagnostics and posterior predictive checks of a fit.

Layer 4 (results); reads fit files, never imports PyMC.

Convergence (ArviZ, :mod:`arviz_stats`), on the sampled parameters
(``log_rate`` in continuous time, the Dirichlet rows ``p_<state>`` in discrete
time), with the thresholds of Vehtari et al. (2021) and Betancourt (2016):

======================  =========================================================
check                   passes when
======================  =========================================================
``rhat``                rank-normalised split R-hat < 1.01 for every parameter
``ess_bulk``            bulk ESS >= 100 per chain (400 with 4 chains), every parameter
``ess_tail``            tail ESS >= 100 per chain, every parameter
``divergences``         no divergent transitions after warm-up
``ebfmi``               E-BFMI > 0.3 in every chain
======================  =========================================================

Posterior predictive checks, on up to ``n_draws`` posterior draws (thinned
evenly):

``ppc_transitions``
    For every draw, the observed transitions are replicated: the respondents
    in each (from state, interval) row are redistributed over the to-states by
    a multinomial draw from the row of ``P(interval)``. Observed and replicated
    counts are compared by (from, to, interval band); the discrepancy is
    Pearson's chi-square ``X(y, theta) = sum (y - E)^2 / E`` over cells with a
    positive expectation ``E``, and the posterior predictive p-value is
    ``Pr(X(y_rep, theta) >= X(y, theta))``. The check fails when it is below
    0.01 (the data are less likely than 99% of the replications).
``ppc_prevalence``
    Observation times are binned into waves; at every wave, the states of the
    respondents seen there (after an earlier first observation) are compared
    with the prevalence expected from each respondent's first observed state
    propagated by ``P(t - t_first)`` (as R msm's ``prevalence.msm``), with
    posterior predictive intervals; same chi-square discrepancy and p-value
    rule. Needs the panel embedded in the fit file.

The two checks are not independent: prevalences are first-to-later
transitions. Both treat observations as unweighted.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from markov_migration.errors import InputError

#: Thresholds of the checks (see the module docstring).
THRESHOLDS = {
    "rhat_max": 1.01,
    "ess_per_chain_min": 100,
    "divergences_max": 0,
    "ebfmi_min": 0.3,
    "ppp_min": 0.01,
}
#: Default number of posterior draws used by the predictive checks.
PPC_DRAWS = 500
#: Default number of interval bands of the transition-count check.
PPC_BANDS = 3
#: Largest number of waves found by gap clustering before falling back to quantile bins.
MAX_WAVES = 12
#: Number of quantile bins when observation times do not cluster into waves.
QUANTILE_WAVES = 6


@dataclass
class Check:
    """The outcome of one check.

    Attributes
    ----------
    name : str
        Short identifier (``rhat``, ``ess_bulk``, ``ppc_transitions`` ...).
    label : str
        What it checks, for humans.
    value : float
        The statistic (nan when the check could not run).
    threshold : str
        The rule, e.g. ``"< 1.01"``.
    passed : bool or None
        None when the check does not apply (e.g. no embedded panel).
    detail : str
        Where it is worst, or why it was skipped.
    """

    name: str
    label: str
    value: float
    threshold: str
    passed: bool | None
    detail: str = ""

    @property
    def status(self) -> str:
        """``pass``, ``FAIL`` or ``skipped``."""
        return "skipped" if self.passed is None else ("pass" if self.passed else "FAIL")


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


@dataclass
class CheckReport:
    """Everything :func:`run_checks` found.

    Attributes
    ----------
    checks : list of Check
    convergence : pandas.DataFrame
        Per parameter: ``parameter, mean, sd, rhat, ess_bulk, ess_tail, mcse_mean``.
    transitions : PPCResult or None
    prevalence : PPCResult or None
    states : list of str
    time_unit : str
    n_chains, n_draws : int
    """

    checks: list[Check]
    convergence: pd.DataFrame
    transitions: PPCResult | None
    prevalence: PPCResult | None
    states: list[str]
    time_unit: str
    n_chains: int
    n_draws: int

    @property
    def failed(self) -> list[Check]:
        """Checks that failed."""
        return [c for c in self.checks if c.passed is False]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failed

    def table(self) -> pd.DataFrame:
        """One row per check: check, label, value, threshold, status, detail."""
        return pd.DataFrame(
            [
                {
                    "check": c.name,
                    "label": c.label,
                    "value": c.value,
                    "threshold": c.threshold,
                    "status": c.status,
                    "detail": c.detail,
                }
                for c in self.checks
            ]
        )


# --------------------------------------------------------------------------
# Convergence
# --------------------------------------------------------------------------


#: Free parameters of the continuous-time models (fitting layer names).
FREE_PARAMETERS = ("log_rate", "log_hr_scaled", "group_sd", "group_z")


def sampled_parameters(tree: xr.DataTree) -> xr.Dataset:
    """Return the sampler's free parameters: log rates (and effects), or the Dirichlet rows."""
    post = tree["posterior"].to_dataset()
    free = [v for v in FREE_PARAMETERS if v in post]
    if free:
        return post[free]
    rows = [v for v in post.data_vars if str(v).startswith("p_")]
    if rows:
        return post[rows]
    if "P" in post:
        return post[["P"]]
    raise InputError("fit file posterior has neither log_rate nor discrete-time rows p_*")


def _labels(da: xr.DataArray, name: str) -> list[str]:
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if not extra:
        return [name]
    stacked = da.isel(chain=0, draw=0, drop=True).stack(_p=extra)
    out = []
    for idx in stacked["_p"].values:
        idx = idx if isinstance(idx, tuple) else (idx,)
        label = ",".join(str(i) for i in idx)
        out.append(label if name == "log_rate" else f"{name}[{label}]")
    return out


def convergence_table(tree: xr.DataTree) -> pd.DataFrame:
    """R-hat, bulk and tail ESS and MCSE of every sampled parameter.

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter, mean, sd, rhat, ess_bulk, ess_tail, mcse_mean``.
    """
    import arviz_stats as azs

    params = sampled_parameters(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny samples make ArviZ warn; the thresholds judge them
        rhat = azs.rhat(params, method="rank")
        bulk = azs.ess(params, method="bulk")
        tail = azs.ess(params, method="tail")
        mcse = azs.mcse(params, method="mean")
    rows = []
    for name, da in params.data_vars.items():
        labels = _labels(da, str(name))
        flat = (
            da.stack(_s=("chain", "draw")).transpose("_s", ...).to_numpy().reshape(-1, len(labels))
        )

        def values(res, n=name):
            return np.asarray(res[n].to_numpy(), dtype=float).reshape(-1)

        r, b, t, m = values(rhat), values(bulk), values(tail), values(mcse)
        for i, label in enumerate(labels):
            if np.ptp(flat[:, i]) == 0:
                continue  # fixed entries (e.g. structural zeros of P)
            rows.append(
                {
                    "parameter": label,
                    "mean": flat[:, i].mean(),
                    "sd": flat[:, i].std(ddof=1),
                    "rhat": r[i],
                    "ess_bulk": b[i],
                    "ess_tail": t[i],
                    "mcse_mean": m[i],
                }
            )
    return pd.DataFrame(
        rows, columns=["parameter", "mean", "sd", "rhat", "ess_bulk", "ess_tail", "mcse_mean"]
    )


def convergence_checks(tree: xr.DataTree, table: pd.DataFrame | None = None) -> list[Check]:
    """Run the five convergence checks (see the module docstring for the rules)."""
    import arviz_stats as azs

    table = convergence_table(tree) if table is None else table
    post = tree["posterior"]
    n_chains = int(post.sizes["chain"])
    ess_min = THRESHOLDS["ess_per_chain_min"] * n_chains
    checks = []

    def worst(col: str, largest: bool) -> tuple[float, str]:
        vals = table[col].to_numpy(dtype=float)
        if vals.size == 0 or np.all(np.isnan(vals)):
            return float("nan"), "no parameters"
        i = int(np.nanargmax(vals) if largest else np.nanargmin(vals))
        return float(vals[i]), str(table["parameter"].iloc[i])

    r, where = worst("rhat", True)
    ok = bool(np.all(table["rhat"].to_numpy() < THRESHOLDS["rhat_max"])) and np.isfinite(r)
    checks.append(
        Check(
            "rhat",
            "R-hat (rank-normalised split)",
            r,
            f"< {THRESHOLDS['rhat_max']}",
            ok,
            f"largest: {where}",
        )
    )
    for col, label in (("ess_bulk", "bulk ESS"), ("ess_tail", "tail ESS")):
        v, where = worst(col, False)
        ok = bool(np.all(table[col].to_numpy() >= ess_min)) and np.isfinite(v)
        checks.append(
            Check(
                col,
                label,
                v,
                f">= {ess_min} ({THRESHOLDS['ess_per_chain_min']} per chain)",
                ok,
                f"smallest: {where}",
            )
        )

    stats = tree["sample_stats"] if "sample_stats" in tree.children else None
    if stats is not None and "diverging" in stats:
        div = np.asarray(stats["diverging"].to_numpy(), dtype=bool)
        n = int(div.sum())
        per_chain = div.reshape(div.shape[0], -1).sum(axis=1)
        checks.append(
            Check(
                "divergences",
                "divergent transitions",
                float(n),
                f"<= {THRESHOLDS['divergences_max']}",
                n <= THRESHOLDS["divergences_max"],
                f"{n / div.size:.1%} of draws; per chain: {', '.join(map(str, per_chain))}",
            )
        )
    else:
        checks.append(
            Check(
                "divergences",
                "divergent transitions",
                float("nan"),
                "= 0",
                None,
                "the fit file records no divergence statistics",
            )
        )
    if stats is not None and "energy" in stats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = np.asarray(
                azs.bfmi(stats.to_dataset()[["energy"]])["energy"].to_numpy(), dtype=float
            )
        low = int(np.argmin(e))
        checks.append(
            Check(
                "ebfmi",
                "E-BFMI (energy)",
                float(e.min()),
                f"> {THRESHOLDS['ebfmi_min']}",
                bool(np.all(e > THRESHOLDS["ebfmi_min"])),
                f"lowest in chain {low}; per chain: {', '.join(f'{x:.2f}' for x in e)}",
            )
        )
    else:
        checks.append(
            Check(
                "ebfmi",
                "E-BFMI (energy)",
                float("nan"),
                f"> {THRESHOLDS['ebfmi_min']}",
                None,
                "the fit file records no energy",
            )
        )
    return checks


# --------------------------------------------------------------------------
# Posterior predictive checks
# --------------------------------------------------------------------------


def thinned_draws(n_total: int, n_draws: int) -> np.ndarray:
    """Indices of at most ``n_draws`` of ``n_total`` flattened posterior samples, evenly spread."""
    return np.unique(np.round(np.linspace(0, n_total - 1, min(n_draws, n_total))).astype(np.int64))


def thinned_matrices(tree: xr.DataTree, n_draws: int = PPC_DRAWS) -> tuple[np.ndarray, bool]:
    """Up to ``n_draws`` posterior generators (or one-step matrices), evenly thinned.

    Returns
    -------
    matrices : ndarray, shape (D, K, K)
    discrete : bool
    """
    post = tree["posterior"]
    discrete = "Q" not in post
    m = (
        post["P" if discrete else "Q"]
        .transpose("chain", "draw", "from_state", "to_state")
        .to_numpy()
    )
    k = m.shape[-1]
    m = m.reshape(-1, k, k)
    return np.ascontiguousarray(m[thinned_draws(m.shape[0], n_draws)]), discrete


def transition_matrices(
    matrices: np.ndarray, times: np.ndarray, discrete: bool, resolution: float
) -> np.ndarray:
    """``P(t)`` for every draw and time: shape (D, T, K, K)."""
    times = np.asarray(times, dtype=float)
    if discrete:
        steps = np.round(times / resolution).astype(np.int64)
        out = np.empty((matrices.shape[0], times.size, *matrices.shape[1:]))
        for j, n in enumerate(steps):
            out[:, j] = np.linalg.matrix_power(matrices, int(n))
        return out
    from markov_migration.core.likelihood import pmatrix

    return pmatrix(matrices, times)


def chi_square(y: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Pearson's discrepancy ``sum (y - E)^2 / E`` over the last axis (cells with E > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            expected > 0, (y - expected) ** 2 / np.where(expected > 0, expected, 1.0), 0.0
        )
    return terms.sum(axis=-1)


def _ppp(observed: np.ndarray, replicated: np.ndarray) -> float:
    return float(np.mean(replicated >= observed))


def interval_bands(intervals: np.ndarray, weights: np.ndarray, n_bands: int) -> np.ndarray:
    """Edges of up to ``n_bands`` interval bands with about equal numbers of transitions.

    Returns
    -------
    ndarray
        Increasing edges, the first at the smallest and the last at the largest interval.
    """
    order = np.argsort(intervals)
    iv, w = intervals[order], weights[order]
    cum = np.cumsum(w) / w.sum()
    edges = [iv[0]]
    for q in np.arange(1, n_bands) / n_bands:
        e = iv[min(np.searchsorted(cum, q), iv.size - 1)]
        if e > edges[-1] and e < iv[-1]:
            edges.append(e)
    edges.append(iv[-1])
    return np.unique(np.asarray(edges, dtype=float))


def _band_labels(edges: np.ndarray) -> list[str]:
    if edges.size == 1:
        return [f"{edges[0]:.3g}"]
    out = []
    for i in range(edges.size - 1):
        left = "[" if i == 0 else "("
        out.append(f"{left}{edges[i]:.3g}, {edges[i + 1]:.3g}]")
    return out


def _band_index(intervals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    if edges.size == 1:
        return np.zeros(intervals.size, dtype=np.int64)
    return np.clip(np.searchsorted(edges, intervals, side="left") - 1, 0, edges.size - 2).astype(
        np.int64
    )


def _has_keys(tree: xr.DataTree) -> bool:
    obs = tree["observed_data"]
    return any(v not in ("from", "to", "interval", "count") for v in obs.data_vars)


def _keyed_row_groups(
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
    from markov_migration.core.likelihood import row_loglik_draws
    from markov_migration.fitfile.format import fit_spec
    from markov_migration.fitfile.generators import design_generators
    from markov_migration.fitfile.readback import aggregated_from_fit
    from markov_migration.inputs.design import model_design

    spec = fit_spec(tree)
    if spec.time != "continuous":
        raise InputError(
            "predictive checks of discrete-time fits with covariates are not supported"
        )
    agg = aggregated_from_fit(tree)
    design = model_design(spec, agg)
    data = design.likelihood
    post = tree["posterior"].to_dataset()
    n_total = post.sizes["chain"] * post.sizes["draw"]
    draws = thinned_draws(n_total, n_draws)
    q = design_generators(spec, design, post, draws)
    # the rebuilt design must give the log-likelihood stored at fitting time
    stored = tree["log_likelihood"]["transitions"].transpose("chain", "draw", "obs").to_numpy()
    stored = stored.reshape(n_total, -1)[draws]
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
    probs = _destination_probs(q, data, first, spec.n_states)
    return row_group, g_from, g_interval, probs


def _destination_probs(q: np.ndarray, data, rows: np.ndarray, k: int) -> np.ndarray:
    """``P_r[from_r, s]`` for every draw, chosen row r of a likelihood layout and state s.

    ``q`` (D, M, K, K) generators, ``data`` the :class:`LikelihoodData` whose
    rows' pieces (products over period pieces included) give ``P_r``.
    Returns (D, len(rows), K).
    """
    from markov_migration.core.likelihood import row_loglik_draws

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


def _keyed_prevalence_rows(
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
    from markov_migration.fitfile.format import fit_spec
    from markov_migration.fitfile.generators import design_generators
    from markov_migration.fitfile.readback import aggregated_from_fit, embeds_panel, recorded_panel
    from markov_migration.inputs.aggregate import LEAD_TIME, START_PERIOD, period_keys
    from markov_migration.inputs.columns import model_columns
    from markov_migration.inputs.design import model_design

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
    n_total = post.sizes["chain"] * post.sizes["draw"]
    draws = thinned_draws(n_total, n_draws)
    q = design_generators(spec, design, post, draws)
    rows = len(agg.table) + np.arange(len(unique))
    return q, design.likelihood, rows, key_index


def ppc_transitions(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    n_bands: int = PPC_BANDS,
    ci: float = 0.95,
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

    if _has_keys(tree):
        # Rows share a predictive distribution when they share the starting state and
        # the generator pieces (covariate pattern, group, periods crossed, interval).
        row_g, g_from, g_interval, probs = _keyed_row_groups(tree, n_draws)
    else:
        interval = obs["interval"].to_numpy().astype(float)
        intervals, row_iv = np.unique(interval, return_inverse=True)
        # groups: distinct (from, interval)
        gkey = frm * intervals.size + row_iv
        groups, row_g = np.unique(gkey, return_inverse=True)
        g_from, g_iv = groups // intervals.size, groups % intervals.size
        g_interval = intervals[g_iv]
        mats, discrete = thinned_matrices(tree, n_draws)
        resolution = (
            float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 1.0
        )
        p_iv = transition_matrices(mats, intervals, discrete, resolution)  # (D, I, K, K)
        probs = p_iv[:, g_iv, g_from, :]  # (D, G, K)
    # y[g, s]: observed counts of each group
    y = np.zeros((g_from.size, k), dtype=np.int64)
    np.add.at(y, (row_g, to), count)
    n_g = y.sum(axis=1)

    edges = interval_bands(g_interval, n_g.astype(float), n_bands)
    g_band = _band_index(g_interval, edges)
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
    labels = _band_labels(edges)
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
    return PPCResult(table, x_obs, x_rep, _ppp(x_obs, x_rep), ci, notes)


def wave_bins(times: np.ndarray) -> np.ndarray:
    """Edges of waves: clusters of observation times separated by gaps.

    Times cluster into waves when the sorted distinct times have 1 to
    :data:`MAX_WAVES` - 1 gaps wider than a tenth of their span; otherwise
    :data:`QUANTILE_WAVES` bins with equal numbers of observations are used.

    Returns
    -------
    ndarray
        Increasing edges; wave w holds times in ``[edges[w], edges[w + 1])``
        (the last wave includes its right edge).
    """
    u = np.unique(times)
    if u.size == 1:
        return np.array([u[0], u[0]])
    span = u[-1] - u[0]
    gaps = np.diff(u)
    cut = np.flatnonzero(gaps > 0.1 * span)
    if 1 <= cut.size < MAX_WAVES:
        mids = (u[cut] + u[cut + 1]) / 2
        return np.concatenate([[u[0]], mids, [u[-1]]])
    n = min(QUANTILE_WAVES, u.size)
    return np.unique(np.quantile(times, np.linspace(0, 1, n + 1)))


def _wave_index(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, times, side="right") - 1, 0, max(edges.size - 2, 0))


def ppc_prevalence(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    ci: float = 0.95,
    seed: int = 0,
) -> PPCResult:
    """Observed vs expected prevalence of each state at each wave.

    Every respondent seen at a wave after an earlier first observation counts
    once (their last observation in the wave); their expected state
    distribution is row ``s_first`` of ``P(t - t_first)``.

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
    of their first observation, and the periods the time since crosses.

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
    pdata = tree["panel_data"]
    resp = pdata["respondent"].to_numpy().astype(np.int64)
    time = pdata["time"].to_numpy().astype(float)
    state = pdata["state"].to_numpy().astype(np.int64)
    order = np.lexsort((time, resp))
    resp, time, state = resp[order], time[order], state[order]
    first = np.ones(resp.size, dtype=bool)
    first[1:] = resp[1:] != resp[:-1]
    first_idx = np.maximum.accumulate(np.where(first, np.arange(resp.size), 0))
    t0, s0 = time[first_idx], state[first_idx]

    edges = wave_bins(time)
    wave = _wave_index(time, edges)
    n_waves = max(edges.size - 1, 1)
    # the last observation of each respondent in each wave, not the first observation
    last_in_wave = np.ones(resp.size, dtype=bool)
    last_in_wave[:-1] = (resp[1:] != resp[:-1]) | (wave[1:] != wave[:-1])
    use = last_in_wave & (time > t0)
    resolution = (
        float(tree["constant_data"]["resolution"]) if "constant_data" in tree.children else 1.0
    )
    dt = np.round((time[use] - t0[use]) / resolution) * resolution
    w, a, b = wave[use], s0[use], state[use]

    observed = np.zeros((n_waves, k))
    np.add.at(observed, (w, b), 1.0)
    n_w = observed.sum(axis=1)

    if _has_keys(tree):
        # every observation from its respondent's own generator pieces
        q, data, rows, key_index = _keyed_prevalence_rows(
            tree, order[first_idx][use], t0[use], a, dt, n_draws
        )
        groups, g_inv = np.unique(w * rows.size + key_index, return_inverse=True)
        n_g = np.bincount(g_inv, minlength=groups.size)
        g_w = groups // rows.size
        # in chunks of groups: a numeric covariate can make every respondent distinct
        chunk = max(1, 4_000_000 // (q.shape[0] * k))
        probs = np.concatenate(
            [
                _destination_probs(q, data, rows[groups[i : i + chunk] % rows.size], k)
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
    probs = np.clip(probs, 0.0, None)
    probs /= probs.sum(axis=-1, keepdims=True)
    expected_g = n_g[None, :, None] * probs
    rep_g = rng.multinomial(n_g[None, :], probs)
    n_draw = probs.shape[0]
    expected = np.zeros((n_draw, n_waves, k))
    rep = np.zeros((n_draw, n_waves, k))
    for wi in range(n_waves):
        sel = g_w == wi
        if sel.any():
            expected[:, wi] = expected_g[:, sel].sum(axis=1)
            rep[:, wi] = rep_g[:, sel].sum(axis=1)

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
    return PPCResult(table, x_obs, x_rep, _ppp(x_obs, x_rep), ci, notes)


def _ppc_check(name: str, label: str, result: PPCResult | None, error: str | None) -> Check:
    rule = f">= {THRESHOLDS['ppp_min']}"
    if result is None:
        return Check(name, label, float("nan"), rule, None, error or "not run")
    ok = result.ppp >= THRESHOLDS["ppp_min"]
    detail = f"chi-square: observed {np.mean(result.observed_discrepancy):.1f} on average"
    detail += f" vs replicated {np.mean(result.replicated_discrepancy):.1f}"
    return Check(name, label, result.ppp, rule, ok, detail)


def run_checks(
    tree: xr.DataTree,
    *,
    n_draws: int = PPC_DRAWS,
    n_bands: int = PPC_BANDS,
    ci: float = 0.95,
    seed: int = 0,
) -> CheckReport:
    """Run every convergence check and posterior predictive check of a fit.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit (see :func:`markov_migration.fitfile.format.read_fit`).
    n_draws : int
        Posterior draws used by the predictive checks.
    n_bands : int
        Interval bands of the transition-count check.
    ci : float
        Probability of the predictive intervals.
    seed : int
        Seed of the replications (the same seed gives the same report).

    Returns
    -------
    CheckReport
    """
    from markov_migration.results.summaries import check_ci

    check_ci(ci)
    if n_draws < 1:
        raise InputError(f"--draws must be at least 1, got {n_draws}")
    table = convergence_table(tree)
    checks = convergence_checks(tree, table)
    results: dict[str, PPCResult | None] = {}
    errors: dict[str, str | None] = {}
    for name, fn, kwargs in (
        ("transitions", ppc_transitions, {"n_bands": n_bands}),
        ("prevalence", ppc_prevalence, {}),
    ):
        try:
            results[name] = fn(tree, n_draws=n_draws, ci=ci, seed=seed, **kwargs)
            errors[name] = None
        except InputError as err:
            results[name], errors[name] = None, err.message
    checks.append(
        _ppc_check(
            "ppc_transitions",
            "PPC p-value, transition counts",
            results["transitions"],
            errors["transitions"],
        )
    )
    checks.append(
        _ppc_check(
            "ppc_prevalence",
            "PPC p-value, prevalence by wave",
            results["prevalence"],
            errors["prevalence"],
        )
    )
    post = tree["posterior"]
    return CheckReport(
        checks=checks,
        convergence=table,
        transitions=results["transitions"],
        prevalence=results["prevalence"],
        states=json.loads(tree.attrs["states"]),
        time_unit=str(tree.attrs.get("time_unit", "years")) if "Q" in post else "steps",
        n_chains=int(post.sizes["chain"]),
        n_draws=int(post.sizes["draw"]),
    )


# --------------------------------------------------------------------------
# Plots (matplotlib Figure objects: no pyplot state, no display needed)
# --------------------------------------------------------------------------

_BAND_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _sqrt(x):
    return np.sqrt(np.clip(x, 0, None))


def plot_transitions(result: PPCResult, states: list[str], time_unit: str):
    """Observed (black dots) vs replicated transition counts (shaded intervals), per from-state."""
    t = result.table
    froms = [s for s in states if s in set(t["from"])]
    bands = list(dict.fromkeys(t["band"]))
    ncol = min(3, len(froms))
    nrow = int(np.ceil(len(froms) / ncol))
    fig = _figure(4.2 * ncol, 3.3 * nrow + 0.6)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    width = 0.8 / max(len(bands), 1)
    for ax, frm in zip(axes.flat, froms, strict=False):
        sub = t[t["from"] == frm]
        tos = [s for s in states if s in set(sub["to"])]
        for j, band in enumerate(bands):
            b = sub[sub["band"] == band]
            x = np.array([tos.index(s) for s in b["to"]]) - 0.4 + width * (j + 0.5)
            colour = _BAND_COLOURS[j % len(_BAND_COLOURS)]
            ax.bar(
                x,
                b["upper"] - b["lower"],
                width * 0.9,
                bottom=b["lower"],
                color=colour,
                alpha=0.35,
                label=f"{band} {time_unit}",
            )
            ax.hlines(b["median"], x - width * 0.45, x + width * 0.45, color=colour, lw=1.5)
            ax.plot(
                x,
                b["observed"],
                "o",
                color="black",
                ms=4,
                zorder=3,
                label="observed" if j == len(bands) - 1 else None,
            )
        ax.set_xticks(range(len(tos)), tos, rotation=30, ha="right")
        # square-root scale: stays (hundreds) and moves (a few) both readable; it also
        # stabilises the variance of counts
        ax.set_yscale("function", functions=(_sqrt, np.square))
        ax.set_ylim(bottom=0)
        ax.set_title(f"from {frm}")
        ax.set_xlabel("state at the next observation")
        ax.set_ylabel("transitions (count, square-root scale)")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(froms) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncol=len(labels),
        fontsize=9,
        title=f"interval between observations (bars: {result.ci:.0%} predictive interval, "
        "line: median)",
    )
    fig.suptitle(
        f"Transition counts: observed vs replicated  (posterior predictive p = {result.ppp:.2f})"
    )
    return fig


def plot_prevalence(result: PPCResult, states: list[str], time_unit: str):
    """Observed vs expected prevalence (%) of each state at each wave, with shaded intervals."""
    t = result.table
    ncol = min(3, len(states))
    nrow = int(np.ceil(len(states) / ncol))
    fig = _figure(4.2 * ncol, 3.0 * nrow + 0.5)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, st in zip(axes.flat, states, strict=False):
        sub = t[t["state"] == st].sort_values("time")
        ax.fill_between(
            sub["time"],
            sub["lower_pct"],
            sub["upper_pct"],
            color="#4c72b0",
            alpha=0.25,
            label=f"expected, {result.ci:.0%} predictive interval",
        )
        ax.plot(
            sub["time"],
            sub["expected_pct"],
            "-",
            color="#4c72b0",
            label="expected (posterior mean)",
        )
        ax.plot(
            sub["time"], sub["observed_pct"], "o-", color="black", ms=4, lw=0.8, label="observed"
        )
        ax.set_title(st)
        ax.set_xlabel(f"time ({time_unit})")
        ax.set_ylabel("respondents in state (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(states) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)
    fig.suptitle(
        f"Prevalence by wave: observed vs expected from first observation  (p = {result.ppp:.2f})"
    )
    return fig


def plot_discrepancy(results: dict[str, PPCResult]):
    """Replicated vs observed chi-square discrepancy per draw, one panel per check."""
    items = [(k, v) for k, v in results.items() if v is not None]
    fig = _figure(4.6 * max(len(items), 1), 4.2)
    axes = fig.subplots(1, max(len(items), 1), squeeze=False)[0]
    for ax, (name, r) in zip(axes, items, strict=False):
        ax.scatter(
            r.observed_discrepancy, r.replicated_discrepancy, s=8, alpha=0.4, color="#4c72b0"
        )
        lo = min(r.observed_discrepancy.min(), r.replicated_discrepancy.min())
        hi = max(r.observed_discrepancy.max(), r.replicated_discrepancy.max())
        ax.plot([lo, hi], [lo, hi], "--", color="black", lw=1, label="replicated = observed")
        ax.set_xlabel("chi-square of observed data")
        ax.set_ylabel("chi-square of replicated data")
        ax.set_title(f"{name}: p = {r.ppp:.2f} (share above the line)")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("Posterior predictive discrepancy (one point per posterior draw)")
    return fig


def plot_trace(tree: xr.DataTree, max_params: int = 12):
    """Trace of each sampled parameter by chain (up to ``max_params``)."""
    params = sampled_parameters(tree)
    series = []
    for name, da in params.data_vars.items():
        labels = _labels(da, str(name))
        vals = (
            da.transpose("chain", "draw", ...)
            .to_numpy()
            .reshape(da.sizes["chain"], da.sizes["draw"], -1)
        )
        for i, lab in enumerate(labels):
            if np.ptp(vals[..., i]) > 0:
                series.append((lab, vals[..., i], str(name)))
    series = series[:max_params]
    ncol = min(3, max(len(series), 1))
    nrow = int(np.ceil(len(series) / ncol)) or 1
    fig = _figure(4.2 * ncol, 2.2 * nrow + 0.5)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, (lab, v, name) in zip(axes.flat, series, strict=False):
        for c in range(v.shape[0]):
            ax.plot(v[c], lw=0.5, alpha=0.8, label=f"chain {c}")
        ax.set_title(lab, fontsize=10)
        ax.set_xlabel("draw")
        ax.set_ylabel(
            {"log_rate": "log intensity"}.get(
                name, "probability" if name.startswith("p_") else name
            )
        )
    for ax in list(axes.flat)[len(series) :]:
        ax.set_visible(False)
    fig.suptitle("Trace of the sampled parameters by chain (chains should overlap)")
    return fig


def figure_png(fig) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def figures(report: CheckReport, tree: xr.DataTree) -> dict[str, object]:
    """Draw the check's figures, by file stem."""
    figs: dict[str, object] = {}
    if report.transitions is not None:
        figs["ppc_transitions"] = plot_transitions(
            report.transitions, report.states, report.time_unit
        )
    if report.prevalence is not None:
        figs["ppc_prevalence"] = plot_prevalence(report.prevalence, report.states, report.time_unit)
    ppcs = {"transitions": report.transitions, "prevalence": report.prevalence}
    if any(v is not None for v in ppcs.values()):
        figs["ppc_discrepancy"] = plot_discrepancy(ppcs)
    figs["trace"] = plot_trace(tree)
    return figs


#: Every file :func:`write_outputs` can write (those that apply to a fit are written).
OUTPUT_FILES = (
    "checks.csv", "convergence.csv", "ppc_transitions.csv", "ppc_prevalence.csv",
    "ppc_discrepancy.csv", "ppc_transitions.png", "ppc_prevalence.png", "ppc_discrepancy.png",
    "trace.png",
)  # fmt: skip


def write_outputs(
    report: CheckReport, tree: xr.DataTree, out_dir: str | Path, force: bool = False
) -> list[Path]:
    """Write the check's tables (CSV) and plots (PNG) into ``out_dir``.

    Files: ``checks.csv``, ``convergence.csv``, ``ppc_transitions.csv``,
    ``ppc_prevalence.csv``, ``ppc_discrepancy.csv`` and the PNGs
    ``ppc_transitions.png``, ``ppc_prevalence.png``, ``ppc_discrepancy.png``,
    ``trace.png`` (those that apply). Existing files are only replaced with
    ``force``; every file is written atomically.

    Returns
    -------
    list of Path
    """
    from markov_migration.io import atomic_output, check_output

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out-dir exists and is not a folder", path=out_dir)
    tables: dict[str, pd.DataFrame] = {"checks": report.table(), "convergence": report.convergence}
    if report.transitions is not None:
        tables["ppc_transitions"] = report.transitions.table
    if report.prevalence is not None:
        tables["ppc_prevalence"] = report.prevalence.table
    disc = {}
    for name, r in (("transitions", report.transitions), ("prevalence", report.prevalence)):
        if r is not None:
            disc[f"{name}_observed"] = r.observed_discrepancy
            disc[f"{name}_replicated"] = r.replicated_discrepancy
    if disc:
        tables["ppc_discrepancy"] = pd.DataFrame(disc).rename_axis("draw").reset_index()
    figs = figures(report, tree)
    names = [f"{n}.csv" for n in tables] + [f"{n}.png" for n in figs]
    if not set(names) <= set(OUTPUT_FILES):  # callers plan their outputs from OUTPUT_FILES
        raise RuntimeError(f"undeclared check outputs: {sorted(set(names) - set(OUTPUT_FILES))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in names:  # refuse before writing anything
        check_output(out_dir / n, force)
    written = []
    for n, frame in tables.items():
        with atomic_output(out_dir / f"{n}.csv", force) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        written.append(out_dir / f"{n}.csv")
    for n, fig in figs.items():
        with atomic_output(out_dir / f"{n}.png", force) as tmp:
            fig.savefig(tmp, format="png")
        written.append(out_dir / f"{n}.png")
    return written
