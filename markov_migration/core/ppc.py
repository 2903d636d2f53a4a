"""Arithmetic of the posterior predictive checks on plain arrays (no xarray).

Pearson's chi-square discrepancy, the posterior predictive p-value, interval bands of
the transition-count check and ``P(t)`` of a draw set; the checks that read fit files
are in :mod:`markov_migration.results.ppc`.
"""

from __future__ import annotations

import numpy as np

from markov_migration.core.likelihood import pmatrix


def transition_matrices(
    matrices: np.ndarray, times: np.ndarray, discrete: bool, resolution: float
) -> np.ndarray:
    """``P(t)`` for every draw and time.

    Parameters
    ----------
    matrices : ndarray, shape (D, K, K)
        Generators (continuous time, per time unit) or one-step matrices (discrete time).
    times : ndarray, shape (T,)
        Times (time units); in discrete time rounded to whole steps of ``resolution``.
    discrete : bool
        Whether ``matrices`` are one-step transition matrices.
    resolution : float
        Length of one step (time units).

    Returns
    -------
    ndarray, shape (D, T, K, K)
    """
    times = np.asarray(times, dtype=float)
    if discrete:
        steps = np.round(times / resolution).astype(np.int64)
        out = np.empty((matrices.shape[0], times.size, *matrices.shape[1:]))
        for j, n in enumerate(steps):
            out[:, j] = np.linalg.matrix_power(matrices, int(n))
        return out
    return pmatrix(matrices, times)


def chi_square(y: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Pearson's discrepancy ``sum (y - E)^2 / E`` over the last axis (cells with E > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            expected > 0, (y - expected) ** 2 / np.where(expected > 0, expected, 1.0), 0.0
        )
    return terms.sum(axis=-1)


def ppp(observed: np.ndarray, replicated: np.ndarray) -> float:
    """Posterior predictive p-value ``Pr(X(y_rep) >= X(y))`` from per-draw discrepancies."""
    return float(np.mean(replicated >= observed))


def interval_bands(intervals: np.ndarray, weights: np.ndarray, n_bands: int) -> np.ndarray:
    """Edges of up to ``n_bands`` interval bands with about equal numbers of transitions.

    Parameters
    ----------
    intervals : ndarray
        Intervals between observations (time units).
    weights : ndarray
        Transitions at each interval (count).
    n_bands : int
        Largest number of bands.

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


def band_labels(edges: np.ndarray) -> list[str]:
    """Labels ``[a, b]``, ``(b, c]`` ... of the bands between ``edges``."""
    if edges.size == 1:
        return [f"{edges[0]:.3g}"]
    out = []
    for i in range(edges.size - 1):
        left = "[" if i == 0 else "("
        out.append(f"{left}{edges[i]:.3g}, {edges[i + 1]:.3g}]")
    return out


def band_index(intervals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The band (0-based) of each interval, for edges from :func:`interval_bands`."""
    if edges.size == 1:
        return np.zeros(intervals.size, dtype=np.int64)
    return np.clip(np.searchsorted(edges, intervals, side="left") - 1, 0, edges.size - 2).astype(
        np.int64
    )


def triple_cell_counts(s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, k: int) -> np.ndarray:
    """Counts of observation triples in every cell ``(s1, s2, s3)``, per draw.

    Parameters
    ----------
    s1, s2, s3 : ndarray of int, shape (D, n) or (n,)
        States at three consecutive observations of ``n`` triples.
    k : int
        Number of states.

    Returns
    -------
    ndarray, shape (D, K**3)
        Triples (count) in cell ``(s1 * K + s2) * K + s3``.
    """
    s1, s2, s3 = np.broadcast_arrays(*(np.atleast_2d(a) for a in (s1, s2, s3)))
    n_draw = s1.shape[0]
    cell = (np.arange(n_draw)[:, None] * k + s1) * k * k + s2 * k + s3
    return np.bincount(cell.ravel(), minlength=n_draw * k**3).reshape(n_draw, k**3).astype(float)


def triple_expected(s1: np.ndarray, s2: np.ndarray, gap_key: np.ndarray, p_gap: np.ndarray):
    """Expected counts of the third state given the first two, per draw (Markov model).

    Under a Markov model the third state of a triple depends on the first two only
    through the second: ``E[s1, s2, s3] = sum over triples in (s1, s2) of
    P(t3 - t2)[s2, s3]``.

    Parameters
    ----------
    s1, s2 : ndarray of int, shape (D, n) or (n,)
        First and second states of the triples.
    gap_key : ndarray of int, shape (n,)
        Distinct second gap ``t3 - t2`` of each triple (index into ``p_gap``).
    p_gap : ndarray, shape (D, U, K, K)
        Transition matrices of the distinct gaps, per draw.

    Returns
    -------
    ndarray, shape (D, K**3)
        Expected triples (count) in cell ``(s1 * K + s2) * K + s3``.
    """
    n_draw, n_gap, k = p_gap.shape[0], p_gap.shape[1], p_gap.shape[-1]
    s1, s2 = np.broadcast_arrays(np.atleast_2d(s1), np.atleast_2d(s2))
    s1 = np.broadcast_to(s1, (n_draw, s1.shape[1]))
    s2 = np.broadcast_to(s2, (n_draw, s2.shape[1]))
    # n[d, s1, s2, u]: triples per draw, first two states and second gap
    idx = ((np.arange(n_draw)[:, None] * k + s1) * k + s2) * n_gap + gap_key[None, :]
    n = np.bincount(idx.ravel(), minlength=n_draw * k * k * n_gap).reshape(n_draw, k, k, n_gap)
    probs = np.clip(p_gap, 0.0, None)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    return np.einsum("dabu,dubc->dabc", n, probs).reshape(n_draw, k**3)
