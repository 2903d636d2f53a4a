"""Numba kernels of the hidden-Markov (forward algorithm) log-likelihood.

Layer 1 (numpy, scipy, numba only). The array layout, the public wrappers and
the scipy reference live in :mod:`markov_migration.core.forward`; this module
holds only the compiled arithmetic.

The likelihood of one history with observations ``1..n`` is

``L = pi^T diag(e_1) T_1 diag(e_2) T_2 ... T_(n-1) diag(e_n) 1``

with ``T_k = P(t_k)`` for a panel observation and ``T_k = P(t_k) Q_off`` for an
exact entry time (``Q_off`` is ``Q`` with its diagonal set to 0: entry into a
state at exactly ``t_k`` from another state; msm's ``deathexact``). The forward
pass keeps the normalised ``alpha_k`` and the scale factors ``c_k``; the
backward pass the normalised ``beta_k``, so that
``d log L / d T_k = outer(alpha_k, e_(k+1) * beta_(k+1)) / c_(k+1)``. Those
outer products are summed per distinct interval into the adjoint ``G_p`` of
``P(t_p)``, which the eigenbasis machinery of the pure-panel kernel
(:mod:`markov_migration.core.likelihood`: Kalbfleisch-Lawless divided
differences, or the Pade Frechet derivative for defective or ill-conditioned
``Q``) turns into ``d log L / d Q``, at O(K^3) per distinct interval.
"""

import numpy as np
from numba import njit

# The eigenbasis helpers of the pure-panel kernel are reused as they are; they
# are private there (see the report of issue 13: a public home for them would
# suit the split of likelihood.py).
from markov_migration.core.expm import expm as _expm_numba
from markov_migration.core.expm import expm_frechet as _expm_frechet_numba
from markov_migration.core.likelihood import (
    _MODE_COMPLEX,
    _MODE_INVALID,
    _MODE_REAL,
    _accumulate_spectral_adjoint,
    _back_transform,
    _decompose,
    _dense,
    _eigen_gaps,
    _piece_exponentials,
)

__all__ = ["OBS_EXACT", "OBS_PANEL", "forward_kernel"]

#: msm's obstype codes: a panel observation of the state at a time, and an
#: exact entry time into the recorded state (msm ``deathexact``, obstype 3).
OBS_PANEL = 1
OBS_EXACT = 3


@njit(cache=True)
def _pieces(Q, piece_q, piece_t, need_exact):
    """Dense ``P(t_p)`` for every piece and ``P(t_p) Q_off`` where an exact entry needs it.

    Returns the eigendecompositions too (per generator, real or complex, with
    the mode chosen by :func:`markov_migration.core.likelihood._decompose`).
    """
    M = Q.shape[0]
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    used = np.zeros(M, dtype=np.bool_)
    for p in range(n_pieces):
        used[piece_q[p]] = True
    mode = np.full(M, _MODE_REAL, dtype=np.int64)
    lam_r = np.zeros((M, K))
    U_r = np.zeros((M, K, K))
    Ui_r = np.zeros((M, K, K))
    lam_c = np.zeros((M, K), dtype=np.complex128)
    U_c = np.zeros((M, K, K), dtype=np.complex128)
    Ui_c = np.zeros((M, K, K), dtype=np.complex128)
    P = np.zeros((n_pieces, K, K))
    PD = np.zeros((n_pieces, K, K))
    expo_r = np.zeros((n_pieces, K))
    expo_c = np.zeros((n_pieces, K), dtype=np.complex128)
    valid = True
    for m in range(M):
        if used[m]:
            mode[m] = _decompose(Q[m], lam_r[m], U_r[m], Ui_r[m], lam_c[m], U_c[m], Ui_c[m])
            if mode[m] == _MODE_INVALID:
                valid = False
    if not valid:
        return mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, PD, False
    for p in range(n_pieces):
        m = piece_q[p]
        t = piece_t[p]
        if mode[m] == _MODE_REAL:
            _piece_exponentials(lam_r, m, t, expo_r, p)
            _dense(U_r, Ui_r, m, expo_r, p, P, p)
        elif mode[m] == _MODE_COMPLEX:
            _piece_exponentials(lam_c, m, t, expo_c, p)
            _dense(U_c, Ui_c, m, expo_c, p, P, p)
        else:
            P[p] = _expm_numba(np.ascontiguousarray(Q[m]) * t)
        if need_exact[p]:
            for i in range(K):
                for j in range(K):
                    s = 0.0
                    for k in range(K):
                        if k != j:
                            s += P[p, i, k] * Q[m, k, j]
                    PD[p, i, j] = s
    return mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, PD, True


