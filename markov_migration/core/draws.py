"""Choosing posterior draws: even thinning (checks) and reuse (projection).

``arviz_stats.thin`` thins by a factor per chain; checks and projections need a given
number of draws spread evenly over the flattened chains, and projections more draws
than the posterior holds, so this small index arithmetic is our own.
"""

from __future__ import annotations

import numpy as np


def select_draws(n_available: int, n_draws: int | None) -> np.ndarray:
    """Indices of ``n_draws`` of ``n_available`` flattened posterior samples.

    Fewer draws than samples: evenly spread samples (across all chains, first and
    last included). More: the samples are reused in turn. ``None``: all of them.

    Examples
    --------
    >>> select_draws(10, 4)
    array([0, 3, 6, 9])
    >>> select_draws(3, 5)
    array([0, 1, 2, 0, 1])
    """
    if n_draws is None:
        return np.arange(n_available)
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")
    if n_draws <= n_available:
        return np.unique(np.round(np.linspace(0, n_available - 1, n_draws)).astype(np.int64))
    return np.arange(n_draws) % n_available
