"""Hidden-Markov (observation model) log-likelihood of panel histories: the forward algorithm.

Layer 1 (numpy, scipy, numba only).

A respondent's history is a hidden continuous-time Markov chain on ``K``
states with generator ``Q`` (intensities per unit of the model's time). Each
observation contributes an *emission vector* ``e`` of length ``K``: the
probability of what was recorded given each true state. An exact state is a
unit vector, a censored code the indicator of a set of states, a
misclassified record a column of the misclassification matrix
(``E[true, recorded]``, rows summing to 1), a latent phase the indicator of
the phases of the recorded state. An observation may also be an *exact entry
time* into the recorded state (msm's ``deathexact``, obstype 3): its
contribution from the previous observation is ``P(t) Q_off`` (``Q_off`` is
``Q`` with a zero diagonal), the density of entering the state at exactly
``t`` from another state. An *exact transition time* (msm's obstype 2: the
previous state was kept throughout the interval and left for the recorded
state at exactly ``t``, or kept until ``t`` if the record repeats it)
contributes ``D(t) (I + Q_off)`` with ``D(t) = diag(exp(q_rr t))``: the
entry ``exp(q_rr t) q_rs`` (a density in ``t``) for a move ``r -> s``, and
``exp(q_rr t)`` (a probability) for a repeated state, as msm's ``Pmat`` with
``exacttimes``.

The first observation is weighted by ``pi`` (length ``K``): the likelihood of
a history is ``pi^T diag(e_1) T_1 diag(e_2) ... T_(n-1) diag(e_n) 1``.
Conventions, matching R msm:

* hidden models (misclassification, phases): ``pi`` is the initial state
  distribution (msm's ``initprobs``), and the first record contributes
  ``sum(pi * e_1)``;
* non-hidden models (exact and censored codes only): ``pi = ones(K)``. The
  first observation then contributes 1 if it is exact (the likelihood is
  conditional on the first state, as the pure-panel kernel) and msm's weight 1
  on every state of a censored first code;
* ``condition_first=True`` divides by ``sum(pi * e_1)``: the likelihood
  conditional on the first record, with ``pi`` as the prior of the first true
  state.

Data layout (:data:`FORWARD_FIELDS`, built by :func:`aggregate_histories`):
the distinct histories as a tree of shared prefixes, so that the forward
vector of a common beginning (same first record, same gap, same second
record, ...) is computed once.

``piece_q`` : int64 (n_pieces,)
    Generator index of each distinct ``(generator, gap)``.
``piece_t`` : float64 (n_pieces,)
    The gap, >= 0, in the model's time unit.
``node_parent`` : int64 (n_nodes,)
    The node of the previous observation, -1 at a first observation; parents
    come before their children.
``node_piece`` : int64 (n_nodes,)
    Piece of the interval from the parent (-1 at a first observation; the
    state ``s`` at a restart root).
``node_type`` : int64 (n_nodes,)
    1 (panel), 2 (exact transition time) or 3 (exact entry time). At a root: 0
    (:data:`OBS_RESTART`) for the start of a tail after a renewal point (below),
    anything else for a true first observation.
``node_code`` : int64 (n_nodes,)
    Row of the emission table ``B`` (``n_codes x K``) of the observation.
``node_count`` : float64 (n_nodes,)
    Number (or weight) of respondents whose history (or segment) ends at this node.

Renewal splitting (:func:`markov_migration.core.renewal.split_histories`). An observation whose emission row
has exactly one possible true state ``s`` (an exact record without phases or
misclassification into it, ...) is a *renewal point*: the forward vector after
it is ``c e_s`` whatever came before, so a history's likelihood is the product
of its *head* (up to and including that observation) and its *tail* started
from ``e_s``. Split there, the tails shared by many respondents (most are one
interval from a known state) are counted once, as the pure-panel rows are. A
tail hangs from a *restart root* (``node_type`` 0, the state in
``node_piece``) whose forward vector is ``e_s`` with no ``pi``, no emission
factor and no ``condition_first`` division. The log-likelihood is the same;
per-node values (:func:`history_loglik`) are then those of segments, so
per-respondent uses keep the unsplit tree.

Each interval uses one generator (the covariate pattern or group of its first
record); intervals crossing period cuts are not supported here. Latent phases are a
generator on an expanded state space plus a phase emission matrix
(:mod:`markov_migration.core.phases`).
"""

