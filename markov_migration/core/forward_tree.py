"""The tree and the pieces of the forward-algorithm kernel (layer 1, numba).

Split from :mod:`markov_migration.core.forward_kernel`, whose docstring gives the
likelihood: msm's observation types and the restart type of a split tree
(:data:`OBS_PANEL`, ...), the weights of the histories through each node
(:func:`_tree`), and the decompositions and transition matrices ``T`` of the
distinct intervals (:func:`_pieces`).
"""

import numpy as np
from numba import njit

from markov_migration.core.expm import expm as _expm_numba
from markov_migration.core.spectral import (  # the eigen-basis machinery of the panel kernel
    _MODE_COMPLEX,
    _MODE_REAL,
    _decompose_used,
    _dense,
    _piece_exponentials,
)
from markov_migration.core.spectral_real import _real_exponentials, _real_form

__all__ = ["OBS_EXACT", "OBS_PANEL", "OBS_RESTART", "OBS_TRANSITION"]

#: msm's obstype codes: a panel observation of the state at a time, an exact
#: transition time (obstype 2: the previous state was kept until then), and an
#: exact entry time into the recorded state (msm ``deathexact``, obstype 3).
OBS_PANEL = 1
OBS_TRANSITION = 2
OBS_EXACT = 3
#: Type of a *restart* root: the start of the tail of a history split at a
#: renewal point (an observation with one possible true state ``s``, stored in
#: the root's ``node_piece``). Its forward vector is the unit vector ``e_s``
#: with scale 1: no ``pi`` and no emission factor (both are in the head).
OBS_RESTART = 0


@njit(cache=True)
def _tree(node_parent, node_piece, node_type, node_count, n_pieces):
    """Weights, the slot of every node's matrix, and the nodes in three classes.

    ``W[n]``: the weight of the histories through node ``n``. ``T`` holds the
    ``P(t_p)`` of every piece at slot ``p``, then ``P(t_p) Q_off`` of the pieces
    with an exact entry (slot ``slot_exact[p]``), then ``D(t_p) (I + Q_off)`` of
    those with an exact transition time (``slot_transition[p]``), -1 where none:
    only the matrices some node uses are formed (and zeroed). ``node_slot[n]``:
    the slot of the interval into node ``n`` (-1 at a root). ``inner[n]``: the row
    of node ``n`` in the per-node vectors ``ahat``, ``pre`` and ``abar``, which
    only roots and nodes with children need (a leaf only needs its scale), -1
    for the others. ``from_state[n]``: the state ``s`` of the restart root that
    is node ``n``'s parent (its forward vector is ``e_s``, so the node's vector
    is row ``s`` of its ``T``: O(K)), -1 otherwise. The nodes with weight, by
    class, each in tree order: ``kept`` (roots and nodes with children),
    ``leaves_r`` (leaves below a restart root) and ``leaves_o`` (other leaves);
    one loop per class keeps the loops' branches predictable.
    """
    n_nodes = node_parent.shape[0]
    has_child = np.zeros(n_nodes, dtype=np.bool_)
    need_exact = np.zeros(n_pieces, dtype=np.bool_)
    need_transition = np.zeros(n_pieces, dtype=np.bool_)
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
    slot_exact = np.full(n_pieces, -1, dtype=np.int64)
    slot_transition = np.full(n_pieces, -1, dtype=np.int64)
    n_slots = n_pieces
    for p in range(n_pieces):
        if need_exact[p]:
            slot_exact[p] = n_slots
            n_slots += 1
    for p in range(n_pieces):
        if need_transition[p]:
            slot_transition[p] = n_slots
            n_slots += 1
    node_slot = np.full(n_nodes, -1, dtype=np.int64)
    inner = np.full(n_nodes, -1, dtype=np.int64)
    from_state = np.full(n_nodes, -1, dtype=np.int64)
    kept = np.empty(n_nodes, dtype=np.int64)
    leaves_r = np.empty(n_nodes, dtype=np.int64)
    leaves_o = np.empty(n_nodes, dtype=np.int64)
    n_kept = 0
    n_r = 0
    n_o = 0
    for n in range(n_nodes):
        par = node_parent[n]
        if par >= 0:
            if node_parent[par] < 0 and node_type[par] == OBS_RESTART:
                from_state[n] = node_piece[par]
            p = node_piece[n]
            if node_type[n] == OBS_EXACT:
                node_slot[n] = slot_exact[p]
            elif node_type[n] == OBS_TRANSITION:
                node_slot[n] = slot_transition[p]
            else:
                node_slot[n] = p
        if W[n] == 0.0:
            continue
        if par < 0 or has_child[n]:
            inner[n] = n_kept
            kept[n_kept] = n
            n_kept += 1
        elif from_state[n] >= 0:
            leaves_r[n_r] = n
            n_r += 1
        else:
            leaves_o[n_o] = n
            n_o += 1
    return (
        W, node_slot, inner, slot_exact, slot_transition, n_slots, from_state,
        kept[:n_kept], leaves_r[:n_r], leaves_o[:n_o],
    )  # fmt: skip


