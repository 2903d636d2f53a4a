"""Pearson-type goodness-of-fit test of a panel-observed Markov model, on plain arrays.

The test of Aguirre-Hernandez and Farewell (2002) as R msm's ``pearson.msm`` computes it
(without exact death times, misclassification or censoring): every interval between two
consecutive observations of a respondent is a transition ``from -> to`` over ``dt``; the
transitions are grouped into categories (msm: groups of the observation time ending the
interval, and within each, groups of the interval length, both at sample quantiles), and
within each category and from-state the observed counts of every reachable to-state are
compared with their expectation ``sum P(dt)[from, to]`` over the category's transitions.
The statistic is ``sum (O - E)^2 / E`` over categories and interval transitions (msm adds
``O^2`` where ``E`` is 0). Its reference distributions, as msm's:

- ``chi2(df_upper)`` and ``chi2(df_lower)``: ``df_upper`` is the number of independent
  cells (reachable to-states minus one, per from-state and category with transitions),
  ``df_lower = df_upper - n_parameters``; the asymptotic p-value lies between their
  tail probabilities (Aguirre-Hernandez and Farewell 2002);
- Titman (2009): the statistic is asymptotically a weighted sum of ``chi2(1)``
  variables, the weights the eigenvalues of the covariance of the scaled residuals
  ``(O - E) / sqrt(E)`` corrected for the estimated parameters (expected information of
  Kalbfleisch and Lawless 1985); its tail probability by Imhof's inversion of the
  characteristic function.

References
----------
Aguirre-Hernandez, R. and Farewell, V. (2002). A Pearson-type goodness-of-fit test for
stationary and time-continuous Markov regression models. Statistics in Medicine 21,
1899-1911. Titman, A. and Sharples, L. (2008). A general goodness-of-fit test for Markov
and hidden Markov models. Statistics in Medicine 27, 2177-2195. Titman, A. (2009).
Computation of the asymptotic null distribution of goodness-of-fit tests for multi-state
models. Lifetime Data Analysis 15, 519-533.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import integrate, stats

from markov_migration.core.expm import expm_frechet

#: msm sets expected counts below this to zero (inaccuracy of the matrix exponential).
SMALL_EXPECTED = float(np.sqrt(np.finfo(float).eps))
#: msm's offset separating a repeated quantile from the next cut point (``qcut``'s eps).
QCUT_EPS = 1e-6


def quantile_edges(x: np.ndarray, n: int) -> np.ndarray:
    """Sample quantiles at ``0, 1/n, ..., 1`` (R's default type 7, numpy's ``linear``)."""
    return np.quantile(np.asarray(x, dtype=float), np.linspace(0.0, 1.0, n + 1))


def quantile_cut(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ``x`` at quantile cut points as msm's ``qcut``: ``[a, b)``, the last closed.

    A value repeated among the cut points becomes a group of its own (three or more
    equal cut points count as two; the second is moved up by :data:`QCUT_EPS`), and
    the outer cut points are widened to cover ``x``.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Values to group (e.g. times or intervals, time units).
    edges : ndarray
        Increasing cut points, e.g. from :func:`quantile_edges`.

    Returns
    -------
    codes : ndarray of int64, shape (n,)
        Group of each value, 0-based.
    breaks : ndarray
        The cut points used (``len(breaks) - 1`` groups).
    """
    x = np.asarray(x, dtype=float)
    qu = np.sort(np.asarray(edges, dtype=float))
    _, first, counts = np.unique(qu, return_index=True, return_counts=True)
    rank = np.arange(qu.size) - np.repeat(first, counts)
    qu = qu[rank < 2]
    if x.size:
        qu[qu == qu.max()] = max(qu.max(), x.max())
        qu[qu == qu.min()] = min(qu.min(), x.min())
    lag = np.concatenate([[-np.inf], qu[:-1]])
    qu = np.sort(np.where(qu == lag, qu + QCUT_EPS, qu))
    n_groups = qu.size - 1
    codes = np.searchsorted(qu, x, side="right") - 1
    codes = np.where(x == qu[-1], n_groups - 1, codes)  # the last group is closed
    return np.clip(codes, 0, max(n_groups - 1, 0)).astype(np.int64), qu


