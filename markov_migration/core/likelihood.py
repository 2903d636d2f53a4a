"""Transition probabilities and the panel log-likelihood of a multi-state Markov model.

Layer 1 (numpy, scipy, numba only).

A continuous-time Markov chain on ``K`` states has a generator (transition
intensity matrix) ``Q`` with non-negative off-diagonal intensities, in events
per unit of the model's time (e.g. per year), and rows summing to zero. The
transition probability matrix over an interval of length ``t`` is
``P(t) = expm(Q t)``.

Panel data enter as aggregated counts in a compressed layout that supports
several generators (covariate patterns, groups) and piecewise-constant
periods:

(the arrays ``Q``, ``piece_q``, ``piece_t``, ``row_ptr``, ``row_piece``, ``row_from``,
``row_to``, ``row_count`` are described in :mod:`markov_migration.core.layout`).

The log-likelihood is ``sum_r row_count[r] * log(P_r[row_from[r], row_to[r]])``.

Two implementations are provided:

* a readable reference in numpy/scipy (``*_reference``), built on
  :func:`scipy.linalg.expm` and :func:`scipy.linalg.expm_frechet`;
* the fast path, numba kernels used by the sampler: one eigendecomposition
  ``Q = U diag(lam) U^-1`` per generator per evaluation gives ``P(t)`` for
  every piece, and the gradient follows from the divided-difference formula of
  Kalbfleisch & Lawless (1985), as in R msm. Generators whose eigenvector
  matrix is ill-conditioned (defective or nearly defective ``Q``: repeated
  rates, several absorbing states with special structure, triangular ``Q``
  with equal diagonals) fall back to a Pade matrix exponential and its Frechet
  derivative (:mod:`markov_migration.core.expm`).

This module is the public face; the parts live next to it:
:mod:`~markov_migration.core.layout` (panel arrays and their checks),
:mod:`~markov_migration.core.spectral` and
:mod:`~markov_migration.core.loglik_kernel` (the numba kernels),
:mod:`~markov_migration.core.native` (the C entry point and its cache key),
:mod:`~markov_migration.core.likelihood_reference` (the scipy reference) and
:mod:`~markov_migration.core.quantities` (:func:`pmatrix`, P(t) over draws).

References
----------
.. [1] Kalbfleisch, J. D. and Lawless, J. F. (1985). The analysis of panel data
   under a Markov assumption. JASA 80(392), 863-871.
.. [2] Jackson, C. H. (2011). Multi-state models for panel data: the msm
   package for R. J. Stat. Softw. 38(8).
"""

import numpy as np

from markov_migration.core.layout import (
    PANEL_FIELDS,
    _check_layout,
    _coerce_panel,
    _prepare,
    panel_arrays,
)
from markov_migration.core.likelihood_reference import (
    loglik_and_grad_reference,
    loglik_reference,
    row_loglik_reference,
)
from markov_migration.core.native import (
    _TASK_LOGLIK,
    _TASK_LOGLIK_GRAD,
    _TASK_ROW_LOGLIK,
    KERNEL_HASH,
    _call_native,
    _row_loglik_draws_native,
    ensure_native_kernel,
    native_loglik_and_grad,
)
from markov_migration.core.quantities import pmatrix

__all__ = [
    "KERNEL_HASH",
    "PANEL_FIELDS",
    "ensure_native_kernel",
    "loglik",
    "loglik_and_grad",
    "loglik_and_grad_reference",
    "loglik_reference",
    "native_loglik_and_grad",
    "panel_arrays",
    "pmatrix",
    "row_loglik",
    "row_loglik_draws",
    "row_loglik_reference",
]


def loglik(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count) -> float:
    """Panel log-likelihood ``sum_r count_r log P_r[from_r, to_r]``.

    Parameters
    ----------
    Q : array_like, shape (M, K, K) or (K, K)
        Generators; intensities per unit of the model's time.
    piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count : array_like
        Panel layout, see the module docstring (:data:`PANEL_FIELDS`).
        ``piece_t`` in the model's time unit, ``row_count`` in persons
        (float, so survey weights work).

    Returns
    -------
    float
        The log-likelihood; ``-inf`` if ``Q`` is not finite or an observed
        transition has probability <= 0 (rows with count 0 are ignored).

    Examples
    --------
    >>> import numpy as np
    >>> Q = np.array([[[-0.2, 0.2], [0.1, -0.1]]])
    >>> ll = loglik(Q, [0], [1.0], [0, 1, 2], [0, 0], [0, 0], [0, 1], [30.0, 5.0])
    >>> round(ll, 6)
    -14.469276
    """
    args = _prepare(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
    ensure_native_kernel()
    return float(_call_native(_TASK_LOGLIK, *args)[0][0])


def loglik_and_grad(
    Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
) -> tuple[float, np.ndarray]:
    """Panel log-likelihood and its gradient with respect to every entry of every Q.

    Entries of ``Q`` are treated as independent variables, the diagonal
    included (the caller builds the diagonal as minus the row sum and applies
    the chain rule).

    Parameters
    ----------
    Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
        As :func:`loglik`.

    Returns
    -------
    loglik : float
        As :func:`loglik`.
    dQ : ndarray of float64, shape (M, K, K)
        ``d loglik / d Q[m, i, j]`` (per unit intensity); zeros when ``loglik``
        is ``-inf``.
    """
    args = _prepare(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
    ensure_native_kernel()
    value, dQ = _call_native(_TASK_LOGLIK_GRAD, *args)
    return float(value[0]), dQ


def row_loglik(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count=None):
    """Log-probability of one transition of each row, ``log P_r[from_r, to_r]``.

    Not multiplied by the count; for pointwise model comparison (PSIS-LOO).

    Parameters
    ----------
    Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to
        As :func:`loglik`.
    row_count : array_like, optional
        Accepted for a uniform signature; not used.

    Returns
    -------
    ndarray of float64, shape (n_rows,)
        ``-inf`` where the probability is <= 0 or ``Q`` is not finite.
    """
    if row_count is None:
        row_count = np.zeros(np.shape(row_from))
    args = _prepare(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
    ensure_native_kernel()
    return _call_native(_TASK_ROW_LOGLIK, *args)[0]


def row_loglik_draws(
    Q_draws, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count=None
):
    """:func:`row_loglik` for every posterior draw.

    Parameters
    ----------
    Q_draws : array_like, shape (S, M, K, K)
        Generators of ``S`` draws.
    piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
        As :func:`row_loglik`.

    Returns
    -------
    ndarray of float64, shape (S, n_rows)
    """
    Q_draws = np.ascontiguousarray(Q_draws, dtype=np.float64)
    if Q_draws.ndim != 4 or Q_draws.shape[2] != Q_draws.shape[3]:
        raise ValueError(f"Q_draws must have shape (S, M, K, K), got {Q_draws.shape}")
    if row_count is None:
        row_count = np.zeros(np.shape(row_from))
    panel = _coerce_panel(piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
    _check_layout(Q_draws.shape[1], Q_draws.shape[2], *panel)
    ensure_native_kernel()
    return _row_loglik_draws_native(Q_draws, *panel[:-1])
