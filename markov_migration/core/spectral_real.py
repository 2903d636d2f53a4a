"""The real form of a spectrum: the hot row loops in real arithmetic for complex spectra.

Layer 1 (numpy, numba only). Building blocks of
:mod:`markov_migration.core.loglik_kernel` and
:mod:`markov_migration.core.forward_kernel` beside those of
:mod:`markov_migration.core.spectral` (docs/performance.md, lever 3).
"""

import numpy as np
from numba import njit

from markov_migration.core.spectral import _divided_difference

__all__: list[str] = []

# The real form of a spectrum. A real generator's complex eigenvalues come in
# conjugate pairs, adjacent in LAPACK's output, with conjugate eigenvectors; a
# pair's two terms of U diag(e) U^-1 are conjugate, so their sum is twice the real
# part of one. Storing, per pair (k, k + 1), the real and imaginary parts of the
# first at k and k + 1 (``kind`` 1 and 2; 0 for a real eigenvalue) lets the hot
# loops over pieces and rows run in real arithmetic for real and complex spectra
# alike: ``P[a, b] = sum_k Wt[a, b, k] et[k]`` with ``et`` the real form of
# exp(lam t) and ``Wt[a, b, k] = U[a, k] Ui[k, b]`` (for a pair, the real and
# imaginary coefficients of ``Re(w1 e + w2 conj(e))``, ``w1``, ``w2`` the two terms:
# in exact arithmetic ``2 Re w1`` and ``-2 Im w1``). For a real spectrum the real
# form is the spectrum itself.


@njit(cache=True)
def _real_form(lam, U, Ui, m, kind, Ut, Uit, Wt):
    """Fill generator m's real form (``kind``, ``Ut``, ``Uit``, ``Wt``; see above).

    Returns False when a complex eigenvalue has no conjugate next to it (then the
    generator keeps complex arithmetic); never with numpy >= 2.5's LAPACK ``geev``.
    """
    K = lam.shape[1]
    k = 0
    while k < K:
        if lam[m, k].imag == 0.0:
            kind[m, k] = 0
            for x in range(K):
                Ut[m, x, k] = U[m, x, k].real
                Uit[m, k, x] = Ui[m, k, x].real
            for a in range(K):
                for b in range(K):
                    Wt[m, a, b, k] = (U[m, a, k] * Ui[m, k, b]).real
            k += 1
        elif k + 1 < K and lam[m, k + 1] == np.conj(lam[m, k]):
            kind[m, k] = 1
            kind[m, k + 1] = 2
            for x in range(K):
                Ut[m, x, k] = U[m, x, k].real
                Ut[m, x, k + 1] = U[m, x, k].imag
                Uit[m, k, x] = Ui[m, k, x].real
                Uit[m, k + 1, x] = Ui[m, k, x].imag
            # Re(w1 e + w2 conj(e)) with both computed rows of U^-1 (not twice
            # Re(w1 e)): the same sum as the complex arithmetic, also where the
            # inverse's rows are conjugate only to rounding
            for a in range(K):
                for b in range(K):
                    w1 = U[m, a, k] * Ui[m, k, b]
                    w2 = U[m, a, k + 1] * Ui[m, k + 1, b]
                    Wt[m, a, b, k] = w1.real + w2.real
                    Wt[m, a, b, k + 1] = w2.imag - w1.imag
            k += 2
        else:
            return False
    return True


@njit(cache=True)
def _real_exponentials(kind, m, ec, p, er):
    """``er[p]``: the real form of the complex exponentials ``ec[p]`` of generator m."""
    for k in range(ec.shape[1]):
        if kind[m, k] == 0:
            er[p, k] = ec[p, k].real
        elif kind[m, k] == 1:
            er[p, k] = ec[p, k].real
            er[p, k + 1] = ec[p, k].imag


@njit(cache=True)
def _entry_real_form(Wt, m, e, p, a, b):
    """``P_p[a, b] = sum_k Wt[m, a, b, k] e[p, k]`` from the real forms."""
    v = Wt[m, a, b, 0] * e[p, 0]
    for k in range(1, e.shape[1]):
        v += Wt[m, a, b, k] * e[p, k]
    return v


@njit(cache=True)
def _accumulate_row_real_form(Ut, Uit, kind, m, e, p, t, a, b, g, B, C, D):
    """:func:`~markov_migration.core.spectral._accumulate_row_spectral`'s B, C, D sums in real form (real arithmetic).

    For a real eigenvalue k the same sums; for a conjugate pair (k, k + 1) the real
    and imaginary parts of the first eigenvalue's sums at k and k + 1 (the second's
    are their conjugates; :func:`_complex_sums` restores them). The close pairs
    are not added here (:func:`~markov_migration.core.spectral._accumulate_row_close`).
    """
    K = e.shape[1]
    for k in range(K):
        kd = kind[m, k]
        if kd == 0:
            ek = e[p, k]
            ua = g * Ut[m, a, k] * ek
            uib = Uit[m, k, b]
            B[m, b, k] += ua
            C[m, a, k] += g * ek * uib
            D[m, k] += t * ua * uib
        elif kd == 1:
            er = e[p, k]
            ei = e[p, k + 1]
            ur = Ut[m, a, k]
            ui = Ut[m, a, k + 1]
            vr = Uit[m, k, b]
            vi = Uit[m, k + 1, b]
            zr = g * (ur * er - ui * ei)
            zi = g * (ur * ei + ui * er)
            B[m, b, k] += zr
            B[m, b, k + 1] += zi
            C[m, a, k] += g * (er * vr - ei * vi)
            C[m, a, k + 1] += g * (er * vi + ei * vr)
            D[m, k] += t * (zr * vr - zi * vi)
            D[m, k + 1] += t * (zr * vi + zi * vr)


