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
interval into the adjoint ``G_p`` of ``P(t_p)``, which
:mod:`markov_migration.core.forward_adjoint` turns into ``d log L / d Q`` with
the eigenbasis machinery of the pure-panel kernel (Kalbfleisch-Lawless row
sums in real arithmetic, or the Pade Frechet derivative for defective or
ill-conditioned ``Q``) at O(K^2) per non-zero row of each ``G_p``.

Speed (docs/performance.md, "Latent-state fits"): the per-node loops keep the
sum over the shorter index outermost, so the inner loops are K independent
updates rather than one chain of dependent additions; leaves need only their
scale (O(K)); a node below a restart root reads one row of its ``T`` (its
parent's vector is a unit vector); the matrices of exact times are formed only
for the pieces that use them.
"""

import numpy as np
from numba import njit

# The eigen-basis helpers of the pure-panel kernel (core/spectral*.py) are used by
# the pieces (core/forward_tree.py) and the adjoint (core/forward_adjoint.py).
from markov_migration.core.forward_adjoint import _exact_adjoints, _q_adjoint
from markov_migration.core.forward_tree import (  # the tree, the pieces, the codes
    OBS_EXACT,
    OBS_PANEL,
    OBS_RESTART,
    OBS_TRANSITION,
    _pieces,
    _tree,
)

__all__ = [
    "OBS_EXACT",
    "OBS_PANEL",
    "OBS_RESTART",
    "OBS_TRANSITION",
    "forward_kernel",
    "node_loglik_kernel",
]


@njit(cache=True)
def _forward_nodes(T, pi, B, node_parent, node_type, node_piece, node_code, tree):
    """Normalised forward vector ``ahat`` and scale ``c`` of every node with weight.

    Roots and nodes with children (``kept``) in full, O(K^2) (O(K) below a
    restart root: row ``state`` of ``T_s``), in the rows ``inner[n]`` of ``ahat``
    and ``pre``; a restart root is ``e_s`` with scale 1. A leaf only needs its
    scale: ``T_s[state] . B[code]`` below a restart root, else
    ``ahat_parent . Y[s, code]`` with ``Y[s, code] = T_s B[code]`` formed once per
    (slot, code); both over the non-zeros of ``B[code]``. Returns ``ok = False``
    if some scale is not positive and finite (that node's ``ahat`` is then 0, so
    its descendants get 0 too), and ``zdone[s, code]``: some leaf uses (s, code).
    """
    W, node_slot, inner, _, _, _, from_state, kept, leaves_r, leaves_o = tree
    n_nodes = node_parent.shape[0]
    K = B.shape[1]
    n_codes = B.shape[0]
    n_slots = T.shape[0]
    n_kept = kept.shape[0]
    ahat = np.empty((n_kept, K))
    pre = np.empty((n_kept, K))  # ahat_parent T (pi at a root), before emission
    cval = np.zeros(n_nodes)
    Y = np.empty((n_slots, n_codes, K))
    zdone = np.zeros((n_slots, n_codes), dtype=np.bool_)
    ydone = np.zeros((n_slots, n_codes), dtype=np.bool_)  # Y[s, code] formed
    bnz = np.empty((n_codes, K), dtype=np.int64)  # the non-zeros of each row of B
    n_bnz = np.zeros(n_codes, dtype=np.int64)
    for code in range(n_codes):
        for j in range(K):
            if B[code, j] != 0.0:
                bnz[code, n_bnz[code]] = j
                n_bnz[code] += 1
    ok = True
    for r in range(n_kept):
        n = kept[r]
        par = node_parent[n]
        code = node_code[n]
        if par < 0 and node_type[n] == OBS_RESTART:  # e_s, state in node_piece
            for j in range(K):
                pre[r, j] = 0.0
                ahat[r, j] = 0.0
            pre[r, node_piece[n]] = 1.0
            ahat[r, node_piece[n]] = 1.0
            cval[n] = 1.0
            continue
        s = node_slot[n]
        st = from_state[n]
        if par < 0:
            for j in range(K):
                pre[r, j] = pi[j]
        elif st >= 0:
            for j in range(K):
                pre[r, j] = T[s, st, j]
        else:
            rp = inner[par]
            for j in range(K):
                pre[r, j] = 0.0
            for i in range(K):
                a = ahat[rp, i]
                for j in range(K):
                    pre[r, j] += a * T[s, i, j]
        c = 0.0
        for j in range(K):
            a = pre[r, j] * B[code, j]
            ahat[r, j] = a
            c += a
        good = c > 0.0 and np.isfinite(c)
        for j in range(K):
            ahat[r, j] = ahat[r, j] / c if good else 0.0
        ok = ok and good
        cval[n] = c
    for k in range(leaves_r.shape[0]):
        n = leaves_r[k]
        code = node_code[n]
        s = node_slot[n]
        st = from_state[n]
        c = 0.0
        for q in range(n_bnz[code]):
            j = bnz[code, q]
            c += T[s, st, j] * B[code, j]
        zdone[s, code] = True
        ok = ok and c > 0.0 and np.isfinite(c)
        cval[n] = c
    for k in range(leaves_o.shape[0]):
        n = leaves_o[k]
        code = node_code[n]
        s = node_slot[n]
        if not ydone[s, code]:
            for i in range(K):
                Y[s, code, i] = 0.0
            for q in range(n_bnz[code]):
                j = bnz[code, q]
                b = B[code, j]
                for i in range(K):
                    Y[s, code, i] += T[s, i, j] * b
            ydone[s, code] = True
            zdone[s, code] = True
        rp = inner[node_parent[n]]
        c = 0.0
        for i in range(K):
            c += ahat[rp, i] * Y[s, code, i]
        ok = ok and c > 0.0 and np.isfinite(c)
        cval[n] = c
    return ahat, pre, cval, Y, zdone, ok


@njit(cache=True)
def _loglik_sum(node_parent, node_type, W, cval, condition_first):
    """``sum_n W_n log c_n`` over the nodes with a factor (see :func:`forward_kernel`)."""
    total = 0.0
    prod = 1.0  # product of the scales of weight-1 nodes not yet in total
    for n in range(node_parent.shape[0]):
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
    return total + np.log(prod)


@njit(cache=True)
def _reverse_nodes(
    T, B, node_parent, node_type, node_code, tree, ahat, pre, cval, Y, zdone, condition_first
):
    """Reverse pass: ``G[s] = d logL / d T_s`` for every slot, ``d logL / d B`` and ``/ d pi``.

    Leaves first (they feed nothing but their parent's adjoint), then the kept
    nodes children before parents; ``abar[inner[n]] = d logL / d ahat_n`` comes
    from the children. A leaf adds ``(W / c) ahat_parent`` to ``Z[s, code]``
    (O(K); one entry below a restart root, whose vector is a constant); the
    O(K^2) products with ``B[code]`` (over its non-zeros) and ``T_s`` are made
    once per (slot, code). A kept node below a restart root adds to one row of ``G``.
    """
    W, node_slot, inner, _, _, _, from_state, kept, leaves_r, leaves_o = tree
    K = B.shape[1]
    n_codes = B.shape[0]
    n_slots = T.shape[0]
    dB = np.zeros((n_codes, K))
    dpi = np.zeros(K)
    abar = np.zeros((kept.shape[0], K))
    Z = np.zeros((n_slots, n_codes, K))  # leaves: sum of (W / c) ahat_parent
    G = np.zeros((n_slots, K, K))  # d logL / d T_s
    prebar = np.empty(K)
    acc = np.empty(K)
    for k in range(leaves_r.shape[0]):
        n = leaves_r[k]
        Z[node_slot[n], node_code[n], from_state[n]] += W[n] / cval[n]
    for k in range(leaves_o.shape[0]):
        n = leaves_o[k]
        s = node_slot[n]
        code = node_code[n]
        rp = inner[node_parent[n]]
        g = W[n] / cval[n]
        for i in range(K):
            Z[s, code, i] += g * ahat[rp, i]
            abar[rp, i] += g * Y[s, code, i]
    for r in range(kept.shape[0] - 1, -1, -1):
        n = kept[r]
        par = node_parent[n]
        if par < 0 and node_type[n] == OBS_RESTART:  # e_s: a constant
            continue
        code = node_code[n]
        c = cval[n]
        s = node_slot[n]
        # adjoint of the unnormalised a_n = pre_n * B[code]
        wterm = W[n] if (par >= 0 or not condition_first) else 0.0
        dot = 0.0
        for j in range(K):
            dot += abar[r, j] * ahat[r, j]
        for j in range(K):
            abar_a = (abar[r, j] - dot + wterm) / c
            dB[code, j] += abar_a * pre[r, j]
            prebar[j] = abar_a * B[code, j]
        if par < 0:
            for j in range(K):
                dpi[j] += prebar[j]
            continue
        st = from_state[n]
        if st >= 0:
            for j in range(K):
                G[s, st, j] += prebar[j]
            continue
        rp = inner[par]
        for i in range(K):
            acc[i] = 0.0
        for j in range(K):
            pj = prebar[j]
            for i in range(K):
                acc[i] += T[s, i, j] * pj
        for i in range(K):
            ai = ahat[rp, i]
            for j in range(K):
                G[s, i, j] += ai * prebar[j]
            abar[rp, i] += acc[i]
    for s in range(n_slots):
        for code in range(n_codes):
            if not zdone[s, code]:
                continue
            for j in range(K):
                b = B[code, j]
                if b != 0.0:
                    for i in range(K):
                        G[s, i, j] += Z[s, code, i] * b
            for j in range(K):
                acc[j] = 0.0
            for i in range(K):
                z = Z[s, code, i]
                if z != 0.0:  # below restart roots: one state
                    for j in range(K):
                        acc[j] += z * T[s, i, j]
            for j in range(K):
                dB[code, j] += acc[j]
    return G, dB, dpi


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
    n_codes = B.shape[0]
    dQ = np.zeros((M, K, K))
    tree = _tree(node_parent, node_piece, node_type, node_count, piece_q.shape[0])
    W, _, _, slot_exact, slot_transition, n_slots = tree[:6]
    spectra, expo_r, expo_c, T, valid = _pieces(
        Q, piece_q, piece_t, slot_exact, slot_transition, n_slots
    )
    if not valid:
        return -np.inf, dQ, np.zeros((n_codes, K)), np.zeros(K)
    ahat, pre, cval, Y, zdone, ok = _forward_nodes(
        T, pi, B, node_parent, node_type, node_piece, node_code, tree
    )
    if not ok:
        return -np.inf, dQ, np.zeros((n_codes, K)), np.zeros(K)
    total = _loglik_sum(node_parent, node_type, W, cval, condition_first)
    if not np.isfinite(total) or not with_grad:
        return total, dQ, np.zeros((n_codes, K)), np.zeros(K)
    G, dB, dpi = _reverse_nodes(
        T, B, node_parent, node_type, node_code, tree, ahat, pre, cval, Y, zdone, condition_first
    )
    _exact_adjoints(Q, T, G, piece_q, piece_t, slot_exact, slot_transition, dQ)
    _q_adjoint(Q, G, piece_q, piece_t, spectra, expo_r, expo_c, dQ)
    return total, dQ, dB, dpi


@njit(cache=True, nogil=True)  # per posterior draw, from threads (inference/latent_draws.py)
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
    out = np.full(n_nodes, -np.inf)
    tree = _tree(node_parent, node_piece, node_type, np.ones(n_nodes), piece_q.shape[0])
    _, _, _, slot_exact, slot_transition, n_slots = tree[:6]
    _, _, _, T, valid = _pieces(Q, piece_q, piece_t, slot_exact, slot_transition, n_slots)
    if not valid:
        return out
    cval = _forward_nodes(T, pi, B, node_parent, node_type, node_piece, node_code, tree)[2]
    for n in range(n_nodes):
        c = cval[n]
        par = node_parent[n]
        term = np.log(c) if c > 0.0 and np.isfinite(c) else -np.inf
        if par < 0:
            out[n] = 0.0 if (condition_first or node_type[n] == OBS_RESTART) else term
        else:
            out[n] = out[par] + term
    return out