@dataclass
class Categories:
    """msm's categories of transitions: observation-time groups, interval groups within.

    Attributes
    ----------
    code : ndarray of int64, shape (n,)
        Category of each transition, ``time_group * n_interval + interval_group``.
    time_group, interval_group : ndarray of int64, shape (n,)
    time_breaks : ndarray
        Cut points of the observation-time groups (time units).
    interval_breaks : list of ndarray
        Cut points of the interval groups within each time group (time units).
    n_time, n_interval : int
        Numbers of groups (``n_interval`` the largest over time groups).
    """

    code: np.ndarray
    time_group: np.ndarray
    interval_group: np.ndarray
    time_breaks: np.ndarray
    interval_breaks: list[np.ndarray]
    n_time: int
    n_interval: int

    @property
    def n_categories(self) -> int:
        """Number of categories (some may hold no transitions)."""
        return self.n_time * self.n_interval


def msm_categories(
    time: np.ndarray, dt: np.ndarray, timegroups: int = 3, intervalgroups: int = 3
) -> Categories:
    """Categories of ``pearson.msm``: ``timegroups`` x ``intervalgroups`` quantile groups.

    Parameters
    ----------
    time : ndarray, shape (n,)
        Time of the observation that ends each transition (time units; msm's time
        variable, e.g. years since entry or a calendar year).
    dt : ndarray, shape (n,)
        Length of each transition's interval (time units).
    timegroups, intervalgroups : int
        Numbers of quantile groups (msm's defaults: 3 and 3).

    Returns
    -------
    Categories
    """
    time = np.asarray(time, dtype=float)
    dt = np.asarray(dt, dtype=float)
    n_time = min(np.unique(time).size, timegroups)
    tg, tbreaks = quantile_cut(time, quantile_edges(time, n_time))
    ig = np.zeros(time.size, dtype=np.int64)
    ibreaks = []
    for g in range(tbreaks.size - 1):
        at = tg == g
        if not at.any():
            ibreaks.append(np.array([]))
            continue
        ig[at], br = quantile_cut(dt[at], quantile_edges(dt[at], intervalgroups))
        ibreaks.append(br)
    n_int = int(ig.max(initial=0)) + 1
    return Categories(tg * n_int + ig, tg, ig, tbreaks, ibreaks, tbreaks.size - 1, n_int)


def interval_transitions(allowed: np.ndarray) -> np.ndarray:
    """Pairs ``(a, b)`` with ``b`` reachable from ``a`` over an interval, as msm's.

    ``allowed[a, b]`` marks the direct moves. A state reaches itself; pairs from an
    absorbing state are left out (msm's ``intervaltrans.msm(exclude.absabs = TRUE)``).

    Returns
    -------
    ndarray of int64, shape (n_pairs, 2)
        Ordered by from-state, then to-state.
    """
    k = allowed.shape[0]
    reach = np.eye(k, dtype=bool) | allowed.astype(bool)
    for _ in range(k):
        reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
    absorbing = ~allowed.astype(bool).any(axis=1)
    return np.array(
        [(a, b) for a in range(k) for b in range(k) if reach[a, b] and not absorbing[a]]
    )


