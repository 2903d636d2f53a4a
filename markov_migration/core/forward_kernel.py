"""Numba kernels of the hidden-Markov (forward algorithm) log-likelihood.

Layer 1 (numpy, scipy, numba only). The array layout, the public wrappers and
the scipy reference live in :mod:`markov_migration.core.forward`; this module
holds only the compiled arithmetic.

The likelihood of one history with observations ``1..n`` is

``L = pi^T diag(e_1) T_1 diag(e_2) T_2 ... T_(n-1) diag(e_n) 1``

with ``T_k = P(t_k)`` for a panel observation, ``T_k = P(t_k) Q_off`` for an
exact entry time (``Q_off`` is ``Q`` with its diagonal set to 0: entry into a
state at exactly ``t_k`` from another state; msm's ``deathexact``, obstype 3)
and ``T_k = D(t_k) (I + Q_off)`` with ``D(t) = diag(exp(q_rr t))`` for an exact
transition time (msm's obstype 2: the previous state was kept throughout the
interval, then left for the recorded state at exactly ``t_k``, or, if the
record repeats the previous state, kept until ``t_k``; msm's ``Pmat`` with
``exacttimes``). The last needs no eigendecomposition: its gradient is
``d T[i, j] / d q_ii = t T[i, j]`` and ``d T[i, j] / d q_ij = D_ii`` (i != j).

Histories come as a tree of shared prefixes. The forward pass gives every node
its normalised forward vector ``ahat`` and scale ``c`` (log L of a history is
the sum of the log scales along its path); the gradient is reverse-mode
differentiation of that recursion, children before parents: the adjoint of
the ``T`` of an edge is the outer product of the parent's forward vector and
the adjoint of the child's vector before emission (the ``alpha_k beta_(k+1)^T``
weight of the forward-backward algorithm). Those outer products are summed per distinct
interval into the adjoint ``G_p`` of ``P(t_p)``, which the eigenbasis
machinery of the pure-panel kernel (:mod:`markov_migration.core.likelihood`:
Kalbfleisch-Lawless divided differences, or the Pade Frechet derivative for
defective or ill-conditioned ``Q``) turns into ``d log L / d Q`` at O(K^3) per
distinct interval.
"""

import numpy as np
from numba import njit

# The eigenbasis helpers of the pure-panel kernel are reused as they are; they
# are private there (see the report of issue 13: a public home for them would
# suit the split of likelihood.py).
from markov_migration.core.expm import expm as _expm_numba
from markov_migration.core.expm import expm_frechet as _expm_frechet_numba
from markov_migration.core.spectral import (  # the eigen-basis machinery of the panel kernel
    _MODE_COMPLEX,
    _MODE_REAL,
    _add_divided,
    _back_transform,
    _decompose_used,
    _dense,
    _eigen_gaps,
    _piece_exponentials,
)

__all__ = [
    "OBS_EXACT",
    "OBS_PANEL",
    "OBS_RESTART",
    "OBS_TRANSITION",
    "forward_kernel",
    "node_loglik_kernel",
]

#: msm's obstype codes: a panel observation of the state at a time, an exact
#: transition time (obstype 2: the previous state was kept until then), and an
#: exact entry time into the recorded state (msm ``deathexact``, obstype 3).
OBS_PANEL = 1
OBS_TRANSITION = 2
OBS_EXACT = 3
#: Transition matrices per piece, one block of ``n_pieces`` per kind:
#: ``T[p]`` = P(t_p), ``T[n + p]`` = P(t_p) Q_off, ``T[2 n + p]`` = D(t_p) (I + Q_off).
_N_SLOTS = 3
#: Type of a *restart* root: the start of the tail of a history split at a
#: renewal point (an observation with one possible true state ``s``, stored in
#: the root's ``node_piece``). Its forward vector is the unit vector ``e_s``
#: with scale 1: no ``pi`` and no emission factor (both are in the head).
OBS_RESTART = 0


@njit(cache=True)
def _slot(node_type, piece, n_pieces):
    """Index into ``T`` of the transition matrix of a node's interval."""
    if node_type == OBS_EXACT:
        return n_pieces + piece
    if node_type == OBS_TRANSITION:
        return 2 * n_pieces + piece
    return piece