@njit(cache=True)
def _complex_sums(kind, m, B, C, D, B_c, C_c, D_c):
    """Add real-form sums ``B, C, D`` of generator m to the complex ones (conjugates too)."""
    K = D.shape[1]
    for k in range(K):
        if kind[m, k] == 0:
            D_c[m, k] += D[m, k]
            for x in range(K):
                B_c[m, x, k] += B[m, x, k]
                C_c[m, x, k] += C[m, x, k]
        elif kind[m, k] == 1:
            z = complex(D[m, k], D[m, k + 1])
            D_c[m, k] += z
            D_c[m, k + 1] += np.conj(z)
            for x in range(K):
                z = complex(B[m, x, k], B[m, x, k + 1])
                B_c[m, x, k] += z
                B_c[m, x, k + 1] += np.conj(z)
                z = complex(C[m, x, k], C[m, x, k + 1])
                C_c[m, x, k] += z
                C_c[m, x, k + 1] += np.conj(z)


@njit(cache=True)
def _accumulate_piece_real_form(Ut, UitT, kind, m, e, p, t, G, s, nzrow, B, C, D, H, R):
    """A dense piece adjoint's share of the B, C, D sums, in real form (forward-algorithm kernel).

    The matrix form of :func:`_accumulate_row_real_form` summed over every entry of
    ``G[s]`` (the adjoint of the piece's ``P(t)``): ``B[b, k] += e_k (U^T G)[k, b]``,
    ``C[a, k] += e_k (G U^-T)[a, k]``, ``D[k] += t e_k (U^T G U^-T)[k, k]``, with
    ``U``, ``U^-1`` and ``e`` in real form (a conjugate pair's real and imaginary
    parts at k and k + 1). O(K^2) per non-zero row of ``G[s]`` (``nzrow``), in
    real arithmetic for real and complex spectra. ``UitT[m, b, k] = Uit[m, k, b]``;
    ``H``, ``R``: scratch (K, K).
    """
    K = e.shape[1]
    for k in range(K):
        for b in range(K):
            H[k, b] = 0.0
    for a in range(K):
        if not nzrow[a]:
            continue
        for k in range(K):  # H = Ut^T G, row a of G at a time
            u = Ut[m, a, k]
            for b in range(K):
                H[k, b] += u * G[s, a, b]
        for k in range(K):  # R = G Uit^T
            R[a, k] = 0.0
        for b in range(K):
            g = G[s, a, b]
            if g != 0.0:
                for k in range(K):
                    R[a, k] += g * UitT[m, b, k]
    for k in range(K):
        kd = kind[m, k]
        if kd == 0:
            ek = e[p, k]
            d = 0.0
            for b in range(K):
                B[m, b, k] += ek * H[k, b]
            for a in range(K):
                if nzrow[a]:
                    C[m, a, k] += ek * R[a, k]
                    d += Ut[m, a, k] * R[a, k]
            D[m, k] += t * ek * d
        elif kd == 1:
            er = e[p, k]
            ei = e[p, k + 1]
            for b in range(K):
                hr = H[k, b]
                hi = H[k + 1, b]
                B[m, b, k] += er * hr - ei * hi
                B[m, b, k + 1] += er * hi + ei * hr
            sr = 0.0
            si = 0.0
            for a in range(K):
                if nzrow[a]:
                    rr = R[a, k]
                    ri = R[a, k + 1]
                    C[m, a, k] += er * rr - ei * ri
                    C[m, a, k + 1] += er * ri + ei * rr
                    ur = Ut[m, a, k]
                    ui = Ut[m, a, k + 1]
                    sr += ur * rr - ui * ri
                    si += ur * ri + ui * rr
            D[m, k] += t * (er * sr - ei * si)
            D[m, k + 1] += t * (er * si + ei * sr)


@njit(cache=True)
def _accumulate_piece_close(
    U, Ui, lam, inv_d, abs_d, m, e, p, t, G, s, nzrow, Sc, n_close, close_i, close_j
):  # fmt: skip
    """Add a dense piece adjoint's ``V_ij(t) (U^T G U^-T)_ij`` of the pairs close at every length to ``Sc``.

    The piece version of :func:`~markov_migration.core.spectral._accumulate_row_close`
    (stable divided differences), O(K^2) per close pair over the non-zero rows
    ``nzrow`` of ``G[s]``; ``U``, ``Ui``, ``lam``, ``e`` of the generator's own
    dtype (not the real form).
    """
    K = e.shape[1]
    for n in range(n_close[m]):
        i = close_i[m, n]
        j = close_j[m, n]
        x = U[m, 0, 0] * 0.0
        for a in range(K):
            if nzrow[a]:
                y = U[m, 0, 0] * 0.0
                for b in range(K):
                    y += G[s, a, b] * Ui[m, j, b]
                x += U[m, a, i] * y
        v = _divided_difference(
            lam[m, i], lam[m, j], e[p, i], e[p, j], t, inv_d[m, i, j], abs_d[m, i, j]
        )
        Sc[m, i, j] += v * x