def pearson_tables(
    category: np.ndarray,
    origin: np.ndarray,
    destination: np.ndarray,
    probs: np.ndarray,
    n_categories: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Observed and expected transitions by category, from-state and to-state.

    Parameters
    ----------
    category, origin, destination : ndarray of int, shape (..., n)
        Category, from-state and to-state of every transition (a leading draw axis
        for replicated data).
    probs : ndarray, shape (..., n, K)
        ``P(dt)[origin, :]`` of every transition.
    n_categories : int

    Returns
    -------
    observed, expected : ndarray, shape (..., C, K, K)
        Counts; expectations below :data:`SMALL_EXPECTED` are 0 (as msm).
    """
    k = probs.shape[-1]
    lead = probs.shape[:-2]
    n = probs.shape[-2]
    category, origin, destination = (
        np.broadcast_to(a, (*lead, n)).reshape(-1, n) for a in (category, origin, destination)
    )
    flat = probs.reshape(-1, n, k)
    m = flat.shape[0]
    cell = (np.arange(m)[:, None] * n_categories + category) * k + origin  # (m, n)
    size = m * n_categories * k
    obs = np.bincount((cell * k + destination).ravel(), minlength=size * k).astype(float)
    exp = np.stack(
        [np.bincount(cell.ravel(), weights=flat[..., j].ravel(), minlength=size) for j in range(k)],
        axis=-1,
    )
    exp = np.where(exp < SMALL_EXPECTED, 0.0, exp)
    shape = (*lead, n_categories, k, k)
    return obs.reshape(shape), exp.reshape(shape)


def pearson_statistic(observed: np.ndarray, expected: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``sum (O - E)^2 / E`` over categories and interval transitions ``pairs`` (msm's).

    Cells with ``E = 0`` add ``O^2`` (msm's ``(O - E)^2 / (E + (E == 0))``).
    Returns the statistic with the leading (draw) dims of the tables.
    """
    o = observed[..., pairs[:, 0], pairs[:, 1]]
    e = expected[..., pairs[:, 0], pairs[:, 1]]
    return (((o - e) ** 2) / (e + (e == 0))).sum(axis=(-2, -1))


def degrees_of_freedom(
    observed: np.ndarray, pairs: np.ndarray, n_parameters: int
) -> tuple[int, int]:
    """Degrees of freedom ``(df_lower, df_upper)`` of msm: independent cells, less parameters.

    A from-state with ``m`` reachable to-states adds ``m - 1`` cells in every category
    where transitions from it were observed.
    """
    origins, per_origin = np.unique(pairs[:, 0], return_counts=True)
    n_from = observed[:, origins, :].sum(axis=-1)  # (C, origins)
    df_upper = int(((n_from > 0) * (per_origin - 1)).sum())
    return df_upper - n_parameters, df_upper


def chi_square_bounds(stat: float, df_lower: int, df_upper: int) -> tuple[float, float]:
    """Tail probabilities of ``stat`` under ``chi2(df_lower)`` and ``chi2(df_upper)``."""
    return float(stats.chi2.sf(stat, max(df_lower, 1))), float(stats.chi2.sf(stat, df_upper))


def pmatrix_derivatives(
    q: np.ndarray, dt: np.ndarray, moves: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``P(dt)`` and its derivatives in the log-intensities of ``moves``, per distinct ``dt``.

    Parameters
    ----------
    q : ndarray, shape (K, K)
        Generator (per time unit).
    dt : ndarray, shape (n,)
        Intervals (time units).
    moves : ndarray of int, shape (M, 2)
        The free intensities ``q[r, s]``; parameter ``m`` is ``log q[moves[m]]``.

    Returns
    -------
    p : ndarray, shape (U, K, K)
        ``P`` of the distinct intervals.
    dp : ndarray, shape (U, K, K, M)
        ``dP / d log q_rs`` (Frechet derivative of the matrix exponential).
    key : ndarray of int64, shape (n,)
        Distinct interval of each interval.
    """
    k = q.shape[0]
    durations, key = np.unique(np.asarray(dt, dtype=float), return_inverse=True)
    p = np.empty((durations.size, k, k))
    dp = np.empty((durations.size, k, k, len(moves)))
    for m, (r, s) in enumerate(moves):
        direction = np.zeros((k, k))
        direction[r, s], direction[r, r] = q[r, s], -q[r, s]
        for u, t in enumerate(durations):
            p[u], dp[u, :, :, m] = expm_frechet(q * t, direction * t)
    return p, dp, key.astype(np.int64)


def expected_information(probs: np.ndarray, dprobs: np.ndarray) -> np.ndarray:
    """Expected information of panel transitions (Kalbfleisch and Lawless 1985).

    ``sum_i sum_j dP_ij dP_ij^T / P_ij`` over transitions ``i`` and destinations ``j``
    with ``P_ij > 0`` (msm's ``info``, halved: msm's is of ``-2 log L``).

    Parameters
    ----------
    probs : ndarray, shape (n, K)
        ``P(dt_i)[from_i, :]``.
    dprobs : ndarray, shape (n, K, M)
        Its derivatives in the M parameters.
    """
    positive = probs > 0
    weight = np.where(positive, 1.0 / np.where(positive, probs, 1.0), 0.0)
    return np.einsum("nja,nj,njb->ab", dprobs, weight, dprobs)


def titman_weights(
    category: np.ndarray,
    origin: np.ndarray,
    probs: np.ndarray,
    dprobs: np.ndarray,
    expected: np.ndarray,
    pairs: np.ndarray,
    information: np.ndarray | None = None,
) -> np.ndarray:
    """Weights of the statistic's null distribution, a sum of weighted ``chi2(1)`` (Titman 2009).

    The scaled residuals ``(O - E) / sqrt(E)`` of the cells (category, from-state,
    reachable to-state) are asymptotically normal with covariance
    ``V = S Sigma S - W I^-1 W^T``: ``Sigma`` the multinomial covariance of the cells
    (block diagonal by category and from-state), ``S = diag(1 / sqrt(E))``,
    ``W = S dE/dtheta`` and ``I`` the expected information; the statistic is
    asymptotically ``sum lambda_i chi2(1)`` over the eigenvalues of ``V`` (msm's
    ``lambda``).

    Parameters
    ----------
    category, origin : ndarray of int, shape (n,)
    probs : ndarray, shape (n, K)
        ``P(dt_i)[from_i, :]`` at the estimate.
    dprobs : ndarray, shape (n, K, M)
        Its derivatives in the M estimated parameters.
    expected : ndarray, shape (C, K, K)
        Expected counts (:func:`pearson_tables`).
    pairs : ndarray, shape (n_pairs, 2)
        Interval transitions (:func:`interval_transitions`).
    information : ndarray, shape (M, M), optional
        Expected information of the parameters; by default
        :func:`expected_information` of ``probs`` and ``dprobs``.

    Returns
    -------
    ndarray
        Eigenvalues of ``V``, decreasing.
    """
    k = probs.shape[1]
    reachable = np.zeros((k, k), dtype=bool)
    reachable[pairs[:, 0], pairs[:, 1]] = True
    groups, group = np.unique(np.stack([category, origin], axis=1), axis=0, return_inverse=True)
    group = group.ravel()
    n_groups, n_par = groups.shape[0], dprobs.shape[2]
    e = expected[groups[:, 0], groups[:, 1]]  # (G, K)
    use = reachable[groups[:, 1]] & (e > 0)
    scale = np.where(use, 1.0 / np.sqrt(np.where(use, e, 1.0)), 0.0)  # (G, K)
    psi = np.zeros((n_groups, k, n_par))
    np.add.at(psi, group, dprobs)
    sigma = np.zeros((n_groups, k, k))
    np.add.at(sigma, group, probs[:, :, None] * (np.eye(k) - probs[:, None, :]))
    w = (scale[:, :, None] * psi).reshape(n_groups * k, n_par)
    ssig = scale[:, :, None] * sigma * scale[:, None, :]
    v = np.zeros((n_groups * k, n_groups * k))
    for g in range(n_groups):
        v[g * k : (g + 1) * k, g * k : (g + 1) * k] = ssig[g]
    info = expected_information(probs, dprobs) if information is None else information
    v -= w @ np.linalg.solve(info, w.T)
    return np.linalg.eigvalsh((v + v.T) / 2)[::-1]


def weighted_chi_square_sf(stat: float, weights: np.ndarray) -> float:
    """``Pr(sum w_i chi2(1) > stat)`` by Imhof's inversion (as msm's ``pearson.msm``).

    ``1/2 + (1/pi) int_0^inf Im(phi(u) exp(-i u stat)) / u du`` with the characteristic
    function ``phi(u) = prod (1 - 2 i w_i u)^(-1/2)``. ``phi`` varies slowly, so beyond
    a few periods of ``exp(-i u stat)`` the integral is taken as two Fourier integrals
    (QUADPACK's QAWF), which converge where plain quadrature of the oscillating tail
    stalls. Like msm, a result within twice the error estimate of 0 or 1 is 0 or 1;
    nan when the quadrature fails.
    """
    w = np.asarray(weights, dtype=float)
    w = w[np.abs(w) > 1e-12 * np.abs(w).max(initial=0.0)]
    if w.size == 0:  # the statistic is 0
        return float(stat < 0)
    if stat <= 0:
        return 1.0

    def phi(u: float) -> complex:
        return complex(np.exp(-0.5 * np.log(1 - 2j * w * u).sum()))

    def near(u: float) -> float:
        return float(np.imag(phi(u) * np.exp(-1j * u * stat))) / u

    split = 20 * np.pi / stat  # ten periods of exp(-i u stat)
    with warnings.catch_warnings():
        warnings.simplefilter("error", integrate.IntegrationWarning)
        try:
            head, e0 = integrate.quad(near, 0.0, split, limit=500)
            cos_part, e1 = integrate.quad(
                lambda u: phi(u).imag / u, split, np.inf, weight="cos", wvar=stat, limlst=200
            )
            sin_part, e2 = integrate.quad(
                lambda u: phi(u).real / u, split, np.inf, weight="sin", wvar=stat, limlst=200
            )
        except integrate.IntegrationWarning:
            return float("nan")
    p = 0.5 + (head + cos_part - sin_part) / np.pi
    err = (e0 + e1 + e2) / np.pi
    if p - 2 * err < 0:
        return 0.0
    if p + 2 * err > 1:
        return 1.0
    return float(p)