@njit(cache=True)
def forward_kernel(
    Q, pi, B, piece_q, piece_t, hist_ptr, obs_code, obs_piece, obs_type, hist_count,
    condition_first, with_grad,
):  # fmt: skip
    """Log-likelihood of all histories and (if ``with_grad``) its gradient.

    Arguments are validated, contiguous arrays in the layout of
    :mod:`markov_migration.core.forward`; ``condition_first`` (bool) drops
    the first observation's factor ``sum(pi * e_1)``.

    Returns
    -------
    loglik : float
        ``-inf`` if ``Q`` is not finite or a history has probability <= 0.
    dQ : (M, K, K), dB : (n_codes, K), dpi : (K,)
        Gradients with respect to every entry (zeros when ``loglik`` is -inf).
    """
    M = Q.shape[0]
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    n_hist = hist_ptr.shape[0] - 1
    dQ = np.zeros((M, K, K))
    dB = np.zeros(B.shape)
    dpi = np.zeros(K)
    need_exact = np.zeros(n_pieces, dtype=np.bool_)
    max_len = 1
    for h in range(n_hist):
        max_len = max(max_len, hist_ptr[h + 1] - hist_ptr[h])
        for o in range(hist_ptr[h] + 1, hist_ptr[h + 1]):
            if obs_type[o] == OBS_EXACT:
                need_exact[obs_piece[o]] = True
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, P, PD, valid = _pieces(
        Q, piece_q, piece_t, need_exact
    )
    if not valid:
        return -np.inf, dQ, dB, dpi

    G = np.zeros((n_pieces, K, K))  # d logL / d P_p
    GD = np.zeros((n_pieces, K, K))  # d logL / d (P_p Q_off)
    alpha = np.zeros((max_len, K))  # normalised forward vectors
    pre = np.zeros((max_len, K))  # alpha_(k-1) T_(k-1) (pi at k = 0), before emission
    c = np.zeros(max_len)
    beta = np.zeros(K)
    v = np.zeros(K)
    total = 0.0
    for h in range(n_hist):
        w = hist_count[h]
        if w == 0.0:
            continue
        start = hist_ptr[h]
        n = hist_ptr[h + 1] - start
        # forward pass
        for k in range(n):
            o = start + k
            code = obs_code[o]
            if k == 0:
                for j in range(K):
                    pre[0, j] = pi[j]
            else:
                p = obs_piece[o]
                T = PD[p] if obs_type[o] == OBS_EXACT else P[p]
                for j in range(K):
                    s = 0.0
                    for i in range(K):
                        s += alpha[k - 1, i] * T[i, j]
                    pre[k, j] = s
            ck = 0.0
            for j in range(K):
                a = pre[k, j] * B[code, j]
                alpha[k, j] = a
                ck += a
            if not (ck > 0.0 and np.isfinite(ck)):
                return -np.inf, np.zeros((M, K, K)), np.zeros(B.shape), np.zeros(K)
            c[k] = ck
            for j in range(K):
                alpha[k, j] /= ck
            if k > 0 or not condition_first:
                total += w * np.log(ck)
        if not with_grad:
            continue
        # backward pass: beta_(n-1) = 1; v = e_k * beta_k / c_k is the adjoint
        # of alpha_(k-1) T_(k-1) (per unit weight)
        for j in range(K):
            beta[j] = 1.0
        for k in range(n - 1, -1, -1):
            o = start + k
            code = obs_code[o]
            ck = c[k]
            for j in range(K):
                dB[code, j] += w * pre[k, j] * beta[j] / ck
                v[j] = B[code, j] * beta[j] / ck
            if k == 0:
                for j in range(K):
                    dpi[j] += w * v[j]
                if condition_first:  # log L - log(pi . e_1)
                    for j in range(K):
                        dpi[j] -= w * B[code, j] / ck
                        dB[code, j] -= w * pi[j] / ck
                break
            p = obs_piece[o]
            exact = obs_type[o] == OBS_EXACT
            Ga = GD[p] if exact else G[p]
            T = PD[p] if exact else P[p]
            for i in range(K):
                ai = w * alpha[k - 1, i]
                if ai != 0.0:
                    for j in range(K):
                        Ga[i, j] += ai * v[j]
            for i in range(K):
                s = 0.0
                for j in range(K):
                    s += T[i, j] * v[j]
                beta[i] = s
    if not np.isfinite(total):
        return total, np.zeros((M, K, K)), np.zeros(B.shape), np.zeros(K)
    if not with_grad:
        return total, dQ, dB, dpi

    # exact entries: T = P Q_off, so dP += GD Q_off^T and dQ_off += P^T GD
    for p in range(n_pieces):
        if not need_exact[p]:
            continue
        m = piece_q[p]
        for i in range(K):
            for j in range(K):
                s = 0.0
                for k in range(K):
                    if k != j:
                        s += GD[p, i, k] * Q[m, j, k]
                G[p, i, j] += s
        for i in range(K):
            for j in range(K):
                if i == j:
                    continue
                s = 0.0
                for k in range(K):
                    s += P[p, k, i] * GD[p, k, j]
                dQ[m, i, j] += s

    # adjoint of P(t) -> adjoint of Q, as in the pure-panel kernel
    invd_r = np.zeros((M, K, K))
    invd_c = np.zeros((M, K, K), dtype=np.complex128)
    absd = np.zeros((M, K, K))
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _eigen_gaps(lam_r[m], invd_r[m], absd[m])
        elif mode[m] == _MODE_COMPLEX:
            _eigen_gaps(lam_c[m], invd_c[m], absd[m])
    W_r = np.zeros((M, K, K))
    W_c = np.zeros((M, K, K), dtype=np.complex128)
    X_r = np.zeros((K, K))
    X_c = np.zeros((K, K), dtype=np.complex128)
    nz_a = np.zeros(K * K, dtype=np.int64)
    nz_b = np.zeros(K * K, dtype=np.int64)
    nz_g = np.zeros(K * K)
    for p in range(n_pieces):
        t = piece_t[p]
        if t == 0.0:  # P(0) = I does not depend on Q
            continue
        m = piece_q[p]
        if mode[m] == _MODE_REAL:
            _accumulate_spectral_adjoint(
                U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, G, p, W_r, X_r, nz_a, nz_b, nz_g
            )
        elif mode[m] == _MODE_COMPLEX:
            _accumulate_spectral_adjoint(
                U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, G, p, W_c, X_c, nz_a, nz_b, nz_g
            )
        else:
            # <G, L(Q t, E t)> = <t L(Q^T t, G), E>
            _, Lf = _expm_frechet_numba(np.ascontiguousarray(Q[m].T) * t, G[p])
            dQ[m] += t * Lf
    for m in range(M):
        if mode[m] == _MODE_REAL:
            _back_transform(U_r[m], Ui_r[m], W_r[m], dQ[m])
        elif mode[m] == _MODE_COMPLEX:
            _back_transform(U_c[m], Ui_c[m], W_c[m], dQ[m])
    return total, dQ, dB, dpi