@njit(cache=True)
def _pieces(Q, piece_q, piece_t, need_exact, need_transition):
    """Transition matrices of every piece, and the eigendecompositions behind them.

    ``T[p] = P(t_p)`` and, where an exact entry needs it,
    ``T[n_pieces + p] = P(t_p) Q_off``; where an exact transition time needs it,
    ``T[2 n_pieces + p] = D(t_p) (I + Q_off)`` (one array, so the hot loops index it
    instead of taking views, whose reference counting costs more than the
    arithmetic). Decompositions per generator, real or complex, with the mode
    chosen by :func:`markov_migration.core.likelihood._decompose`.
    """
    K = Q.shape[1]
    n_pieces = piece_q.shape[0]
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, valid = _decompose_used(Q, piece_q)
    T = np.zeros((_N_SLOTS * n_pieces, K, K))
    expo_r = np.zeros((n_pieces, K))
    expo_c = np.zeros((n_pieces, K), dtype=np.complex128)
    if not valid:
        return mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, T, False
    for p in range(n_pieces):
        m = piece_q[p]
        t = piece_t[p]
        if mode[m] == _MODE_REAL:
            _piece_exponentials(lam_r, m, t, expo_r, p)
            _dense(U_r, Ui_r, m, expo_r, p, T, p)
        elif mode[m] == _MODE_COMPLEX:
            _piece_exponentials(lam_c, m, t, expo_c, p)
            _dense(U_c, Ui_c, m, expo_c, p, T, p)
        else:
            T[p] = _expm_numba(np.ascontiguousarray(Q[m]) * t)
        if need_exact[p]:
            for i in range(K):
                for j in range(K):
                    s = 0.0
                    for k in range(K):
                        if k != j:
                            s += T[p, i, k] * Q[m, k, j]
                    T[n_pieces + p, i, j] = s
        if need_transition[p]:  # D(t) (I + Q_off): no eigendecomposition
            for i in range(K):
                d = np.exp(Q[m, i, i] * t)
                for j in range(K):
                    T[2 * n_pieces + p, i, j] = d if i == j else d * Q[m, i, j]
    return mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, T, True


@njit(cache=True)
def _spectral_adjoint(U, Ui, lam, inv_d, abs_d, m, e, p, t, G, W, X, Y):
    """``W_m += V(t) o (U_m^T G_p U_m^-T)`` for a dense adjoint ``G_p`` (Kalbfleisch-Lawless).

    The pure-panel kernel's version sums over the few non-zeros of its ``G``
    and is O(K^4) when ``G`` is dense, as it is here (every entry of ``P(t)``
    is used by some history); two products make it O(K^3). ``X``, ``Y``:
    scratch (K, K) of the decomposition's dtype.
    """
    K = e.shape[1]
    zero = X[0, 0] * 0.0
    for a in range(K):  # Y = G Ui^T
        for j in range(K):
            acc = zero
            for b in range(K):
                acc += G[p, a, b] * Ui[m, j, b]
            Y[a, j] = acc
    for i in range(K):  # X = U^T Y
        for j in range(K):
            acc = zero
            for a in range(K):
                acc += U[m, a, i] * Y[a, j]
            X[i, j] = acc
    _add_divided(W, m, p, t, e, lam, inv_d, abs_d, X)


@njit(cache=True)
def _tree(node_parent, node_piece, node_type, node_count, n_pieces):
    """Weight through each node, which nodes have children, which pieces need each matrix.

    ``need_exact``: pieces with an exact entry (``P Q_off``); ``need_transition``:
    pieces with an exact transition time (``D (I + Q_off)``).
    """
    n_nodes = node_parent.shape[0]
    need_exact = np.zeros(n_pieces, dtype=np.bool_)
    need_transition = np.zeros(n_pieces, dtype=np.bool_)
    has_child = np.zeros(n_nodes, dtype=np.bool_)
    W = node_count.copy()
    for n in range(n_nodes - 1, -1, -1):
        par = node_parent[n]
        if par >= 0:
            has_child[par] = True
            W[par] += W[n]
            if node_type[n] == OBS_EXACT:
                need_exact[node_piece[n]] = True
            elif node_type[n] == OBS_TRANSITION:
                need_transition[node_piece[n]] = True
    return W, has_child, need_exact, need_transition


