"""Adjoint of the forward-algorithm kernel: from ``d logL / d T`` to ``d logL / d Q``.

Layer 1 (numpy, numba only). :mod:`markov_migration.core.forward_kernel`'s
reverse pass gives the adjoint ``G[s]`` of every transition matrix it used
(``P(t_p)`` at slot ``p``, ``P(t_p) Q_off`` of exact entry times,
``D(t_p) (I + Q_off)`` of exact transition times). :func:`_exact_adjoints`
moves the exact-time ones to ``G[p]`` and ``dQ``; :func:`_q_adjoint` turns
``G[p] = d logL / d P(t_p)`` into ``d logL / d Q`` through each generator's
eigendecomposition (Kalbfleisch-Lawless, with the pure-panel kernel's row sums
of :mod:`markov_migration.core.spectral` and
:mod:`markov_migration.core.spectral_real`), or the Pade Frechet derivative
for defective or ill-conditioned generators.
"""

import numpy as np
from numba import njit

from markov_migration.core.expm import expm_frechet as _expm_frechet_numba
from markov_migration.core.spectral import (
    _MODE_COMPLEX,
    _MODE_REAL,
    _SEPARATED_MIN,
    _add_divided,
    _back_transform,
    _eigen_gaps,
    _spectral_from_sums,
)
from markov_migration.core.spectral_real import (
    _accumulate_piece_close,
    _accumulate_piece_real_form,
    _complex_sums,
)

__all__: list[str] = []


@njit(cache=True)
def _exact_adjoints(Q, T, G, piece_q, piece_t, slot_exact, slot_transition, dQ):
    """Move the adjoints of the exact-time matrices to ``G[p]`` (of ``P``) and ``dQ``.

    Exact entries: ``T_e = P Q_off``, so ``dP += G_e Q_off^T`` and ``dQ_off += P^T G_e``.
    Exact transition times: ``T = D (I + Q_off)`` with ``D_ii = exp(q_ii t)``, so
    ``dq_ii += t sum_j G[i, j] T[i, j]`` and ``dq_ij += G[i, j] D_ii`` (i != j).
    """
    K = Q.shape[1]
    for p in range(piece_q.shape[0]):
        m = piece_q[p]
        e = slot_exact[p]
        if e >= 0:
            for i in range(K):
                for j in range(K):
                    acc = 0.0
                    for k in range(K):
                        if k != j:
                            acc += G[e, i, k] * Q[m, j, k]
                    G[p, i, j] += acc
            for i in range(K):
                for j in range(K):
                    if i == j:
                        continue
                    acc = 0.0
                    for k in range(K):
                        acc += T[p, k, i] * G[e, k, j]
                    dQ[m, i, j] += acc
        e = slot_transition[p]
        if e >= 0:
            t = piece_t[p]
            for i in range(K):
                acc = 0.0
                for j in range(K):
                    acc += G[e, i, j] * T[e, i, j]
                    if j != i:
                        dQ[m, i, j] += G[e, i, j] * T[e, i, i]
                dQ[m, i, i] += t * acc


@njit(cache=True)
def _spectral_adjoint(U, Ui, lam, inv_d, abs_d, m, e, p, t, G, W, X, Y):
    """``W_m += V(t) o (U_m^T G_p U_m^-T)`` for a dense adjoint ``G_p`` (Kalbfleisch-Lawless).

    Two products make it O(K^3), each with the sum outermost (K independent
    updates in the inner loop, not a chain of dependent additions; the same
    order of terms). ``X``, ``Y``: scratch (K, K) of the decomposition's dtype.
    """
    K = e.shape[1]
    zero = X[0, 0] * 0.0
    for a in range(K):  # Y = G Ui^T
        for j in range(K):
            Y[a, j] = zero
        for b in range(K):
            g = G[p, a, b]
            for j in range(K):
                Y[a, j] += g * Ui[m, j, b]
    for i in range(K):
        for j in range(K):
            X[i, j] = zero
    for a in range(K):  # X = U^T Y
        for i in range(K):
            u = U[m, a, i]
            for j in range(K):
                X[i, j] += u * Y[a, j]
    _add_divided(W, m, p, t, e, lam, inv_d, abs_d, X)