@njit(cache=True)
def _pieces(Q, piece_q, piece_t, slot_exact, slot_transition, n_slots):
    """Transition matrices of every slot (see :func:`_tree`) and the spectra behind them.

    One array ``T`` (n_slots, K, K), so the hot loops index it instead of taking
    views, whose reference counting costs more than the arithmetic.
    Decompositions per generator (:func:`markov_migration.core.spectral._decompose_used`)
    and their real forms (:func:`markov_migration.core.spectral_real._real_form`):
    ``expo_r[p]`` holds the exponentials of piece ``p`` in real form for real and
    complex spectra alike, and ``T[p]`` is formed in real arithmetic from them.
    """
    K = Q.shape[1]
    M = Q.shape[0]
    n_pieces = piece_q.shape[0]
    mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, valid = _decompose_used(Q, piece_q)
    kind = np.zeros((M, K), dtype=np.int64)
    Ut = np.empty((M, K, K))
    Uit = np.empty((M, K, K))
    Wt = np.empty((M, K, K, K))
    rf = np.zeros(M, dtype=np.bool_)
    T = np.empty((n_slots, K, K))
    expo_r = np.empty((n_pieces, K))
    expo_c = np.empty((n_pieces, K), dtype=np.complex128)
    spectra = (mode, lam_r, U_r, Ui_r, lam_c, U_c, Ui_c, kind, Ut, Uit, rf)
    if not valid:
        return spectra, expo_r, expo_c, T, False
    for m in range(M):
        if mode[m] == _MODE_COMPLEX:
            rf[m] = _real_form(lam_c, U_c, Ui_c, m, kind, Ut, Uit, Wt)
        elif mode[m] == _MODE_REAL:  # the real form of a real spectrum is itself
            rf[m] = True
            for i in range(K):
                for j in range(K):
                    Ut[m, i, j] = U_r[m, i, j]
                    Uit[m, i, j] = Ui_r[m, i, j]
    for p in range(n_pieces):
        m = piece_q[p]
        t = piece_t[p]
        # T[p] = U diag(e) U^-1 with the sum over k outermost: K independent
        # sums in the inner loop instead of one chain of K dependent additions
        if mode[m] == _MODE_REAL:
            _piece_exponentials(lam_r, m, t, expo_r, p)
            for i in range(K):
                for j in range(K):
                    T[p, i, j] = 0.0
                for k in range(K):
                    u = U_r[m, i, k] * expo_r[p, k]
                    for j in range(K):
                        T[p, i, j] += u * Ui_r[m, k, j]
        elif mode[m] == _MODE_COMPLEX:
            _piece_exponentials(lam_c, m, t, expo_c, p)
            if rf[m]:
                _real_exponentials(kind, m, expo_c, p, expo_r)
                for i in range(K):
                    for j in range(K):
                        T[p, i, j] = 0.0
                    for k in range(K):
                        e = expo_r[p, k]
                        for j in range(K):
                            T[p, i, j] += Wt[m, i, j, k] * e
            else:
                _dense(U_c, Ui_c, m, expo_c, p, T, p)
        else:
            T[p] = _expm_numba(np.ascontiguousarray(Q[m]) * t)
        se = slot_exact[p]
        if se >= 0:  # P(t) Q_off
            for i in range(K):
                for j in range(K):
                    T[se, i, j] = 0.0
                for k in range(K):
                    tik = T[p, i, k]
                    for j in range(K):
                        if k != j:
                            T[se, i, j] += tik * Q[m, k, j]
        st = slot_transition[p]
        if st >= 0:  # D(t) (I + Q_off): no eigendecomposition
            for i in range(K):
                d = np.exp(Q[m, i, i] * t)
                for j in range(K):
                    T[st, i, j] = d if i == j else d * Q[m, i, j]
    return spectra, expo_r, expo_c, T, True