@njit(cache=True)
def _forward_nodes(T, pi, B, node_parent, node_piece, node_type, node_code, W, has_child):
    """Normalised forward vector ``ahat`` and scale ``c`` of every node with weight.

    Internal nodes in full (O(K^2)); a restart root is ``e_s`` with scale 1;
    a leaf only needs its scale,
    ``c = ahat_parent . Y[s, code]`` with ``Y[s, code] = T_s B[code]`` formed once
    per (interval, code). Returns ``ok = False`` if some scale is not positive
    and finite (that node's ``ahat`` is then 0, so its descendants get 0 too).
    """
    n_nodes = node_parent.shape[0]
    K = B.shape[1]
    n_codes = B.shape[0]
    n_slots = T.shape[0]
    n_pieces = n_slots // _N_SLOTS
    ahat = np.empty((n_nodes, K))
    pre = np.empty((n_nodes, K))  # ahat_parent T (pi at a root), before emission
    cval = np.zeros(n_nodes)
    Y = np.empty((n_slots, n_codes, K))
    ydone = np.zeros((n_slots, n_codes), dtype=np.bool_)
    ok = True
    for n in range(n_nodes):
        if W[n] == 0.0:
            continue
        par = node_parent[n]
        code = node_code[n]
        if par < 0 and node_type[n] == OBS_RESTART:  # e_s, state in node_piece
            for j in range(K):
                pre[n, j] = 0.0
                ahat[n, j] = 0.0
            pre[n, node_piece[n]] = 1.0
            ahat[n, node_piece[n]] = 1.0
            cval[n] = 1.0
            continue
        s = _slot(node_type[n], node_piece[n], n_pieces)
        c = 0.0
        if par >= 0 and not has_child[n]:
            if not ydone[s, code]:
                for i in range(K):
                    y = 0.0
                    for j in range(K):
                        y += T[s, i, j] * B[code, j]
                    Y[s, code, i] = y
                ydone[s, code] = True
            for i in range(K):
                c += ahat[par, i] * Y[s, code, i]
        else:
            for j in range(K):
                if par < 0:
                    v = pi[j]
                else:
                    v = 0.0
                    for i in range(K):
                        v += ahat[par, i] * T[s, i, j]
                pre[n, j] = v
                a = v * B[code, j]
                ahat[n, j] = a
                c += a
            good = c > 0.0 and np.isfinite(c)
            for j in range(K):
                ahat[n, j] = ahat[n, j] / c if good else 0.0
        if not (c > 0.0 and np.isfinite(c)):
            ok = False
        cval[n] = c
    return ahat, pre, cval, Y, ydone, ok


