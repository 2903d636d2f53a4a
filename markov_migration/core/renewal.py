"""Renewal splitting of the forward algorithm's tree of histories.

Layer 1 (numpy only). See "Renewal splitting" in
:mod:`markov_migration.core.forward`: an observation with one possible true
state is a renewal point, and a history's likelihood factorises there into a
head and a tail started from the unit vector of that state; tails shared by
many respondents are then counted once.
"""

import numpy as np

from markov_migration.core.forward import OBS_RESTART, Histories

__all__ = ["renewal_states", "split_histories"]


def renewal_states(support) -> np.ndarray:
    """The renewal state of each record code, from the structural support of ``B``.

    Parameters
    ----------
    support : array_like of bool, shape (n_codes, K)
        ``True`` where ``B[code, k]`` may be non-zero for some parameter value
        (decided from the model's structure, not from one value of ``B``).

    Returns
    -------
    ndarray of int64, shape (n_codes,)
        The only possible true state of each code, -1 where there are several
        (or none).

    Examples
    --------
    >>> renewal_states([[1, 0, 0], [1, 1, 0], [0, 0, 1]]).tolist()
    [0, -1, 2]
    """
    support = np.asarray(support, dtype=bool)
    single = support.sum(axis=1) == 1
    return np.where(single, support.argmax(axis=1), -1).astype(np.int64)


def split_histories(hist, renewal) -> Histories:
    """The tree of :func:`aggregate_histories` split at renewal points (module docstring).

    A history through a node whose code is a renewal point ends there (its
    head); what follows hangs from the restart root of that state, shared by
    every history (and every code) that renews in it. Same log-likelihood and
    gradient with respect to ``Q`` and ``pi``; ``d/dB`` agrees wherever ``B``
    can be non-zero (the rest is the derivative along entries that are
    structurally 0).

    Parameters
    ----------
    hist : Histories
        An unsplit (or already split) tree.
    renewal : array_like of int, shape (n_codes,)
        State of each code (:func:`renewal_states`), -1 where not a renewal
        point. The caller vouches that ``B[code]`` is zero outside that state
        for every parameter value.

    Returns
    -------
    Histories
        Same pieces; the nodes of heads and of shared tails. ``node_count``
        counts segments.
    """
    renewal = np.asarray(renewal, dtype=np.int64)
    parent0, piece0, kind0, code0, count0 = (
        np.asarray(a) for a in (hist.node_parent, hist.node_piece, hist.node_type,
                                hist.node_code, hist.node_count)
    )  # fmt: skip
    n = parent0.shape[0]
    if np.any(code0 >= renewal.shape[0]):
        raise ValueError(f"renewal must give a state for each of the {code0.max() + 1} codes")
    # weight of the histories that go on past each node: they end there as heads
    through = np.asarray(count0, dtype=np.float64).copy()
    for m in range(n - 1, -1, -1):
        if parent0[m] >= 0:
            through[parent0[m]] += through[m]
    onward = through - count0
    nodes: dict[tuple, int] = {}
    restart: dict[int, int] = {}  # state -> its restart root
    parent, piece, kind, code, count = [], [], [], [], []

    def add(key):
        parent.append(key[0])
        piece.append(key[1])
        kind.append(key[2])
        code.append(key[3])
        count.append(0.0)
        return len(parent) - 1

    def restart_root(state, rec):
        if state not in restart:  # the code is kept only to index B; it is not used
            restart[state] = add((-1, state, OBS_RESTART, rec))
        return restart[state]

    new = np.empty(n, dtype=np.int64)
    for m in range(n):
        p = int(parent0[m])
        if p < 0 and kind0[m] == OBS_RESTART:  # a tree split before
            new[m] = restart_root(int(piece0[m]), int(code0[m]))
            continue
        if p < 0:
            up = -1
        elif parent0[p] < 0 and kind0[p] == OBS_RESTART:
            up = int(new[p])
        elif renewal[code0[p]] >= 0:
            up = restart_root(int(renewal[code0[p]]), int(code0[p]))
        else:
            up = int(new[p])
        key = (up, int(piece0[m]), int(kind0[m]), int(code0[m]))
        found = nodes.get(key)
        if found is None:
            found = nodes[key] = add(key)
        new[m] = found
        count[found] += float(count0[m])
        if renewal[code0[m]] >= 0:  # the histories that go on end their head here
            count[found] += float(onward[m])
    return Histories(
        piece_q=np.asarray(hist.piece_q, dtype=np.int64),
        piece_t=np.asarray(hist.piece_t, dtype=np.float64),
        node_parent=np.array(parent, dtype=np.int64),
        node_piece=np.array(piece, dtype=np.int64),
        node_type=np.array(kind, dtype=np.int64),
        node_code=np.array(code, dtype=np.int64),
        node_count=np.array(count, dtype=np.float64),
    )
