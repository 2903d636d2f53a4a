"""Matrix exponential and its Frechet derivative, compiled with numba.

This is the guarded fallback of the panel log-likelihood for generators whose
eigendecomposition is unreliable (defective or ill-conditioned eigenvector
matrix). It is a port of the scaling-Pade-squaring algorithm of Al-Mohy and
Higham (2009) as implemented in :func:`scipy.linalg.expm_frechet`, written with
explicit loops because the matrices are small (a handful of states), where
loops beat BLAS calls and avoid numba's contiguity warnings.

References
----------
.. [1] Al-Mohy, A. H. and Higham, N. J. (2009). Computing the Frechet
   derivative of the matrix exponential, with an application to condition
   number estimation. SIAM J. Matrix Anal. Appl. 30(4), 1639-1657.
"""

import numpy as np
from numba import njit

__all__ = ["expm", "expm_frechet"]

# Largest 1-norm of the (scaled) matrix for which the Pade approximant of degree
# m has backward error <= 2**-53 (Al-Mohy & Higham 2009, table 6.1).
_THETA_3 = 1.08e-2
_THETA_5 = 2.00e-1
_THETA_7 = 7.83e-1
_THETA_9 = 1.78e0
_THETA_13 = 4.74e0

_B3 = (120.0, 60.0, 12.0, 1.0)
_B5 = (30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0)
_B7 = (17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0)
_B9 = (
    17643225600.0,
    8821612800.0,
    2075673600.0,
    302702400.0,
    30270240.0,
    2162160.0,
    110880.0,
    3960.0,
    90.0,
    1.0,
)
_B13 = (
    64764752532480000.0,
    32382376266240000.0,
    7771770303897600.0,
    1187353796428800.0,
    129060195264000.0,
    10559470521600.0,
    670442572800.0,
    33522128640.0,
    1323241920.0,
    40840800.0,
    960960.0,
    16380.0,
    182.0,
    1.0,
)


@njit(cache=True)
def _mm(A, B):
    """Product of two small square matrices."""
    n = A.shape[0]
    C = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            a = A[i, k]
            if a != 0.0:
                for j in range(n):
                    C[i, j] += a * B[k, j]
    return C


@njit(cache=True)
def _norm1(A):
    """Matrix 1-norm (maximum absolute column sum)."""
    n = A.shape[0]
    best = 0.0
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += abs(A[i, j])
        if s > best:
            best = s
    return best


@njit(cache=True)
def _pade_coefficients(norm):
    """Pade degree coefficients b[0..m] and scaling power s for a 1-norm."""
    if norm <= _THETA_3:
        return np.array(_B3), 0
    if norm <= _THETA_5:
        return np.array(_B5), 0
    if norm <= _THETA_7:
        return np.array(_B7), 0
    if norm <= _THETA_9:
        return np.array(_B9), 0
    return np.array(_B13), max(0, int(np.ceil(np.log2(norm / _THETA_13))))


@njit(cache=True)
def _pade_uv(A, E, with_frechet):
    """Pade numerator/denominator pieces of exp(A) and of its Frechet derivative.

    With ``b`` the degree-m Pade coefficients and ``A`` scaled by ``2**-s``,
    ``U = A sum_k b[2k+1] A^(2k)``, ``V = sum_k b[2k] A^(2k)``, and ``Lu``,
    ``Lv`` their derivatives in direction ``E`` (zero when ``with_frechet`` is
    False). The even powers and their derivatives ``M_2k`` are built by the
    recursion ``A^(2k) = A^2 A^(2k-2)``, ``M_2k = A^2 M_(2k-2) + M_2 A^(2k-2)``.
    This evaluates the same rational approximant as scipy's ``expm_frechet``
    with a few more (cheap, small) matrix products, in one compiled code path.

    Returns
    -------
    U, V, Lu, Lv : ndarray, shape (n, n)
    s : int
        Number of squarings to undo the scaling.
    """
    n = A.shape[0]
    b, s = _pade_coefficients(_norm1(A))
    scale = 2.0**-s
    As = A * scale
    Es = E * scale
    A2 = _mm(As, As)
    M2 = _mm(As, Es) + _mm(Es, As) if with_frechet else np.zeros((n, n))
    Apow = np.eye(n)  # A^(2k)
    Mpow = np.zeros((n, n))  # derivative of A^(2k) in direction E
    W = np.zeros((n, n))  # sum_k b[2k+1] A^(2k)
    V = np.zeros((n, n))
    Lw = np.zeros((n, n))
    Lv = np.zeros((n, n))
    half = (b.shape[0] - 1) // 2
    for k in range(half + 1):
        if k > 0:
            if with_frechet:
                Mpow = _mm(A2, Mpow) + _mm(M2, Apow)
            Apow = _mm(A2, Apow)
        W += b[2 * k + 1] * Apow
        V += b[2 * k] * Apow
        if with_frechet:
            Lw += b[2 * k + 1] * Mpow
            Lv += b[2 * k] * Mpow
    U = _mm(As, W)
    Lu = _mm(As, Lw) + _mm(Es, W) if with_frechet else np.zeros((n, n))
    return U, V, Lu, Lv, s


@njit(cache=True)
def expm(A):
    """Matrix exponential by scaling, Pade approximation and squaring.

    Parameters
    ----------
    A : ndarray of float64, shape (n, n)
        Finite square matrix (for a generator, ``Q * t`` with ``t`` in the
        model's time unit).

    Returns
    -------
    ndarray of float64, shape (n, n)
        ``exp(A)``.
    """
    A = np.ascontiguousarray(A)
    U, V, _, _, s = _pade_uv(A, A, False)
    R = np.linalg.solve(V - U, U + V)
    for _ in range(s):
        R = _mm(R, R)
    return R


@njit(cache=True)
def expm_frechet(A, E):
    """Matrix exponential and its Frechet derivative in a direction.

    Parameters
    ----------
    A : ndarray of float64, shape (n, n)
        Finite square matrix.
    E : ndarray of float64, shape (n, n)
        Direction.

    Returns
    -------
    expA : ndarray of float64, shape (n, n)
        ``exp(A)``.
    L : ndarray of float64, shape (n, n)
        ``L(A, E) = d/dh exp(A + h E) at h = 0``.

    Notes
    -----
    The adjoint of ``E -> L(A, E)`` in the Frobenius inner product is
    ``G -> L(A.T, G)``; the log-likelihood gradient uses that identity.
    """
    A = np.ascontiguousarray(A)
    E = np.ascontiguousarray(E)
    U, V, Lu, Lv, s = _pade_uv(A, E, True)
    D = V - U
    R = np.linalg.solve(D, U + V)
    L = np.linalg.solve(D, Lu + Lv + _mm(Lu - Lv, R))
    for _ in range(s):
        L = _mm(R, L) + _mm(L, R)
        R = _mm(R, R)
    return R, L