from typing import NamedTuple

import numpy as np
import scipy.linalg

from markov_migration.core.forward_kernel import (
    OBS_EXACT,
    OBS_PANEL,
    OBS_RESTART,
    OBS_TRANSITION,
    forward_kernel,
    node_loglik_kernel,
)

__all__ = [
    "FORWARD_FIELDS",
    "OBS_EXACT",
    "OBS_PANEL",
    "OBS_RESTART",
    "OBS_TRANSITION",
    "Histories",
    "aggregate_histories",
    "emission_table",
    "emission_table_grad",
    "history_loglik",
    "loglik",
    "loglik_and_grad",
    "loglik_reference",
]

#: The observation types the kernels know (msm's obstype codes).
_OBSTYPES = (OBS_PANEL, OBS_TRANSITION, OBS_EXACT)

#: Names of the data arrays that follow ``(Q, pi, B)`` in every function here.
FORWARD_FIELDS = (
    "piece_q",
    "piece_t",
    "node_parent",
    "node_piece",
    "node_type",
    "node_code",
    "node_count",
)


class Histories(NamedTuple):
    """Aggregated histories in the layout of the module docstring (unpack with ``*``)."""

    piece_q: np.ndarray
    piece_t: np.ndarray
    node_parent: np.ndarray
    node_piece: np.ndarray
    node_type: np.ndarray
    node_code: np.ndarray
    node_count: np.ndarray

    @property
    def n_histories(self) -> int:
        """Number of distinct histories (nodes where some history ends)."""
        return int(np.count_nonzero(self.node_count))

    @property
    def n_intervals(self) -> int:
        """Number of intervals (nodes with a parent): the forward steps of one evaluation."""
        return int(np.count_nonzero(self.node_parent >= 0))


