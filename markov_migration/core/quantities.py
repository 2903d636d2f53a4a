"""Quantities of a multi-state Markov model on arrays: P(t), sojourn, pnext, leave, totlos, passage.

Layer 1 (numpy, scipy; the numba Pade expm of :mod:`markov_migration.core.expm`
as the fallback of :func:`pmatrix`). Functions take stacks of generators ``q``
of shape ``(..., K, K)`` (one per posterior draw; moves per person and time
unit) or, with the ``_discrete`` suffix, stacks of one-step transition
matrices ``p`` (times in steps), and return arrays with the same leading
dims. The names follow R msm (``pmatrix``, ``sojourn``, ``pnext``,
``totlos``, ``passage`` for ``efpt``); :mod:`markov_migration.results.quantities`
labels the same quantities of a fit with xarray under the same names.
"""

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from markov_migration.core.expm import expm as _expm_numba
from markov_migration.core.spectral import KAPPA_MAX

__all__ = [
    "integrated_pmatrix",
    "leave",
    "leave_discrete",
    "passage",
    "passage_discrete",
    "passage_states",
    "pmatrix",
    "pmatrix_discrete",
    "pnext",
    "pnext_discrete",
    "sojourn",
    "sojourn_discrete",
    "totlos",
    "totlos_discrete",
]


# --------------------------------------------------------------------------
# Continuous time: generators q (..., K, K)
# --------------------------------------------------------------------------


def pmatrix(Q, t) -> np.ndarray:
    """Transition probability matrices ``P(t) = expm(Q t)``.

    Vectorised over posterior draws: one batched eigendecomposition of all
    generators, then ``U diag(exp(lam t)) U^-1`` for every time. Generators
    whose eigenvector matrix is ill-conditioned (condition number above
    :data:`KAPPA_MAX`, e.g. defective ``Q``) use a Pade matrix exponential
    (:func:`markov_migration.core.expm.expm`). Non-finite generators give nan.

    Parameters
    ----------
    Q : array_like, shape (..., K, K)
        Generator(s): intensities per unit of time (e.g. per year).
    t : float or array_like, shape (T...)
        Time(s) in the same unit, >= 0.

    Returns
    -------
    ndarray, shape (..., T..., K, K)
        ``P[..., j, :, :]`` is the transition matrix of generator ``Q[...]``
        over time ``t[j]``; the batch dimensions of ``Q`` come first, then the
        dimensions of ``t``. Rows sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> Q = np.array([[-0.2, 0.2], [0.1, -0.1]])
    >>> P = pmatrix(Q, [1.0, 5.0])
    >>> P.shape
    (2, 2, 2)
    >>> bool(np.allclose(P.sum(axis=-1), 1.0))
    True
    """
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim < 2 or Q.shape[-1] != Q.shape[-2]:
        raise ValueError(f"Q must have shape (..., K, K), got {Q.shape}")
    t = np.asarray(t, dtype=np.float64)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ValueError("t must be finite and >= 0")
    batch, K = Q.shape[:-2], Q.shape[-1]
    Qf = Q.reshape(-1, K, K)
    tf = t.reshape(-1)
    out = np.empty((Qf.shape[0], tf.shape[0], K, K))
    finite = np.all(np.isfinite(Qf), axis=(1, 2))
    good = np.zeros(Qf.shape[0], dtype=bool)
    if np.any(finite):
        lam, U = np.linalg.eig(Qf[finite])
        # a singular U gives inf/nan in its inverse and fails the condition test below
        with np.errstate(all="ignore"):
            Uinv = _batched_inv(U)
            kappa = np.abs(U).sum(axis=-2).max(axis=-1) * np.abs(Uinv).sum(axis=-2).max(axis=-1)
        ok = np.isfinite(kappa) & (kappa <= KAPPA_MAX)
        idx = np.flatnonzero(finite)[ok]
        good[idx] = True
        expo = np.exp(lam[ok][:, None, :] * tf[None, :, None])  # (n, T, K)
        P = np.einsum("nik,ntk,nkj->ntij", U[ok], expo, Uinv[ok])
        out[idx] = P.real
    for n in np.flatnonzero(~good):
        for j, tj in enumerate(tf):
            # the numba Pade expm: for nearly defective Q at long times it is more
            # accurate than scipy.linalg.expm (1e-15 against 1e-11 in the tests)
            out[n, j] = _expm_numba(Qf[n] * tj) if finite[n] else np.nan
    return out.reshape(batch + t.shape + (K, K))


