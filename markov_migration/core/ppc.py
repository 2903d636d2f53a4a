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
