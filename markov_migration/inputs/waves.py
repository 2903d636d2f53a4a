"""Survey waves: clusters of observation times, shared by checks and projection."""

from __future__ import annotations

import numpy as np

from markov_migration.defaults import MAX_WAVES, QUANTILE_WAVES, WAVE_GAP_SHARE


def wave_bins(times: np.ndarray) -> np.ndarray:
    """Edges of waves: clusters of observation times separated by gaps.

    Times cluster into waves when the sorted distinct times have 1 to
    :data:`~markov_migration.defaults.MAX_WAVES` - 1 gaps wider than
    :data:`~markov_migration.defaults.WAVE_GAP_SHARE` of their span; otherwise
    :data:`~markov_migration.defaults.QUANTILE_WAVES` bins with equal numbers of
    observations are used.

    Parameters
    ----------
    times : ndarray
        Observation times (time units, e.g. decimal years).

    Returns
    -------
    ndarray
        Increasing edges; wave w holds times in ``[edges[w], edges[w + 1])``
        (the last wave includes its right edge).

    Examples
    --------
    >>> wave_bins(np.array([2022.7, 2022.75, 2023.5, 2023.6, 2024.5]))
    array([2022.7  , 2023.125, 2024.05 , 2024.5  ])
    """
    u = np.unique(times)
    if u.size == 1:
        return np.array([u[0], u[0]])
    span = u[-1] - u[0]
    gaps = np.diff(u)
    cut = np.flatnonzero(gaps > WAVE_GAP_SHARE * span)
    if 1 <= cut.size < MAX_WAVES:
        mids = (u[cut] + u[cut + 1]) / 2
        return np.concatenate([[u[0]], mids, [u[-1]]])
    n = min(QUANTILE_WAVES, u.size)
    return np.unique(np.quantile(times, np.linspace(0, 1, n + 1)))


def wave_index(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The wave (0-based) of each time, for edges from :func:`wave_bins`."""
    return np.clip(np.searchsorted(edges, times, side="right") - 1, 0, max(edges.size - 2, 0))