def _batched_inv(U: np.ndarray) -> np.ndarray:
    """Inverse of a stack of matrices; singular ones come back as nan."""
    out = np.full_like(U, np.nan)
    try:
        return np.linalg.inv(U)
    except np.linalg.LinAlgError:
        for n in range(U.shape[0]):
            try:
                out[n] = np.linalg.inv(U[n])
            except np.linalg.LinAlgError:
                pass
        return out


def sojourn(q: np.ndarray) -> np.ndarray:
    """Mean sojourn time in each state, ``-1 / q_rr`` (inf for absorbing states).

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
        Generators (moves per time unit).

    Returns
    -------
    ndarray, shape (..., K)
        Time units.
    """
    rate_out = -np.diagonal(q, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore"):
        return np.where(rate_out > 0, 1.0 / np.where(rate_out > 0, rate_out, 1.0), np.inf)


def pnext(q: np.ndarray) -> np.ndarray:
    """Probability that the next move from r goes to s, ``q_rs / -q_rr``.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)

    Returns
    -------
    ndarray, shape (..., K, K)
        Zero on the diagonal; rows of absorbing states are nan.
    """
    k = q.shape[-1]
    rate_out = -np.diagonal(q, axis1=-2, axis2=-1)[..., :, None]
    off = np.where(np.eye(k, dtype=bool), 0.0, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rate_out > 0, off / np.where(rate_out > 0, rate_out, 1.0), np.nan)


def leave(q: np.ndarray, t: float) -> np.ndarray:
    """Probability of leaving each state at least once within ``t``, ``1 - exp(q_rr t)``.

    Not ``1 - P(t)_rr``, which counts those who left and came back as staying.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
        Generators (moves per time unit).
    t : float
        Time window, > 0, time units.

    Returns
    -------
    ndarray, shape (..., K)
        Probabilities; 0 for absorbing states.
    """
    return -np.expm1(np.diagonal(q, axis1=-2, axis2=-1) * t)


def integrated_pmatrix(q: np.ndarray, horizon: float) -> np.ndarray:
    """``int_0^H expm(Q u) du`` for each generator (Van Loan's block exponential).

    ``expm([[Q, I], [0, 0]] H)`` has the integral as its upper-right block.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
    horizon : float
        H >= 0, time units.

    Returns
    -------
    ndarray, shape (..., K, K)
        Entry (r, s): expected time spent in s within H after starting in r.
    """
    k = q.shape[-1]
    block = np.zeros((*q.shape[:-2], 2 * k, 2 * k))
    block[..., :k, :k] = q * horizon
    block[..., :k, k:] = np.eye(k) * horizon
    return scipy.linalg.expm(block)[..., :k, k:]


def totlos(q: np.ndarray, horizon: float, start: np.ndarray) -> np.ndarray:
    """Compute the expected time in each state within ``horizon`` from distribution ``start``.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
    horizon : float
        Time units, > 0 (``math.inf``: time before absorption; the model must
        have absorbing states reached from every other state).
    start : ndarray, shape (K,)
        Initial distribution (sums to 1).

    Returns
    -------
    ndarray, shape (..., K)
        Time units. With an infinite horizon absorbing states are inf (or 0
        if never entered).
    """
    if math.isinf(horizon):
        absorbing = np.all(q == 0, axis=(*range(q.ndim - 2), q.ndim - 1))
        transient = ~absorbing
        if transient.all():
            raise ValueError("an infinite horizon needs absorbing states")
        qtt = q[..., transient][..., transient, :]
        fund = np.linalg.inv(-qtt)  # expected time in t' before absorption, from t
        out = np.full((*q.shape[:-2], q.shape[-1]), np.inf)
        out[..., transient] = np.einsum("k,...kj->...j", start[transient], fund)
        return out
    return np.einsum("k,...kj->...j", start, integrated_pmatrix(q, horizon))


def passage_states(allowed: np.ndarray, target: Sequence[int]) -> np.ndarray:
    """States whose expected first-passage time to ``target`` is finite.

    Finite exactly when every path from the state reaches the target with
    probability one: the state cannot wander (avoiding the target) into a
    state from which the target is unreachable.

    Parameters
    ----------
    allowed : ndarray of bool, shape (K, K)
        Allowed direct moves.
    target : sequence of int
        Target state indices.

    Returns
    -------
    ndarray of bool, shape (K,)
        True for non-target states with a finite expected passage time.
    """
    k = allowed.shape[0]
    is_target = np.zeros(k, dtype=bool)
    is_target[list(target)] = True
    # reach[r, s]: s reachable from r through non-target states (s itself may be a target)
    step = allowed & ~is_target[:, None]
    reach = step | np.eye(k, dtype=bool)
    for m in range(k):
        reach |= reach[:, [m]] & reach[[m], :] & ~is_target[m]
    hits = (reach & is_target[None, :]).any(axis=1)
    trap = ~is_target & ~hits
    infinite = (reach & trap[None, :]).any(axis=1)
    return ~is_target & ~infinite


def passage(q: np.ndarray, target: Sequence[int], finite: np.ndarray) -> np.ndarray:
    """Compute the expected first-passage time from each state to the target set.

    Solves ``Q_FF m_F = -1`` over the states F with a finite expectation.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
    target : sequence of int
    finite : ndarray of bool, shape (K,)
        From :func:`passage_states`.

    Returns
    -------
    ndarray, shape (..., K)
        Time units; 0 for target states, inf for the others not in ``finite``.
    """
    k = q.shape[-1]
    out = np.full((*q.shape[:-2], k), np.inf)
    out[..., list(target)] = 0.0
    if finite.any():
        qff = q[..., finite][..., finite, :]
        ones = np.ones((*q.shape[:-2], int(finite.sum()), 1))
        out[..., finite] = np.linalg.solve(qff, -ones)[..., 0]
    return out


# --------------------------------------------------------------------------
# Discrete time: one-step matrices p (..., K, K), times in steps
# --------------------------------------------------------------------------


def pmatrix_discrete(p: np.ndarray, n: int) -> np.ndarray:
    """``n``-step transition matrices ``P^n``.

    Parameters
    ----------
    p : ndarray, shape (..., K, K)
        One-step transition matrices.
    n : int
        Number of steps, >= 0.

    Returns
    -------
    ndarray, shape (..., K, K)
    """
    return np.linalg.matrix_power(p, n)


def sojourn_discrete(p: np.ndarray) -> np.ndarray:
    """Mean length of a stay, ``1 / (1 - p_rr)`` steps (inf for absorbing states)."""
    stay = np.diagonal(p, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore"):
        return np.where(stay < 1, 1.0 / np.where(stay < 1, 1.0 - stay, 1.0), np.inf)


def pnext_discrete(p: np.ndarray) -> np.ndarray:
    """Probability that the next move out of r goes to s, ``p_rs / (1 - p_rr)`` (nan rows if absorbing)."""
    k = p.shape[-1]
    away = 1.0 - np.diagonal(p, axis1=-2, axis2=-1)[..., :, None]
    off = np.where(np.eye(k, dtype=bool), 0.0, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(away > 0, off / np.where(away > 0, away, 1.0), np.nan)


def leave_discrete(p: np.ndarray, n: int) -> np.ndarray:
    """Probability of leaving each state at least once within ``n`` steps, ``1 - p_rr^n``."""
    return 1.0 - np.diagonal(p, axis1=-2, axis2=-1) ** n


def totlos_discrete(p: np.ndarray, horizon: int, start: np.ndarray) -> np.ndarray:
    """Expected number of steps spent in each state among steps ``0 .. horizon - 1`` from ``start``."""
    dist = np.broadcast_to(start, (*p.shape[:-2], p.shape[-1])).copy()
    total = np.zeros_like(dist)
    for _ in range(horizon):
        total += dist
        dist = np.einsum("...k,...kj->...j", dist, p)
    return total


def passage_discrete(p: np.ndarray, target: Sequence[int], finite: np.ndarray) -> np.ndarray:
    """Expected number of steps to first reach ``target``, ``(I - P_FF)^-1 1`` (see :func:`passage`)."""
    k = p.shape[-1]
    out = np.full((*p.shape[:-2], k), np.inf)
    out[..., list(target)] = 0.0
    if finite.any():
        n = int(finite.sum())
        a = np.eye(n) - p[..., finite][..., finite, :]
        out[..., finite] = np.linalg.solve(a, np.ones((*p.shape[:-2], n, 1)))[..., 0]
    return out
