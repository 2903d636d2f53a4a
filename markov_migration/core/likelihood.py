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

``Q`` : float64 (M, K, K)
    Stack of ``M`` generators.
``piece_q`` : int64 (n_pieces,)
    Generator index of each *piece* (a distinct ``(generator, duration)`` pair).
``piece_t`` : float64 (n_pieces,)
    Duration of each piece, >= 0, in the model's time unit.
``row_ptr`` : int64 (n_rows + 1,)
    CSR pointer into ``row_piece``; row ``r`` uses pieces
    ``row_piece[row_ptr[r]:row_ptr[r + 1]]`` (at least one).
``row_piece`` : int64 (nnz,)
    Ordered pieces of each row: the interval's transition matrix is
    ``P(piece_0) @ P(piece_1) @ ...`` (an interval that crosses period cut
    points, as R msm's ``pci``). Almost always one piece per row.
``row_from``, ``row_to`` : int64 (n_rows,)
    Origin and destination state (0-based) of the observed transition.
``row_count`` : float64 (n_rows,)
    Number of (possibly weighted) persons making the transition.

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

References
----------
.. [1] Kalbfleisch, J. D. and Lawless, J. F. (1985). The analysis of panel data
   under a Markov assumption. JASA 80(392), 863-871.
.. [2] Jackson, C. H. (2011). Multi-state models for panel data: the msm
   package for R. J. Stat. Softw. 38(8).
"""

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm
import numpy as np
import scipy.linalg
from numba import carray, cfunc, njit, types
from numba.extending import overload

from markov_migration.core.expm import __file__ as _expm_module_file
from markov_migration.core.expm import expm as _expm_numba
from markov_migration.core.expm import expm_frechet as _expm_frechet_numba

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

#: Names of the data arrays that follow ``Q`` in every log-likelihood function.
PANEL_FIELDS = (
    "piece_q",
    "piece_t",
    "row_ptr",
    "row_piece",
    "row_from",
    "row_to",
    "row_count",
)

# The eigendecomposition is trusted when kappa_1(U) = ||U||_1 ||U^-1||_1 is below
# this bound: errors in P and in the gradient grow like eps * kappa (and
# eps * kappa**2 for the gradient's back-transformation), so 1e4 keeps them
# around 1e-11 relative to the matrix scale. Above it, the Pade fallback.
KAPPA_MAX = 1e4
# ...and when the reconstruction U diag(lam) U^-1 reproduces Q to this relative
# accuracy (1-norm); catches a failed inverse that the condition number misses.
RESIDUAL_MAX = 1e-10

_MODE_INVALID = -1  # non-finite generator: log-likelihood is -inf
_MODE_REAL = 0  # real spectrum: real arithmetic
_MODE_COMPLEX = 1  # complex spectrum (non-reversible chain): complex arithmetic
_MODE_FALLBACK = 2  # Pade expm and Frechet derivative

# numpy >= 2.5 (and numba with it) always returns complex eigenpairs from a real
# matrix; LAPACK's real eigenvalues then have an imaginary part of exactly 0.
_EIG_RETURNS_COMPLEX = np.linalg.eig(np.zeros((1, 1)))[0].dtype.kind == "c"


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------


def panel_arrays(data: Mapping[str, Any] | Any) -> tuple[np.ndarray, ...]:
    """Extract the seven panel arrays, in :data:`PANEL_FIELDS` order.

    Parameters
    ----------
    data : mapping or object
        Either a mapping with the keys of :data:`PANEL_FIELDS` or an object with
        attributes of those names.

    Returns
    -------
    tuple of ndarray
        ``(piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)``
        as C-contiguous int64 / float64 arrays.
    """
    if isinstance(data, Mapping):
        values = [data[name] for name in PANEL_FIELDS]
    else:
        values = [getattr(data, name) for name in PANEL_FIELDS]
    return _coerce_panel(*values)


def _coerce_panel(piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    out = []
    for name, value in zip(
        PANEL_FIELDS,
        (piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count),
        strict=True,
    ):
        arr = np.asarray(value)
        if name in ("piece_t", "row_count"):
            arr = np.ascontiguousarray(arr, dtype=np.float64)
        else:
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
            arr = np.ascontiguousarray(arr, dtype=np.int64)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
        out.append(arr)
    return tuple(out)


def _coerce_q(Q) -> np.ndarray:
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    if Q.ndim == 2:
        Q = Q[None]
    if Q.ndim != 3 or Q.shape[1] != Q.shape[2] or Q.shape[1] == 0:
        raise ValueError(f"Q must have shape (M, K, K) with K >= 1, got {Q.shape}")
    return Q


# Layout problems found by _layout_status, by status code.
_LAYOUT_ERRORS = {
    1: "piece_t and piece_q must have the same length",
    2: "row_from, row_to and row_count must have the same length",
    3: "row_ptr must have length n_rows + 1",
    4: "row_ptr must start at 0 and end at len(row_piece)",
    5: "piece_q holds an index outside 0..M-1",
    6: "piece_t must be finite and >= 0",
    7: "every row needs at least one piece (row_ptr must increase)",
    8: "row_from/row_to hold a state outside 0..K-1",
    9: "row_piece holds an index outside 0..n_pieces-1",
}


@njit(cache=True)
def _layout_status(
    n_gen, n_states, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
):
    """0 for a consistent data layout, else a key of ``_LAYOUT_ERRORS``.

    The kernels index without bounds checks, so every entry point runs this.
    """
    n_pieces = piece_q.shape[0]
    n_rows = row_from.shape[0]
    if piece_t.shape[0] != n_pieces:
        return 1
    if row_to.shape[0] != n_rows or row_count.shape[0] != n_rows:
        return 2
    if row_ptr.shape[0] != n_rows + 1:
        return 3
    if row_ptr[0] != 0 or row_ptr[n_rows] != row_piece.shape[0]:
        return 4
    for p in range(n_pieces):
        if piece_q[p] < 0 or piece_q[p] >= n_gen:
            return 5
        if not (piece_t[p] >= 0.0 and np.isfinite(piece_t[p])):
            return 6
    for r in range(n_rows):
        if row_ptr[r + 1] <= row_ptr[r]:
            return 7
        if row_from[r] < 0 or row_from[r] >= n_states or row_to[r] < 0 or row_to[r] >= n_states:
            return 8
    for i in range(row_piece.shape[0]):
        if row_piece[i] < 0 or row_piece[i] >= n_pieces:
            return 9
    return 0


@njit(cache=True)
def _raise_layout_error(status):
    """Raise the ValueError of a non-zero layout status (inside numba code)."""
    if status == 1:
        raise ValueError("piece_t and piece_q must have the same length")
    if status == 2:
        raise ValueError("row_from, row_to and row_count must have the same length")
    if status == 3:
        raise ValueError("row_ptr must have length n_rows + 1")
    if status == 4:
        raise ValueError("row_ptr must start at 0 and end at len(row_piece)")
    if status == 5:
        raise ValueError("piece_q holds an index outside 0..M-1")
    if status == 6:
        raise ValueError("piece_t must be finite and >= 0")
    if status == 7:
        raise ValueError("every row needs at least one piece (row_ptr must increase)")
    if status == 8:
        raise ValueError("row_from/row_to hold a state outside 0..K-1")
    if status == 9:
        raise ValueError("row_piece holds an index outside 0..n_pieces-1")
    if status != 0:
        raise ValueError("invalid panel data layout")


def _check_layout(n_gen, n_states, *panel):
    status = int(_layout_status(n_gen, n_states, *panel))
    if status:
        raise ValueError(_LAYOUT_ERRORS[status])


def _prepare(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    Q = _coerce_q(Q)
    panel = _coerce_panel(piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count)
    _check_layout(Q.shape[0], Q.shape[1], *panel)
    return (Q, *panel)


# --------------------------------------------------------------------------
# P(t) for many generators and times (summaries over posterior draws)
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


# --------------------------------------------------------------------------
# Reference implementation (numpy/scipy, readable, slow)
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Fast path: numba kernels
# --------------------------------------------------------------------------


def _expm1(z):  # pragma: no cover - replaced inside numba by the overload below
    return np.expm1(z)


@overload(_expm1)
def _expm1_overload(z):
    # numba's complex expm1 is exp(z) - 1, which cancels for small |z|
    if isinstance(z, types.Complex):

        def impl(z):
            x = z.real
            y = z.imag
            s = np.sin(0.5 * y)
            return complex(np.expm1(x) * np.cos(y) - 2.0 * s * s, np.exp(x) * np.sin(y))

        return impl
    return lambda z: np.expm1(z)


if _EIG_RETURNS_COMPLEX:

    @njit(cache=True)
    def _eig_complex(A):
        return np.linalg.eig(A)

else:  # pragma: no cover - numpy < 2.5: numba's real eig refuses complex spectra

    @njit(cache=True)
    def _eig_complex(A):
        return np.linalg.eig(A.astype(np.complex128))


@njit(cache=True)
def _decompose(Qm, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c):
    """Eigendecomposition of one generator, or the reason not to use it.

    Fills the real or the complex output arrays and returns the mode.
    """
    K = Qm.shape[0]
    qnorm = 0.0
    for i in range(K):
        s = 0.0
        for j in range(K):
            if not np.isfinite(Qm[i, j]):
                return _MODE_INVALID
            s += abs(Qm[j, i])
        qnorm = max(qnorm, s)
    # the kernels run inside a C callback, where exceptions cannot propagate
    try:
        lam, U = _eig_complex(np.ascontiguousarray(Qm))
        Ui = np.linalg.inv(U)
    except Exception:  # no convergence, or singular U (defective generator)
        return _MODE_FALLBACK
    nu = 0.0
    nui = 0.0
    for j in range(K):
        su = 0.0
        sui = 0.0
        for i in range(K):
            su += abs(U[i, j])
            sui += abs(Ui[i, j])
        nu = max(nu, su)
        nui = max(nui, sui)
    kappa = nu * nui
    if not kappa <= KAPPA_MAX:
        return _MODE_FALLBACK
    resid = 0.0
    for j in range(K):
        s = 0.0
        for i in range(K):
            v = -Qm[i, j] + 0j
            for k in range(K):
                v += U[i, k] * lam[k] * Ui[k, j]
            s += abs(v)
        resid = max(resid, s)
    if not resid <= RESIDUAL_MAX * max(qnorm, 1e-300):
        return _MODE_FALLBACK
    real = True
    for k in range(K):
        if lam[k].imag != 0.0:
            real = False
    if real:
        for i in range(K):
            lam_r[i] = lam[i].real
            for j in range(K):
                U_r[i, j] = U[i, j].real
                Ui_r[i, j] = Ui[i, j].real
        return _MODE_REAL
    lam_c[:] = lam
    U_c[:, :] = U
    Ui_c[:, :] = Ui
    return _MODE_COMPLEX


# Below this |lam_i - lam_j| t, the divided difference uses expm1: the plain
# difference (e_i - e_j) / (lam_i - lam_j) loses about eps / (|lam_i - lam_j| t)
# relative accuracy, i.e. at most ~1e-14 above the threshold.
_DIVDIFF_EXPM1_BELOW = 0.01


@njit(cache=True)
def _divided_difference(li, lj, ei, ej, t, inv_d, abs_d):
    """``int_0^t exp(li s) exp(lj (t - s)) ds``, stable for close eigenvalues.

    ``ei = exp(li t)``, ``ej = exp(lj t)``, ``inv_d = 1 / (li - lj)`` (0 if
    equal), ``abs_d = |li - lj|``. Equals ``(ei - ej) / (li - lj)``, and
    ``t * ei`` when ``li == lj``; for close eigenvalues the difference would
    cancel, so ``ej * expm1((li - lj) t) / (li - lj)`` is used instead.
    """
    if abs_d * t >= _DIVDIFF_EXPM1_BELOW:
        return (ei - ej) * inv_d
    if abs_d == 0.0:
        return t * ei
    return ej * _expm1((li - lj) * t) * inv_d


@njit(cache=True)
def _eigen_gaps(lam, inv_d, abs_d):
    """``inv_d[i, j] = 1 / (lam_i - lam_j)`` (0 where equal) and ``abs_d = |lam_i - lam_j|``."""
    K = lam.shape[0]
    for i in range(K):
        for j in range(K):
            d = lam[i] - lam[j]
            abs_d[i, j] = abs(d)
            inv_d[i, j] = 1.0 / d if d != 0.0 else d


# The hot helpers below take whole arrays and indices (generator m, piece p)
# rather than slices: in numba every slice is a new array view whose reference
# count is updated atomically, which cost more than the arithmetic here.


@njit(cache=True)
def _piece_exponentials(lam, m, t, out, p):
    """Set ``out[p, k] = exp(lam[m, k] t)``.

    Real exponentials for real eigenvalues, one complex exponential per
    conjugate pair (LAPACK stores pairs adjacently).
    """
    K = lam.shape[1]
    k = 0
    while k < K:
        z = lam[m, k] * t
        if z.imag == 0.0:
            out[p, k] = np.exp(z.real)
            k += 1
        else:
            ez = np.exp(z)
            out[p, k] = ez
            if k + 1 < K and lam[m, k + 1] == np.conj(lam[m, k]):
                out[p, k + 1] = np.conj(ez)
                k += 2
            else:
                k += 1


@njit(cache=True)
def _entry(U, Ui, m, e, p, a, b):
    """``(U_m diag(e_p) U_m^-1)[a, b]`` (real part)."""
    v = U[m, a, 0] * e[p, 0] * Ui[m, 0, b]
    for k in range(1, e.shape[1]):
        v += U[m, a, k] * e[p, k] * Ui[m, k, b]
    return v.real


@njit(cache=True)
def _dense(U, Ui, m, e, p, out, s):
    """``out[s] = real(U_m diag(e_p) U_m^-1)``."""
    K = e.shape[1]
    for i in range(K):
        for j in range(K):
            out[s, i, j] = _entry(U, Ui, m, e, p, i, j)


@njit(cache=True)
def _accumulate_spectral_adjoint(
    U, Ui, lam, inv_d, abs_d, m, e, p, t, G, s, W, X, nz_a, nz_b, nz_g
):  # fmt: skip
    """``W_m += V(t) o (U_m^T G_s U_m^-T)`` for piece p (Kalbfleisch-Lawless).

    ``G_s`` (real, K x K, slot ``s`` of piece ``p``) is the adjoint of the
    piece's P, for pieces in rows that cross period cuts; it holds one
    entry per observed (from, to), so ``X = U^T G U^-T`` is summed over its
    non-zeros, or formed densely when there are many. ``V`` is symmetric.
    ``X``, ``nz_a``, ``nz_b``, ``nz_g`` are scratch arrays.
    """
    K = e.shape[1]
    n = 0
    for a in range(K):
        for b in range(K):
            if G[s, a, b] != 0.0:
                nz_a[n] = a
                nz_b[n] = b
                nz_g[n] = G[s, a, b]
                n += 1
    if n <= K:
        for i in range(K):
            for j in range(K):
                X[i, j] = 0.0
        for k in range(n):
            a = nz_a[k]
            b = nz_b[k]
            g = nz_g[k]
            for i in range(K):
                ua = g * U[m, a, i]
                for j in range(K):
                    X[i, j] += ua * Ui[m, j, b]
    else:
        for i in range(K):  # X = U^T (G Ui^T)
            for j in range(K):
                x = X[0, 0] * 0.0
                for a in range(K):
                    ga = X[0, 0] * 0.0
                    for b in range(K):
                        ga += G[s, a, b] * Ui[m, j, b]
                    x += U[m, a, i] * ga
                X[i, j] = x
    for i in range(K):
        W[m, i, i] += t * e[p, i] * X[i, i]
        for j in range(i + 1, K):
            v = _divided_difference(
                lam[m, i], lam[m, j], e[p, i], e[p, j], t, inv_d[m, i, j], abs_d[m, i, j]
            )
            W[m, i, j] += v * X[i, j]
            W[m, j, i] += v * X[j, i]


@njit(cache=True)
def _back_transform(U, Ui, W, out):
    """``out += real(U^-T W U^T)``: the gradient with respect to Q."""
    K = W.shape[0]
    Z = np.zeros_like(W)  # Z = W U^T
    for i in range(K):
        for j in range(K):
            z = W[i, 0] * U[j, 0]
            for k in range(1, K):
                z += W[i, k] * U[j, k]
            Z[i, j] = z
    for p in range(K):
        for q in range(K):
            v = Ui[0, p] * Z[0, q]
            for i in range(1, K):
                v += Ui[i, p] * Z[i, q]
            out[p, q] += v.real


# A pair of eigenvalues is *separated* for a generator when
# |lam_i - lam_j| t_min >= this, t_min being the generator's shortest positive
# piece. The row-wise accumulation below then forms the divided difference as
# a difference of two sums divided by (lam_i - lam_j), losing about
# eps / (|lam_i - lam_j| t) relative accuracy (~2e-14 here), the same bound the
# pairwise divided difference accepts before it switches to expm1. Closer pairs
# (repeated eigenvalues: several absorbing states, equal rates) are
# accumulated row by row with the stable divided difference.
_SEPARATED_MIN = _DIVDIFF_EXPM1_BELOW


@njit(cache=True)
def _accumulate_row_spectral(
    U, Ui, lam, inv_d, abs_d, m, e, p, t, a, b, g, B, C, D, Sc, n_close, close_i, close_j
):  # fmt: skip
    """Add one single-piece row's share of ``V(t) o (U^T G U^-T)`` in O(K).

    The row observes ``a -> b`` over a piece of length ``t`` with adjoint weight
    ``g = count / P[a, b]``. Its share of the spectral adjoint is
    ``S_ij = g U[a, i] Ui[j, b] V_ij(t)`` with the divided difference
    ``V_ij(t) = (e_i - e_j) / (lam_i - lam_j)`` (``t e_i`` on the diagonal).
    For separated pairs the two terms of the difference factor into sums over
    rows of vectors of length K, ``B[b, i] += g U[a, i] e_i`` and
    ``C[a, j] += g e_j Ui[j, b]``, contracted once per evaluation by
    :func:`_spectral_from_sums`; the diagonal goes to ``D``, the close pairs to
    ``Sc`` directly. So a row costs O(K), not the O(K^2) of forming
    ``U^T G U^-T`` per piece.
    """
    K = e.shape[1]
    for k in range(K):
        ek = e[p, k]
        ua = g * U[m, a, k] * ek
        uib = Ui[m, k, b]
        B[m, b, k] += ua
        C[m, a, k] += g * ek * uib
        D[m, k] += t * ua * uib
    for n in range(n_close[m]):
        i = close_i[m, n]
        j = close_j[m, n]
        v = _divided_difference(
            lam[m, i], lam[m, j], e[p, i], e[p, j], t, inv_d[m, i, j], abs_d[m, i, j]
        )
        Sc[m, i, j] += g * U[m, a, i] * Ui[m, j, b] * v


@njit(cache=True)
def _spectral_from_sums(U, Ui, inv_d, m, B, C, D, Sc, close, W):
    """``W_m += S`` from the row sums of :func:`_accumulate_row_spectral` (O(K^3)).

    ``S_ij = (sum_b B[b, i] Ui[j, b] - sum_a U[a, i] C[a, j]) / (lam_i - lam_j)``
    for separated pairs, ``Sc_ij`` for close ones, ``D_i`` on the diagonal.
    """
    K = D.shape[1]
    for i in range(K):
        W[m, i, i] += D[m, i]
        for j in range(K):
            if j == i:
                continue
            if close[m, i, j]:
                W[m, i, j] += Sc[m, i, j]
                continue
            t1 = B[m, 0, i] * Ui[m, j, 0]
            t2 = U[m, 0, i] * C[m, 0, j]
            for k in range(1, K):
                t1 += B[m, k, i] * Ui[m, j, k]
                t2 += U[m, k, i] * C[m, k, j]
            W[m, i, j] += (t1 - t2) * inv_d[m, i, j]


@njit(cache=True)
def _forward(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to):
    """Decompose generators, evaluate P for every piece and the row probabilities.

    Returns the per-generator decompositions and modes, exp(lam t) per piece,
    dense P for the pieces that need it (multi-piece rows, fallback
    generators) at ``P[slot[p]]`` (``slot[p] = -1`` for the others), and
    ``value[r] = P_r[from_r, to_r]``.
    """
    M = Q.shape[0]
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    n_rows = row_from.shape[0]

    used_gen = np.zeros(M, dtype=np.bool_)
    for p in range(n_pieces):
        used_gen[piece_q[p]] = True
    mode = np.full(M, _MODE_REAL, dtype=np.int64)
    lam_r = np.zeros((M, K))
    U_r = np.zeros((M, K, K))
    Ui_r = np.zeros((M, K, K))
    lam_c = np.zeros((M, K), dtype=np.complex128)
    U_c = np.zeros((M, K, K), dtype=np.complex128)
    Ui_c = np.zeros((M, K, K), dtype=np.complex128)
    valid = True
    for m in range(M):
        if used_gen[m]:
            mode[m] = _decompose(Q[m], lam_r[m], U_r[m], Ui_r[m], lam_c[m], U_c[m], Ui_c[m])
            if mode[m] == _MODE_INVALID:
                valid = False

    # each piece's row of exponentials is written for its generator's mode
    # before it is read, so no zeroing (it costs as much as the work here)
    expo_r = np.empty((n_pieces, K))
    expo_c = np.empty((n_pieces, K), dtype=np.complex128)
    # dense P only where needed: a full (n_pieces, K, K) array would be zeroed
    # at every evaluation
    slot = np.full(n_pieces, -1, dtype=np.int64)
    n_slots = 0
    for r in range(n_rows):
        if row_ptr[r + 1] - row_ptr[r] > 1:
            for i in range(row_ptr[r], row_ptr[r + 1]):
                if slot[row_piece[i]] < 0:
                    slot[row_piece[i]] = n_slots
                    n_slots += 1
    for p in range(n_pieces):
        if slot[p] < 0 and mode[piece_q[p]] == _MODE_FALLBACK:
            slot[p] = n_slots
            n_slots += 1
    P = np.zeros((n_slots, K, K))
    value = np.zeros(n_rows)
    if not valid:
        return mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, False, slot

    for p in range(n_pieces):
        m = piece_q[p]
        t = piece_t[p]
        if mode[m] == _MODE_REAL:
            _piece_exponentials(lam_r, m, t, expo_r, p)
            if slot[p] >= 0:
                _dense(U_r, Ui_r, m, expo_r, p, P, slot[p])
        elif mode[m] == _MODE_COMPLEX:
            _piece_exponentials(lam_c, m, t, expo_c, p)
            if slot[p] >= 0:
                _dense(U_c, Ui_c, m, expo_c, p, P, slot[p])
        else:
            try:
                P[slot[p]] = _expm_numba(Q[m] * t)
            except Exception:  # singular Pade denominator: cannot happen for finite Q
                return (
                    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, False,
                    slot,
                )  # fmt: skip

    left = np.zeros(K)
    tmp = np.zeros(K)
    for r in range(n_rows):
        a = row_from[r]
        b = row_to[r]
        start = row_ptr[r]
        stop = row_ptr[r + 1]
        if stop - start == 1:
            p = row_piece[start]
            m = piece_q[p]
            if mode[m] == _MODE_REAL:
                value[r] = _entry(U_r, Ui_r, m, expo_r, p, a, b)
            elif mode[m] == _MODE_COMPLEX:
                value[r] = _entry(U_c, Ui_c, m, expo_c, p, a, b)
            else:
                value[r] = P[slot[p], a, b]
        else:
            left[:] = P[slot[row_piece[start]], a, :]
            for i in range(start + 1, stop - 1):
                Pi = P[slot[row_piece[i]]]
                for j in range(K):
                    s = 0.0
                    for k in range(K):
                        s += left[k] * Pi[k, j]
                    tmp[j] = s
                left[:] = tmp
            v = 0.0
            Pl = P[slot[row_piece[stop - 1]]]
            for k in range(K):
                v += left[k] * Pl[k, b]
            value[r] = v
    return mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, True, slot


@njit(cache=True)
def _row_loglik_kernel(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to):
    fwd = _forward(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to)
    value = fwd[10]
    out = np.empty(value.shape[0])
    for r in range(value.shape[0]):
        v = value[r]
        out[r] = np.log(v) if (fwd[11] and v > 0.0 and np.isfinite(v)) else -np.inf
    return out


@njit(cache=True)
def _loglik_kernel(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count, with_grad):
    """Log-likelihood and (if ``with_grad``) its gradient with respect to every Q entry.

    The gradient of a generator with a usable eigendecomposition is
    ``U^-T S U^T`` with the spectral adjoint ``S = sum_rows V(t) o (U^T G U^-T)``
    (Kalbfleisch-Lawless). Rows of one piece -- nearly all rows -- add to ``S``
    in O(K) through :func:`_accumulate_row_spectral`; rows crossing period cuts
    form their piece adjoints ``G`` and add ``V o (U^T G U^-T)`` per piece;
    fallback generators take the Frechet derivative of the Pade expm.
    """
    M = Q.shape[0]
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    n_rows = row_from.shape[0]
    dQ = np.zeros((M, K, K))
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, value, valid, slot = _forward(
        Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to
    )
    if not valid:
        return -np.inf, dQ
    total = 0.0
    for r in range(n_rows):
        c = row_count[r]
        if c == 0.0:
            continue
        v = value[r]
        if not (v > 0.0 and np.isfinite(v)):
            return -np.inf, dQ
        total += c * np.log(v)
    if not np.isfinite(total):
        return total, dQ
    if not with_grad:
        return total, dQ

    # eigenvalue gaps, and the pairs too close for the row-wise sums
    invd_r = np.zeros((M, K, K))
    invd_c = np.zeros((M, K, K), dtype=np.complex128)
    absd = np.zeros((M, K, K))
    t_min = np.full(M, np.inf)
    for p in range(n_pieces):
        if piece_t[p] > 0.0 and piece_t[p] < t_min[piece_q[p]]:
            t_min[piece_q[p]] = piece_t[p]
    close = np.zeros((M, K, K), dtype=np.bool_)
    n_close = np.zeros(M, dtype=np.int64)
    close_i = np.zeros((M, K * K), dtype=np.int64)
    close_j = np.zeros((M, K * K), dtype=np.int64)
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _eigen_gaps(lam_r[m], invd_r[m], absd[m])
        elif mode[m] == _MODE_COMPLEX:
            _eigen_gaps(lam_c[m], invd_c[m], absd[m])
        else:
            continue
        for i in range(K):
            for j in range(K):
                if i != j and not absd[m, i, j] * t_min[m] >= _SEPARATED_MIN:
                    close[m, i, j] = True
                    close_i[m, n_close[m]] = i
                    close_j[m, n_close[m]] = j
                    n_close[m] += 1

    # row sums of the O(K) accumulation (real and complex spectra)
    B_r = np.zeros((M, K, K))
    C_r = np.zeros((M, K, K))
    D_r = np.zeros((M, K))
    Sc_r = np.zeros((M, K, K))
    B_c = np.zeros((M, K, K), dtype=np.complex128)
    C_c = np.zeros((M, K, K), dtype=np.complex128)
    D_c = np.zeros((M, K), dtype=np.complex128)
    Sc_c = np.zeros((M, K, K), dtype=np.complex128)
    # adjoints G[slot[p]] = dL/dP_p of the pieces with a dense P (multi-piece
    # rows, fallback generators)
    n_slots = P.shape[0]
    G = np.zeros((n_slots, K, K))
    has_g = np.zeros(n_slots, dtype=np.bool_)
    max_len = 1
    for r in range(n_rows):
        max_len = max(max_len, row_ptr[r + 1] - row_ptr[r])
    lefts = np.zeros((max_len, K))
    rights = np.zeros((max_len, K))
    for r in range(n_rows):
        c = row_count[r]
        if c == 0.0:
            continue
        g = c / value[r]
        a = row_from[r]
        b = row_to[r]
        start = row_ptr[r]
        n = row_ptr[r + 1] - start
        if n == 1:
            p = row_piece[start]
            m = piece_q[p]
            t = piece_t[p]
            if mode[m] == _MODE_REAL:
                if t > 0.0:  # P(0) = I does not depend on Q
                    _accumulate_row_spectral(
                        U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, a, b, g,
                        B_r, C_r, D_r, Sc_r, n_close, close_i, close_j,
                    )  # fmt: skip
            elif mode[m] == _MODE_COMPLEX:
                if t > 0.0:
                    _accumulate_row_spectral(
                        U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, a, b, g,
                        B_c, C_c, D_c, Sc_c, n_close, close_i, close_j,
                    )  # fmt: skip
            else:
                G[slot[p], a, b] += g
                has_g[slot[p]] = True
            continue
        # lefts[k] = row a of P_0 ... P_(k-1); rights[k] = column b of P_(k+1) ... P_(n-1)
        lefts[0, :] = 0.0
        lefts[0, a] = 1.0
        for k in range(1, n):
            Pk = P[slot[row_piece[start + k - 1]]]
            for j in range(K):
                acc = 0.0
                for i in range(K):
                    acc += lefts[k - 1, i] * Pk[i, j]
                lefts[k, j] = acc
        rights[n - 1, :] = 0.0
        rights[n - 1, b] = 1.0
        for k in range(n - 2, -1, -1):
            Pk = P[slot[row_piece[start + k + 1]]]
            for i in range(K):
                acc = 0.0
                for j in range(K):
                    acc += Pk[i, j] * rights[k + 1, j]
                rights[k, i] = acc
        for k in range(n):
            sp = slot[row_piece[start + k]]
            has_g[sp] = True
            for i in range(K):
                li = g * lefts[k, i]
                for j in range(K):
                    G[sp, i, j] += li * rights[k, j]

    W_r = np.zeros((M, K, K))
    W_c = np.zeros((M, K, K), dtype=np.complex128)
    X_r = np.zeros((K, K))
    X_c = np.zeros((K, K), dtype=np.complex128)
    nz_a = np.zeros(K * K, dtype=np.int64)
    nz_b = np.zeros(K * K, dtype=np.int64)
    nz_g = np.zeros(K * K)
    for p in range(n_pieces):
        sp = slot[p]
        if sp < 0 or not has_g[sp]:
            continue
        m = piece_q[p]
        t = piece_t[p]
        if mode[m] == _MODE_REAL:
            _accumulate_spectral_adjoint(
                U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, G, sp, W_r, X_r, nz_a, nz_b, nz_g
            )
        elif mode[m] == _MODE_COMPLEX:
            _accumulate_spectral_adjoint(
                U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, G, sp, W_c, X_c, nz_a, nz_b, nz_g
            )
        else:
            # <G, L(Q t, E t)> = <t L(Q^T t, G), E>
            try:
                _, Lf = _expm_frechet_numba(np.ascontiguousarray(Q[m].T) * t, G[sp])
            except Exception:
                return -np.inf, np.zeros((M, K, K))
            dQ[m] += t * Lf
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _spectral_from_sums(U_r, Ui_r, invd_r, m, B_r, C_r, D_r, Sc_r, close, W_r)
            _back_transform(U_r[m], Ui_r[m], W_r[m], dQ[m])
        elif mode[m] == _MODE_COMPLEX:
            _spectral_from_sums(U_c, Ui_c, invd_c, m, B_c, C_c, D_c, Sc_c, close, W_c)
            _back_transform(U_c[m], Ui_c[m], W_c[m], dQ[m])
    return total, dQ


# --------------------------------------------------------------------------
# One native entry point
# --------------------------------------------------------------------------
# numba links the LLVM code of every jitted callee into its caller and
# re-optimises the whole module: a jitted caller of the (large) kernel would pay
# 10-40 s of LLVM work on each fresh compile -- every new PyTensor graph, every
# nutpie model. So the kernel is compiled once as a C callback (cached on disk)
# and called through an external symbol, as numba calls its own LAPACK
# wrappers; callers then compile only a few lines.

_TASK_LOGLIK = 0
_TASK_LOGLIK_GRAD = 1
_TASK_ROW_LOGLIK = 2

_C_SIGNATURE = types.int64(
    types.int64,  # task
    types.CPointer(types.float64),  # Q, (M, K, K) in C order
    types.int64,  # M
    types.int64,  # K
    types.CPointer(types.int64),  # piece_q
    types.CPointer(types.float64),  # piece_t
    types.int64,  # n_pieces
    types.CPointer(types.int64),  # row_ptr, n_rows + 1
    types.CPointer(types.int64),  # row_piece
    types.int64,  # nnz
    types.CPointer(types.int64),  # row_from
    types.CPointer(types.int64),  # row_to
    types.CPointer(types.float64),  # row_count
    types.int64,  # n_rows
    types.CPointer(types.float64),  # out_value: 1 (loglik) or n_rows (row log-probabilities)
    types.CPointer(types.float64),  # out_grad: M * K * K
)


def _make_native_entry(kernel_hash):
    """Build the C entry point, tied to the kernels' source hash.

    numba invalidates a cached function only when its own file changes; the
    hash (a closure variable, part of numba's cache index key) makes a change
    in :mod:`markov_migration.core.expm` recompile the entry point too.
    """

    def _native_entry(
        task, q_ptr, M, K, pq_ptr, pt_ptr, n_pieces, rp_ptr, rpi_ptr, nnz, rf_ptr, rt_ptr,
        rc_ptr, n_rows, out_value_ptr, out_grad_ptr,
    ):  # fmt: skip
        """C entry point; returns 0 or a layout error code (``_LAYOUT_ERRORS``).

        Tasks: 0 log-likelihood, 1 log-likelihood and gradient (``out_grad``),
        2 row log-probabilities (``out_value`` of length n_rows).
        """
        if task < 0:  # never: references the hash so that it keys the cache
            return -len(kernel_hash)
        Q = carray(q_ptr, (M, K, K))
        piece_q = carray(pq_ptr, (n_pieces,))
        piece_t = carray(pt_ptr, (n_pieces,))
        row_ptr = carray(rp_ptr, (n_rows + 1,))
        row_piece = carray(rpi_ptr, (nnz,))
        row_from = carray(rf_ptr, (n_rows,))
        row_to = carray(rt_ptr, (n_rows,))
        row_count = carray(rc_ptr, (n_rows,))
        status = _layout_status(
            M, K, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
        )
        if status != 0:
            return status
        if task == _TASK_ROW_LOGLIK:
            out = carray(out_value_ptr, (n_rows,))
            out[:] = _row_loglik_kernel(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to)
            return 0
        total, dQ = _loglik_kernel(
            Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count,
            task == _TASK_LOGLIK_GRAD,
        )  # fmt: skip
        carray(out_value_ptr, (1,))[0] = total
        if task == _TASK_LOGLIK_GRAD:
            carray(out_grad_ptr, (M, K, K))[:, :, :] = dQ
        return 0

    return _native_entry


def _kernel_source_hash() -> str:
    h = hashlib.sha256()
    for path in (Path(__file__), Path(_expm_module_file)):
        h.update(path.read_bytes())
    return h.hexdigest()


#: Source hash of the numba kernels (this module and core.expm); keys the
#: compiled entry point and the PyTensor numba cache.
KERNEL_HASH = _kernel_source_hash()
# The symbol name depends only on the C signature: cached callers resolve it
# when they are loaded, so they always call the current kernel.
_NATIVE_SYMBOL = (
    "markov_migration_panel_kernel_" + hashlib.sha256(str(_C_SIGNATURE).encode()).hexdigest()[:12]
)
_native_call = types.ExternalFunction(_NATIVE_SYMBOL, _C_SIGNATURE)
_native_entry_cfunc = []


def ensure_native_kernel() -> None:
    """Compile (or load from numba's cache) the C kernel and register its symbol.

    Must run before any jitted code that calls the kernel is compiled or loaded
    from a cache (LLVM resolves the symbol at link time); every public entry
    point of this module and the PyTensor Op call it.
    """
    if not _native_entry_cfunc:
        entry = cfunc(_C_SIGNATURE, cache=True)(_make_native_entry(KERNEL_HASH))
        llvm.add_symbol(_NATIVE_SYMBOL, entry.address)
        _native_entry_cfunc.append(entry)  # keep the compiled code alive


@njit(cache=True)
def _call_native(task, Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    """Run the C kernel on arrays (any layout); returns (out_value, out_grad)."""
    Qc = np.ascontiguousarray(Q)
    pq = np.ascontiguousarray(piece_q)
    pt = np.ascontiguousarray(piece_t)
    rp = np.ascontiguousarray(row_ptr)
    rpi = np.ascontiguousarray(row_piece)
    rf = np.ascontiguousarray(row_from)
    rt = np.ascontiguousarray(row_to)
    rc = np.ascontiguousarray(row_count)
    M, K = Qc.shape[0], Qc.shape[1]
    n_rows = rf.shape[0]
    # the C kernel takes these lengths on trust
    if pt.shape[0] != pq.shape[0]:
        _raise_layout_error(1)
    if rt.shape[0] != n_rows or rc.shape[0] != n_rows:
        _raise_layout_error(2)
    if rp.shape[0] != n_rows + 1:
        _raise_layout_error(3)
    out_value = np.zeros(n_rows if task == _TASK_ROW_LOGLIK else 1)
    out_grad = np.zeros((M, K, K))
    status = _native_call(
        task, Qc.ctypes, M, K, pq.ctypes, pt.ctypes, pq.shape[0], rp.ctypes, rpi.ctypes,
        rpi.shape[0], rf.ctypes, rt.ctypes, rc.ctypes, n_rows, out_value.ctypes, out_grad.ctypes,
    )  # fmt: skip
    # use the inputs after the call, so that their buffers outlive it
    if Qc.size + pq.size + pt.size + rp.size + rpi.size + rf.size + rt.size + rc.size < 0:
        status = -1
    if status != 0:
        _raise_layout_error(status)
    return out_value, out_grad


@njit(cache=True)
def _loglik_and_grad_native(Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count):
    value, grad = _call_native(
        _TASK_LOGLIK_GRAD, Q, piece_q, piece_t, row_ptr, row_piece, row_from, row_to, row_count
    )
    return value[0], grad


def native_loglik_and_grad():
    """Return the jitted ``(Q, *panel) -> (loglik, dQ)`` function, for numba callers.

    Same arguments and results as :func:`loglik_and_grad` (arrays of the
    documented dtypes, any memory layout, read-only allowed); raises
    ValueError on an inconsistent layout. Registers the native kernel first.
    Used by the PyTensor Op's numba implementation.
    """
    ensure_native_kernel()
    return _loglik_and_grad_native


@njit(cache=True)
def _row_loglik_draws_native(Q_draws, piece_q, piece_t, row_ptr, row_piece, row_from, row_to):
    S = Q_draws.shape[0]
    out = np.empty((S, row_from.shape[0]))
    row_count = np.zeros(row_from.shape[0])
    for s in range(S):
        out[s] = _call_native(
            _TASK_ROW_LOGLIK, Q_draws[s], piece_q, piece_t, row_ptr, row_piece, row_from, row_to,
            row_count,
        )[0]  # fmt: skip
    return out


# --------------------------------------------------------------------------
# Public fast functions
# --------------------------------------------------------------------------


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
