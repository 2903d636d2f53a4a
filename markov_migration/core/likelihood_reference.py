"""Reference panel log-likelihood and gradient in numpy/scipy (readable, slow).

Layer 1 (numpy, scipy only). Built on :func:`scipy.linalg.expm` and
:func:`scipy.linalg.expm_frechet`, independent of the numba kernels, so the
tests compare the fast path against it.
"""

import numpy as np
import scipy.linalg

from markov_migration.core.layout import _prepare

__all__ = ["loglik_and_grad_reference", "loglik_reference", "row_loglik_reference"]


def _reference_pieces(Q, piece_q, piece_t):
    return (
        np.stack([scipy.linalg.expm(Q[m] * t) for m, t in zip(piece_q, piece_t, strict=True)])
        if len(piece_q)
        else np.zeros((0,) + Q.shape[1:])
    )


def _reference_row_factors(P, row_ptr, row_piece, r, a, b):
    """Left row vectors and right column vectors of a row's product of pieces.

    For the product ``P_1 ... P_n`` and entry ``[a, b]``, ``left[k]`` is row ``a``
    of ``P_1 ... P_(k-1)`` and ``right[k]`` column ``b`` of ``P_(k+1) ... P_n``,
    so ``value = left[k] @ P_k @ right[k]`` and the adjoint of ``P_k`` is
    ``outer(left[k], right[k])``.
    """
    pieces = row_piece[row_ptr[r] : row_ptr[r + 1]]
    K = P.shape[1]
    left = [np.eye(K)[a]]
    for p in pieces[:-1]:
        left.append(left[-1] @ P[p])
    right = [np.eye(K)[:, b]]
    for p in pieces[:0:-1]:
        right.append(P[p] @ right[-1])
    right = right[::-1]
    value = left[-1] @ P[pieces[-1]] @ right[-1]
    return pieces, left, right, value


def row_loglik_reference(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    """Compute :func:`row_loglik` with :func:`scipy.linalg.expm` (reference)."""
    Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count = _prepare(
        Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
    )
    P = _reference_pieces(Q, piece_q, piece_t)
    out = np.empty(row_from.shape[0])
    for r in range(out.shape[0]):
        *_, value = _reference_row_factors(P, row_ptr, row_piece, r, row_from[r], row_to[r])
        out[r] = np.log(value) if value > 0 and np.isfinite(value) else -np.inf
    return out


def loglik_reference(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    """Compute :func:`loglik` with :func:`scipy.linalg.expm` (reference)."""
    return loglik_and_grad_reference(
        Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
    )[0]


def loglik_and_grad_reference(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    """Compute log-likelihood and gradient with scipy's expm and Frechet derivative (reference).

    The adjoint ``G_p = dL/dP_p`` of each piece is accumulated from the rows,
    and ``dL/dQ_m = sum_p t_p L(Q_m^T t_p, G_p)`` over the pieces of generator
    ``m``, because the Frobenius adjoint of ``E -> L(A, E)`` is ``G -> L(A^T, G)``.
    Same signature and return value as :func:`loglik_and_grad`.
    """
    Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count = _prepare(
        Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
    )
    P = _reference_pieces(Q, piece_q, piece_t)
    G = np.zeros_like(P)
    total = 0.0
    for r in range(row_from.shape[0]):
        if row_count[r] == 0:
            continue
        pieces, left, right, value = _reference_row_factors(
            P, row_ptr, row_piece, r, row_from[r], row_to[r]
        )
        if not (value > 0 and np.isfinite(value)):
            return -np.inf, np.zeros_like(Q)
        total += row_count[r] * np.log(value)
        for k, p in enumerate(pieces):
            G[p] += row_count[r] / value * np.outer(left[k], right[k])
    dQ = np.zeros_like(Q)
    for p, (m, t) in enumerate(zip(piece_q, piece_t, strict=True)):
        if np.any(G[p]):
            dQ[m] += t * scipy.linalg.expm_frechet(Q[m].T * t, G[p], compute_expm=False)
    return float(total), dQ