def aggregate_histories(
    ids, times, codes, obstype=None, generator=None, weight=None, resolution=None,
    return_nodes=False,
):  # fmt: skip
    """Count identical histories once, in the compact layout of the kernels.

    Two respondents share a history when they have the same generators, the
    same sequence of codes and observation types and the same sequence of
    gaps (after rounding to ``resolution``).

    Parameters
    ----------
    ids : array_like, shape (n_rows,)
        Respondent of each row (long format, one row per observation).
    times : array_like of float, shape (n_rows,)
        Observation times in the model's time unit.
    codes : array_like of int, shape (n_rows,)
        Row of the emission table of each observation (0-based).
    obstype : array_like of int, optional
        1 (panel, default), 2 (exact transition time: the previous record's
        state was kept until this time) or 3 (exact entry time into the
        recorded state); ignored at a respondent's first row.
    generator : array_like of int, optional
        Generator index per row (e.g. its covariate pattern); the interval
        between two rows uses the generator of the earlier row, as R msm
        takes covariates at the start of each interval. Default 0.
    weight : array_like of float, optional
        Survey weight per row; the first row of a respondent counts.
        Default 1.
    resolution : float, optional
        Gaps are rounded to multiples of this (time units); default exact.
    return_nodes : bool
        Also return each respondent's node (where their history ends).

    Returns
    -------
    Histories
        Rows are sorted by respondent and time (stable).
    respondents, nodes : ndarray, shape (n_respondents,)
        With ``return_nodes``: the sorted distinct ``ids`` and the node of each.

    Examples
    --------
    >>> h = aggregate_histories([1, 1, 2, 2], [0.0, 1.0, 0.0, 1.0], [0, 1, 0, 1])
    >>> h.node_parent.tolist(), h.node_count.tolist(), h.piece_t.tolist()
    ([-1, 0], [0.0, 2.0], [1.0])
    """
    ids = np.asarray(ids)
    times = np.asarray(times, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    n = ids.shape[0]
    obstype = np.full(n, OBS_PANEL, np.int64) if obstype is None else np.asarray(obstype, np.int64)
    generator = np.zeros(n, np.int64) if generator is None else np.asarray(generator, np.int64)
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    for name, a in (("times", times), ("codes", codes), ("obstype", obstype)):
        if a.shape != (n,):
            raise ValueError(f"{name} must have the shape of ids, {(n,)}, got {a.shape}")
    if not np.all(np.isin(obstype, _OBSTYPES)):
        raise ValueError(f"obstype must be one of {_OBSTYPES}")
    order = np.lexsort((times, ids))
    ids, times, codes, obstype = ids[order], times[order], codes[order], obstype[order]
    generator, weight = generator[order], weight[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    stops = np.r_[starts[1:], n]
    if not np.all(np.isfinite(times)):
        raise ValueError("times must be finite")
    gaps = np.diff(times, prepend=times[:1])  # >= 0 within a respondent after the sort
    ticks = gaps if resolution is None else np.round(gaps / resolution)
    # a node per distinct prefix: (parent, gap, type, code); a root per first
    # code (its forward vector pi * B[code] does not depend on the generator)
    nodes: dict[tuple, int] = {}
    pieces: dict[tuple[int, float], int] = {}
    parent, piece, kind, code, count = [], [], [], [], []
    ends: list[int] = []
    for a, b in zip(starts, stops, strict=True):
        node = -1
        for k in range(a, b):
            if node < 0:
                key = (-1, -1, OBS_PANEL, int(codes[k]))
            else:
                # the interval (k-1, k] uses the generator of its first row (as msm)
                p = pieces.setdefault((int(generator[k - 1]), float(ticks[k])), len(pieces))
                key = (node, p, int(obstype[k]), int(codes[k]))
            found = nodes.get(key)
            if found is None:
                found = nodes[key] = len(parent)
                parent.append(key[0])
                piece.append(key[1])
                kind.append(key[2])
                code.append(key[3])
                count.append(0.0)
            node = found
        count[node] += weight[a]
        ends.append(node)
    keys = list(pieces)
    piece_t = np.array([k[1] for k in keys], dtype=np.float64)
    if resolution is not None:
        piece_t = piece_t * resolution
    hist = Histories(
        piece_q=np.array([k[0] for k in keys], dtype=np.int64),
        piece_t=piece_t,
        node_parent=np.array(parent, dtype=np.int64),
        node_piece=np.array(piece, dtype=np.int64),
        node_type=np.array(kind, dtype=np.int64),
        node_code=np.array(code, dtype=np.int64),
        node_count=np.array(count, dtype=np.float64),
    )
    if return_nodes:
        return hist, ids[starts], np.array(ends, dtype=np.int64)
    return hist


def emission_table(E, code_sets) -> np.ndarray:
    """Emission table ``B[c, k] = sum_{r in code_sets[c]} E[k, r]``.

    Parameters
    ----------
    E : array_like, shape (K, R)
        ``E[k, r]``: probability that true (hidden) state ``k`` is recorded as
        ``r`` (identity for exact records; a 0/1 phase map for latent phases;
        a misclassification matrix, or a product of both).
    code_sets : sequence of sequences of int
        The recorded states each code stands for (one for an exact or
        misclassified record, several for a censored code).

    Returns
    -------
    ndarray, shape (len(code_sets), K)
    """
    return _code_matrix(code_sets, np.shape(E)[1]) @ np.asarray(E, dtype=np.float64).T


def emission_table_grad(dB, code_sets, n_recorded) -> np.ndarray:
    """Chain rule of :func:`emission_table`: ``dE[k, r] = sum_{c: r in code_sets[c]} dB[c, k]``."""
    return np.asarray(dB, dtype=np.float64).T @ _code_matrix(code_sets, n_recorded)


def _code_matrix(code_sets, n_recorded) -> np.ndarray:
    S = np.zeros((len(code_sets), n_recorded))
    for c, states in enumerate(code_sets):
        S[c, list(states)] = 1.0
    return S


def _prepare(Q, pi, B, piece_q, piece_t, node_parent, node_piece, node_type, node_code, count):
    Q = np.asarray(Q, dtype=np.float64)
    squeeze = Q.ndim == 2
    Q = np.ascontiguousarray(Q[None] if squeeze else Q)
    if Q.ndim != 3 or Q.shape[1] != Q.shape[2]:
        raise ValueError(f"Q must have shape (M, K, K) or (K, K), got {Q.shape}")
    M, K = Q.shape[0], Q.shape[1]
    pi = np.ascontiguousarray(pi, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    if pi.shape != (K,):
        raise ValueError(f"pi must have shape ({K},), got {pi.shape}")
    if B.ndim != 2 or B.shape[1] != K:
        raise ValueError(f"B must have shape (n_codes, {K}), got {B.shape}")
    piece_q, node_parent, node_piece, node_type, node_code = (
        np.ascontiguousarray(a, dtype=np.int64)
        for a in (piece_q, node_parent, node_piece, node_type, node_code)
    )
    piece_t = np.ascontiguousarray(piece_t, dtype=np.float64)
    count = np.ascontiguousarray(count, dtype=np.float64)
    n = node_parent.shape[0]
    if piece_t.shape != piece_q.shape or np.any(piece_t < 0) or not np.all(np.isfinite(piece_t)):
        raise ValueError("piece_t must be finite, >= 0, one per piece")
    if np.any((piece_q < 0) | (piece_q >= M)):
        raise ValueError(f"piece_q must index the {M} generators")
    if any(a.shape != (n,) for a in (node_piece, node_type, node_code, count)):
        raise ValueError("the node arrays must have the same length")
    if np.any((node_parent < -1) | (node_parent >= np.arange(n))):
        raise ValueError("node_parent must be -1 or an earlier node")
    if np.any((node_code < 0) | (node_code >= B.shape[0])):
        raise ValueError(f"node_code must index the {B.shape[0]} rows of B")
    later = node_parent >= 0
    restart = ~later & (node_type == OBS_RESTART)
    if np.any((node_piece[restart] < 0) | (node_piece[restart] >= K)):
        raise ValueError(f"a restart root must give its state (0..{K - 1}) in node_piece")
    if np.any((node_piece[later] < 0) | (node_piece[later] >= piece_q.shape[0])):
        raise ValueError("node_piece must index a piece at every node with a parent")
    if not np.all(np.isin(node_type[later], _OBSTYPES)):
        raise ValueError(f"node_type must be one of {_OBSTYPES}")
    if np.any(count < 0) or not np.all(np.isfinite(count)):
        raise ValueError("node_count must be finite and >= 0")
    return squeeze, Q, pi, B, piece_q, piece_t, node_parent, node_piece, node_type, node_code, count


def _coerce(Q, pi, B, *histories):
    """Dtypes and contiguity only, no checks (see ``check`` in :func:`loglik`)."""
    Q = np.asarray(Q, dtype=np.float64)
    squeeze = Q.ndim == 2
    Q = np.ascontiguousarray(Q[None] if squeeze else Q)
    out = [squeeze, Q, np.ascontiguousarray(pi, np.float64), np.ascontiguousarray(B, np.float64)]
    kinds = (np.int64, np.float64, np.int64, np.int64, np.int64, np.int64, np.float64)
    out += [np.ascontiguousarray(a, dtype=k) for a, k in zip(histories, kinds, strict=True)]
    return out


def loglik(Q, pi, B, *histories, condition_first=False, check=True) -> float:
    """Log-likelihood of aggregated histories under a hidden CTMC.

    Parameters
    ----------
    Q : array_like, shape (M, K, K) or (K, K)
        Generator(s), intensities per unit of the model's time.
    pi : array_like, shape (K,)
        Weights of the first true state (see the module docstring).
    B : array_like, shape (n_codes, K)
        Emission table: ``B[c, k]`` = probability of record ``c`` given true
        state ``k`` (see :func:`emission_table`).
    *histories
        The seven arrays of :data:`FORWARD_FIELDS` (e.g. ``*Histories``).
    condition_first : bool
        Divide each history's likelihood by ``sum(pi * e_1)``.
    check : bool
        Validate the layout (about 60 us for 7,000 nodes). A caller that
        evaluates the same data many times (the sampler's Op) validates once
        and passes ``False``.

    Returns
    -------
    float
        ``sum_h count_h log L_h``; ``-inf`` if ``Q`` is not finite or a
        history is impossible.
    """
    _, *args = (_prepare if check else _coerce)(Q, pi, B, *histories)
    return float(forward_kernel(*args, bool(condition_first), False)[0])


def loglik_and_grad(Q, pi, B, *histories, condition_first=False, check=True):
    """Log-likelihood and its gradient with respect to ``Q``, ``B`` and ``pi``.

    Entries are treated as independent variables (the diagonal of ``Q``
    included); the caller applies the chain rule, e.g.
    ``d/d log q_ij = q_ij (dQ[i, j] - dQ[i, i])`` when the diagonal is minus
    the row sum, and :func:`emission_table_grad` for the emission parameters.

    Parameters
    ----------
    Q, pi, B, *histories, condition_first, check
        As :func:`loglik`.

    Returns
    -------
    loglik : float
    dQ : ndarray, shape of ``Q``
    dB : ndarray, shape (n_codes, K)
    dpi : ndarray, shape (K,)
        All zeros when ``loglik`` is ``-inf``.
    """
    squeeze, *args = (_prepare if check else _coerce)(Q, pi, B, *histories)
    value, dQ, dB, dpi = forward_kernel(*args, bool(condition_first), True)
    return float(value), (dQ[0] if squeeze else dQ), dB, dpi


def history_loglik(Q, pi, B, *histories, condition_first=False, check=True) -> np.ndarray:
    """Log-likelihood of the history that ends at each node of the tree.

    The pointwise log-likelihood (e.g. for PSIS-LOO): the history of a
    respondent is the node :func:`aggregate_histories` maps them to
    (``return_nodes=True``).

    Parameters
    ----------
    Q, pi, B, *histories, condition_first, check
        As :func:`loglik` (``check=False`` skips the layout checks: for callers that
        validated the same histories once, e.g. per posterior draw).

    Returns
    -------
    ndarray of float64, shape (n_nodes,)
        ``log L`` of the history from a root to each node (also for nodes
        where no history ends); ``-inf`` where it is impossible.
    """
    prepared = (_prepare if check else _coerce)(Q, pi, B, *histories)
    _, Q, pi, B, piece_q, piece_t, parent, piece, kind, code, _ = prepared
    return node_loglik_kernel(
        Q, pi, B, piece_q, piece_t, parent, piece, kind, code, bool(condition_first)
    )


def loglik_reference(
    Q, pi, B, ids, times, codes, obstype=None, weight=None, condition_first=False
) -> float:
    """Compute :func:`loglik` from long-format records, one respondent at a time (reference).

    No aggregation, no scaling and no eigendecomposition: the product of the
    module docstring with :func:`scipy.linalg.expm` per interval, formed left
    to right, then its log. One generator ``Q`` (K, K).

    Parameters
    ----------
    Q, pi, B, condition_first
        As :func:`loglik`.
    ids, times, codes, obstype, weight
        As :func:`aggregate_histories` (weight: first row of a respondent).
    """
    Q = np.asarray(Q, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    ids = np.asarray(ids)
    times = np.asarray(times, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    n = ids.shape[0]
    obstype = np.full(n, OBS_PANEL) if obstype is None else np.asarray(obstype)
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    Q_off = Q - np.diag(np.diag(Q))
    total = 0.0
    for person in np.unique(ids):
        rows = np.flatnonzero(ids == person)
        rows = rows[np.argsort(times[rows], kind="stable")]
        row = pi * B[codes[rows[0]]]
        first_prob = row.sum()
        for prev, o in zip(rows[:-1], rows[1:], strict=True):
            gap = times[o] - times[prev]
            if obstype[o] == OBS_TRANSITION:  # no expm: the state was kept, then left
                T = np.diag(np.exp(np.diag(Q) * gap)) @ (np.eye(Q.shape[0]) + Q_off)
            else:
                T = scipy.linalg.expm(Q * gap)
            if obstype[o] == OBS_EXACT:
                T = T @ Q_off
            row = (row @ T) * B[codes[o]]
        lik = row.sum() / (first_prob if condition_first else 1.0)
        if not (lik > 0 and np.isfinite(lik)):
            return -np.inf
        total += weight[rows[0]] * np.log(lik)
    return float(total)
