"""Numba kernels of the eigendecomposition path: P(t) and adjoints from one spectrum.

Layer 1 (numpy, numba only). One eigendecomposition ``Q = U diag(lam) U^-1``
per generator gives ``P(t) = U diag(exp(lam t)) U^-1`` for every piece, and the
gradient follows from the divided-difference formula of Kalbfleisch & Lawless
(1985). :func:`_decompose` decides per generator whether the spectrum is
trustworthy (real or complex arithmetic) or the Pade fallback of
:mod:`markov_migration.core.expm` must run. The kernels that use these
building blocks are in :mod:`markov_migration.core.loglik_kernel`.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

__all__ = ["KAPPA_MAX", "RESIDUAL_MAX"]

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
    for i in range(K):
        lam_c[i] = lam[i]
        for j in range(K):
            U_c[i, j] = U[i, j]
            Ui_c[i, j] = Ui[i, j]
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
    _add_divided(W, m, p, t, e, lam, inv_d, abs_d, X)


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


# A pair of eigenvalues is *separated* for a row of length t when
# |lam_i - lam_j| t >= this. The row-wise accumulation below then forms the
# divided difference as a difference of two sums divided by (lam_i - lam_j),
# losing about eps / (|lam_i - lam_j| t) relative accuracy (~2e-14 here), the
# same bound the pairwise divided difference accepts before it switches to
# expm1. Pairs close even at a generator's longest piece (repeated eigenvalues:
# several absorbing states, equal rates) are accumulated row by row with the
# stable divided difference; so are all pairs of a row shorter than the
# separation of the others (:func:`_accumulate_row_pairwise`).
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
    _accumulate_row_close(
        U, Ui, lam, inv_d, abs_d, m, e, p, t, a, b, g, Sc, n_close, close_i, close_j
    )


@njit(cache=True)
def _accumulate_row_close(
    U, Ui, lam, inv_d, abs_d, m, e, p, t, a, b, g, Sc, n_close, close_i, close_j
):  # fmt: skip
    """Add one row's ``S_ij`` of the pairs close at every length to ``Sc`` (stable)."""
    for n in range(n_close[m]):
        i = close_i[m, n]
        j = close_j[m, n]
        v = _divided_difference(
            lam[m, i], lam[m, j], e[p, i], e[p, j], t, inv_d[m, i, j], abs_d[m, i, j]
        )
        Sc[m, i, j] += g * U[m, a, i] * Ui[m, j, b] * v


@njit(cache=True)
def _accumulate_row_pairwise(U, Ui, lam, inv_d, abs_d, m, e, p, t, a, b, g, D, Sc):
    """Add one single-piece row's ``V(t) o (U^T G U^-T)`` pair by pair (O(K^2)).

    For a row too short for :func:`_accumulate_row_spectral`: some pair of
    eigenvalues is not separated at its length ``t``, so every off-diagonal
    ``S_ij = g U[a, i] Ui[j, b] V_ij(t)`` goes to ``Sc`` with the stable divided
    difference (``V`` is symmetric: one per unordered pair); the diagonal to ``D``.
    """
    K = e.shape[1]
    for i in range(K):
        ua = g * U[m, a, i]
        uib = Ui[m, i, b]
        D[m, i] += t * ua * e[p, i] * uib
        for j in range(i + 1, K):
            v = _divided_difference(
                lam[m, i], lam[m, j], e[p, i], e[p, j], t, inv_d[m, i, j], abs_d[m, i, j]
            )
            Sc[m, i, j] += ua * Ui[m, j, b] * v
            Sc[m, j, i] += g * U[m, a, j] * uib * v


@njit(cache=True)
def _spectral_from_sums(U, Ui, inv_d, m, B, C, D, Sc, close, W):
    """``W_m += S`` from the row sums of the two row accumulations (O(K^3)).

    ``S_ij = (sum_b B[b, i] Ui[j, b] - sum_a U[a, i] C[a, j]) / (lam_i - lam_j)
    + Sc_ij`` for pairs separated at some row's length, ``Sc_ij`` alone for the
    pairs ``close`` at every length, ``D_i`` on the diagonal.
    """
    K = D.shape[1]
    for i in range(K):
        W[m, i, i] += D[m, i]
        for j in range(K):
            if j == i:
                continue
            W[m, i, j] += Sc[m, i, j]
            if close[m, i, j]:
                continue
            t1 = B[m, 0, i] * Ui[m, j, 0]
            t2 = U[m, 0, i] * C[m, 0, j]
            for k in range(1, K):
                t1 += B[m, k, i] * Ui[m, j, k]
                t2 += U[m, k, i] * C[m, k, j]
            W[m, i, j] += (t1 - t2) * inv_d[m, i, j]


@njit(cache=True, inline="always")
def _add_divided(W, m, p, t, e, lam, inv_d, abs_d, X):
    """``W_m += V(t) o X``: the divided differences of ``exp(lam t)`` times ``X``.

    ``V(t)[i, i] = t exp(lam_i t)`` and ``V(t)[i, j] = (exp(lam_i t) - exp(lam_j t)) /
    (lam_i - lam_j)`` (stable near equal eigenvalues); shared by the panel and the
    forward-algorithm adjoints.
    """
    K = e.shape[1]
    for i in range(K):
        W[m, i, i] += t * e[p, i] * X[i, i]
        for j in range(i + 1, K):
            v = _divided_difference(
                lam[m, i], lam[m, j], e[p, i], e[p, j], t, inv_d[m, i, j], abs_d[m, i, j]
            )
            W[m, i, j] += v * X[i, j]
            W[m, j, i] += v * X[j, i]


@njit(cache=True)
def _decompose_used(Q, piece_q):
    """Eigendecompose every generator that some piece uses.

    Returns ``mode`` (per generator: real, complex, fallback or invalid), the real and
    complex decompositions ``lam, U, Ui`` (only the one of each generator's mode is
    filled) and whether every used generator is valid.
    """
    M = Q.shape[0]
    K = Q.shape[1]
    used = np.zeros(M, dtype=np.bool_)
    for p in range(piece_q.shape[0]):
        used[piece_q[p]] = True
    mode = np.full(M, _MODE_REAL, dtype=np.int64)
    lam_r = np.zeros((M, K))
    U_r = np.zeros((M, K, K))
    Ui_r = np.zeros((M, K, K))
    lam_c = np.zeros((M, K), dtype=np.complex128)
    U_c = np.zeros((M, K, K), dtype=np.complex128)
    Ui_c = np.zeros((M, K, K), dtype=np.complex128)
    valid = True
    for m in range(M):
        if used[m]:
            mode[m] = _decompose(Q[m], lam_r[m], U_r[m], Ui_r[m], lam_c[m], U_c[m], Ui_c[m])
            if mode[m] == _MODE_INVALID:
                valid = False
    return mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, valid