@njit(cache=True)
def _q_adjoint(Q, G, piece_q, piece_t, spectra, expo_r, expo_c, dQ):
    """``dQ += d logL / d Q`` through ``P(t_p)`` of every piece, from ``G[p] = d logL / d P(t_p)``.

    Kalbfleisch-Lawless: ``dQ = U^-T S U^T`` with ``S = sum_p V(t_p) o (U^T G_p U^-T)``.
    A real spectrum takes ``U^T G_p U^-T`` per piece and its divided differences
    (:func:`_spectral_adjoint`, real arithmetic already). A complex spectrum's
    pieces add, in real arithmetic (the real form of
    :mod:`markov_migration.core.spectral_real`), to the row sums B, C, D of the
    pure-panel kernel (:func:`~markov_migration.core.spectral._spectral_from_sums`)
    where every eigenvalue pair is separated at the piece's own length
    (``t * gap_min >= _SEPARATED_MIN``, lever 3 of docs/performance.md); the pairs
    close even at the generator's longest piece (repeated eigenvalues) are then
    added piece by piece with the stable divided difference, and pieces with a
    pair close at their length take :func:`_spectral_adjoint` in complex
    arithmetic. (On the bench's tree the real form costs 0.64x the complex
    products for a complex spectrum, but 1.25x the real products for a real one.)
    Fallback generators take the Pade Frechet derivative.
    """
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, kind, Ut, Uit, rf = spectra
    M = Q.shape[0]
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    invd_r = np.zeros((M, K, K))
    invd_c = np.zeros((M, K, K), dtype=np.complex128)
    absd = np.zeros((M, K, K))
    t_max = np.zeros(M)
    for p in range(n_pieces):
        t_max[piece_q[p]] = max(t_max[piece_q[p]], piece_t[p])
    close = np.zeros((M, K, K), dtype=np.bool_)
    gap_min = np.full(M, np.inf)
    n_close = np.zeros(M, dtype=np.int64)
    close_i = np.zeros((M, K * K), dtype=np.int64)
    close_j = np.zeros((M, K * K), dtype=np.int64)
    UitT = np.empty((M, K, K))
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _eigen_gaps(lam_r[m], invd_r[m], absd[m])
        elif mode[m] == _MODE_COMPLEX:
            _eigen_gaps(lam_c[m], invd_c[m], absd[m])
        else:
            continue
        for i in range(K):
            for j in range(K):
                UitT[m, i, j] = Uit[m, j, i]
                if i == j:
                    continue
                if not absd[m, i, j] * t_max[m] >= _SEPARATED_MIN:
                    close[m, i, j] = True
                    close_i[m, n_close[m]] = i
                    close_j[m, n_close[m]] = j
                    n_close[m] += 1
                elif absd[m, i, j] < gap_min[m]:
                    gap_min[m] = absd[m, i, j]
    B_r = np.zeros((M, K, K))
    C_r = np.zeros((M, K, K))
    D_r = np.zeros((M, K))
    Sc_r = np.zeros((M, K, K))
    B_c = np.zeros((M, K, K), dtype=np.complex128)
    C_c = np.zeros((M, K, K), dtype=np.complex128)
    D_c = np.zeros((M, K), dtype=np.complex128)
    Sc_c = np.zeros((M, K, K), dtype=np.complex128)
    W_r = np.zeros((M, K, K))
    W_c = np.zeros((M, K, K), dtype=np.complex128)
    X_r = np.zeros((K, K))
    X_c = np.zeros((K, K), dtype=np.complex128)
    Y_r = np.zeros((K, K))
    Y_c = np.zeros((K, K), dtype=np.complex128)
    H = np.empty((K, K))
    R = np.empty((K, K))
    nzrow = np.zeros(K, dtype=np.bool_)
    for p in range(n_pieces):
        t = piece_t[p]
        if t == 0.0:  # P(0) = I does not depend on Q
            continue
        m = piece_q[p]
        if mode[m] != _MODE_REAL and mode[m] != _MODE_COMPLEX:
            # <G, L(Q t, E t)> = <t L(Q^T t, G), E>
            _, Lf = _expm_frechet_numba(np.ascontiguousarray(Q[m].T) * t, G[p])
            dQ[m] += t * Lf
            continue
        if mode[m] == _MODE_COMPLEX and rf[m] and t * gap_min[m] >= _SEPARATED_MIN:
            rows = 0
            for a in range(K):
                nzrow[a] = False
                for b in range(K):
                    if G[p, a, b] != 0.0:
                        nzrow[a] = True
                if nzrow[a]:
                    rows += 1
            if rows == 0:
                continue
            _accumulate_piece_real_form(
                Ut, UitT, kind, m, expo_r, p, t, G, p, nzrow, B_r, C_r, D_r, H, R
            )
            if n_close[m] == 0:
                continue
            _accumulate_piece_close(
                U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, G, p, nzrow, Sc_c,
                n_close, close_i, close_j,
            )  # fmt: skip
        elif mode[m] == _MODE_REAL:
            _spectral_adjoint(U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, G, W_r, X_r, Y_r)
        else:
            _spectral_adjoint(U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, G, W_c, X_c, Y_c)
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _spectral_from_sums(U_r, Ui_r, invd_r, m, B_r, C_r, D_r, Sc_r, close, W_r)
            _back_transform(U_r[m], Ui_r[m], W_r[m], dQ[m])
        elif mode[m] == _MODE_COMPLEX:
            if rf[m]:  # the real-form sums, and their conjugates
                _complex_sums(kind, m, B_r, C_r, D_r, B_c, C_c, D_c)
            _spectral_from_sums(U_c, Ui_c, invd_c, m, B_c, C_c, D_c, Sc_c, close, W_c)
            _back_transform(U_c[m], Ui_c[m], W_c[m], dQ[m])