@njit(cache=True)
def forward_kernel(
    Q, pi, B, piece_q, piece_t, node_parent, node_piece, node_type, node_code, node_count,
    condition_first, with_grad,
):  # fmt: skip
    """Log-likelihood of a tree of histories and (if ``with_grad``) its gradient.

    Arguments are validated, contiguous arrays in the layout of
    :mod:`markov_migration.core.forward` (parents before children);
    ``condition_first`` (bool) drops the first observation's factor
    ``sum(pi * e_1)``. Restart roots (``node_type`` :data:`OBS_RESTART`)
    contribute no factor and no gradient.

    Each node ``n`` holds the normalised forward vector ``ahat_n`` and its
    scale ``c_n``; the log-likelihood is ``sum_n W_n log c_n`` with ``W_n``
    the weight of the histories through ``n``. The gradient is reverse-mode
    differentiation of that recursion, children before parents. A leaf needs
    only its scale, ``c = ahat_parent . (T B[code])``: ``T B[code]`` is formed
    once per (interval, code), so a leaf costs O(K), not O(K^2), and its
    adjoints are summed per (interval, code) before the O(K^2) products.

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
    n_nodes = node_parent.shape[0]
    n_codes = B.shape[0]
    dQ = np.zeros((M, K, K))
    dB = np.zeros((n_codes, K))
    dpi = np.zeros(K)
    W, has_child, need_exact, need_transition = _tree(
        node_parent, node_piece, node_type, node_count, n_pieces
    )
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, expo_r, expo_c, T, valid = _pieces(
        Q, piece_q, piece_t, need_exact, need_transition
    )
    if not valid:
        return -np.inf, dQ, dB, dpi

    ahat, pre, cval, Y, ydone, ok = _forward_nodes(
        T, pi, B, node_parent, node_piece, node_type, node_code, W, has_child
    )
    if not ok:
        return -np.inf, dQ, dB, dpi
    total = 0.0
    prod = 1.0  # product of the scales of weight-1 nodes not yet in total
    for n in range(n_nodes):
        first = node_parent[n] < 0  # no factor: conditioned on, or a restart (in the head)
        if W[n] == 0.0 or (first and (condition_first or node_type[n] == OBS_RESTART)):
            continue
        c = cval[n]
        if W[n] == 1.0:  # most histories: fold into one log per ~100 nodes
            prod *= c
            if not (1e-250 < prod < 1e250):
                total += np.log(prod)
                prod = 1.0
        else:
            total += W[n] * np.log(c)
    total += np.log(prod)
    if not np.isfinite(total) or not with_grad:
        return total, dQ, dB, dpi

    # reverse pass: abar[n] = d logL / d ahat_n, from the children
    abar = np.zeros((n_nodes, K))
    Z = np.zeros((_N_SLOTS * n_pieces, n_codes, K))  # leaves: sum of (W / c) ahat_parent
    G = np.zeros((_N_SLOTS * n_pieces, K, K))  # d logL / d T_s
    prebar = np.empty(K)
    for n in range(n_nodes - 1, -1, -1):
        if W[n] == 0.0:
            continue
        par = node_parent[n]
        code = node_code[n]
        c = cval[n]
        s = _slot(node_type[n], node_piece[n], n_pieces)
        if par >= 0 and not has_child[n]:
            g = W[n] / c
            for i in range(K):
                Z[s, code, i] += g * ahat[par, i]
                abar[par, i] += g * Y[s, code, i]
            continue
        if par < 0 and node_type[n] == OBS_RESTART:  # e_s: a constant
            continue
        # adjoint of the unnormalised a_n = pre_n * B[code]
        wterm = W[n] if (par >= 0 or not condition_first) else 0.0
        dot = 0.0
        for j in range(K):
            dot += abar[n, j] * ahat[n, j]
        for j in range(K):
            abar_a = (abar[n, j] - dot + wterm) / c
            dB[code, j] += abar_a * pre[n, j]
            prebar[j] = abar_a * B[code, j]
        if par < 0:
            for j in range(K):
                dpi[j] += prebar[j]
            continue
        for i in range(K):
            ai = ahat[par, i]
            acc = 0.0
            for j in range(K):
                G[s, i, j] += ai * prebar[j]
                acc += T[s, i, j] * prebar[j]
            abar[par, i] += acc
    for s in range(_N_SLOTS * n_pieces):
        for code in range(n_codes):
            if not ydone[s, code]:
                continue
            for i in range(K):
                z = Z[s, code, i]
                for j in range(K):
                    G[s, i, j] += z * B[code, j]
            for j in range(K):
                acc = 0.0
                for i in range(K):
                    acc += Z[s, code, i] * T[s, i, j]
                dB[code, j] += acc

    # exact entries: T_(n_pieces + p) = P Q_off, so dP += GD Q_off^T and dQ_off += P^T GD
    for p in range(n_pieces):
        if not need_exact[p]:
            continue
        m = piece_q[p]
        e = n_pieces + p
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

    # exact transition times: T = D (I + Q_off) with D_ii = exp(q_ii t), so
    # dq_ii += t sum_j G[i, j] T[i, j] and dq_ij += G[i, j] D_ii (i != j)
    for p in range(n_pieces):
        if not need_transition[p]:
            continue
        m = piece_q[p]
        t = piece_t[p]
        e = 2 * n_pieces + p
        for i in range(K):
            acc = 0.0
            for j in range(K):
                acc += G[e, i, j] * T[e, i, j]
                if j != i:
                    dQ[m, i, j] += G[e, i, j] * T[e, i, i]
            dQ[m, i, i] += t * acc

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
    Y_r = np.zeros((K, K))
    Y_c = np.zeros((K, K), dtype=np.complex128)
    for p in range(n_pieces):
        t = piece_t[p]
        if t == 0.0:  # P(0) = I does not depend on Q
            continue
        m = piece_q[p]
        if mode[m] == _MODE_REAL:
            _spectral_adjoint(U_r, Ui_r, lam_r, invd_r, absd, m, expo_r, p, t, G, W_r, X_r, Y_r)
        elif mode[m] == _MODE_COMPLEX:
            _spectral_adjoint(U_c, Ui_c, lam_c, invd_c, absd, m, expo_c, p, t, G, W_c, X_c, Y_c)
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


@njit(cache=True)
def node_loglik_kernel(
    Q, pi, B, piece_q, piece_t, node_parent, node_piece, node_type, node_code, condition_first
):  # fmt: skip
    """Log-likelihood of the history that ends at each node (-inf if impossible).

    The sum of the log scales along the node's path (without the first one
    if ``condition_first``, and never a restart root's): the pointwise
    log-likelihood of each distinct history (or segment of a split tree),
    e.g. for PSIS-LOO.
    """
    n_nodes = node_parent.shape[0]
    n_pieces = piece_q.shape[0]
    out = np.full(n_nodes, -np.inf)
    W, has_child, need_exact, need_transition = _tree(
        node_parent, node_piece, node_type, np.ones(n_nodes), n_pieces
    )
    pieces = _pieces(Q, piece_q, piece_t, need_exact, need_transition)
    T = pieces[9]
    if not pieces[10]:
        return out
    _, _, cval, _, _, _ = _forward_nodes(
        T, pi, B, node_parent, node_piece, node_type, node_code, W, has_child
    )
    for n in range(n_nodes):
        c = cval[n]
        par = node_parent[n]
        term = np.log(c) if c > 0.0 and np.isfinite(c) else -np.inf
        if par < 0:
            out[n] = 0.0 if (condition_first or node_type[n] == OBS_RESTART) else term
        else:
            out[n] = out[par] + term
    return out
