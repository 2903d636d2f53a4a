"""Latent phases of observed states (Coxian phase-type) and intensity-index helpers.

Layer 1 (numpy only). A phase-type state is a spec-level construction: the
generator lives on an expanded (hidden) state space and an emission matrix maps
each phase to its observed state, so the forward algorithm of
:mod:`markov_migration.core.forward` needs nothing special for it. This module
builds that expansion (msm's ``phase.states``) and maps free intensities to a
generator and its gradient back to log-intensities.
"""

from typing import NamedTuple

import numpy as np

__all__ = ["PhaseLayout", "generator_from_rates", "log_rate_grad", "phase_expansion"]


class PhaseLayout(NamedTuple):
    """Hidden state space of an observed model with latent phases (:func:`phase_expansion`)."""

    #: observed state of each hidden state, int (K_h,)
    observed: np.ndarray
    #: phase number (0-based) of each hidden state within its observed state, int (K_h,)
    phase: np.ndarray
    #: ``emission[k, s] = 1`` if hidden state ``k`` is a phase of observed ``s``, (K_h, K)
    emission: np.ndarray
    #: hidden origin and destination of each free intensity, int (n_rates,)
    rate_from: np.ndarray
    rate_to: np.ndarray
    #: observed transition ``(r, s)`` each intensity belongs to; ``r == s`` for
    #: the progression from one phase to the next, int (n_rates, 2)
    rate_observed: np.ndarray


def phase_expansion(allowed, phases) -> PhaseLayout:
    """Expand observed states into latent Coxian phases (msm's ``phase.states``).

    A state ``r`` with ``n`` phases becomes hidden states ``r_0 .. r_(n-1)``:
    the chain enters at ``r_0``, moves on ``r_i -> r_(i+1)``, and every phase
    may leave to each allowed destination ``s`` of ``r`` (into ``s``'s first
    phase), each with its own intensity. States without phases stay single.

    Parameters
    ----------
    allowed : array_like of bool, shape (K, K)
        Allowed direct transitions between observed states (diagonal ignored).
    phases : mapping of int to int
        Number of phases (>= 1) of observed states, by 0-based index.

    Returns
    -------
    PhaseLayout
        Hidden states are ordered by observed state, then phase. The emission
        matrix goes with :func:`markov_migration.core.forward.emission_table`; the rate index with
        :func:`generator_from_rates`.

    Examples
    --------
    >>> lay = phase_expansion([[0, 1], [1, 0]], {1: 2})
    >>> lay.observed.tolist(), lay.rate_from.tolist(), lay.rate_to.tolist()
    ([0, 1, 1], [0, 1, 1, 2], [1, 2, 0, 0])
    """
    allowed = np.asarray(allowed, dtype=bool)
    K = allowed.shape[0]
    if allowed.shape != (K, K):
        raise ValueError(f"allowed must be square, got {allowed.shape}")
    allowed = allowed & ~np.eye(K, dtype=bool)
    n = np.ones(K, dtype=np.int64)
    for state, count in phases.items():
        if not (0 <= state < K) or int(count) < 1:
            raise ValueError(f"phases: state {state} with {count} phases is not valid")
        if int(count) > 1 and not allowed[state].any():
            raise ValueError(f"phases: state {state} is absorbing; it cannot have phases")
        n[state] = int(count)
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    observed = np.repeat(np.arange(K), n)
    phase = np.concatenate([np.arange(c) for c in n])
    rate_from, rate_to, rate_observed = [], [], []
    for r in range(K):
        for i in range(n[r]):
            h = first[r] + i
            if i + 1 < n[r]:
                rate_from.append(h)
                rate_to.append(h + 1)
                rate_observed.append((r, r))
            for s in np.flatnonzero(allowed[r]):
                rate_from.append(h)
                rate_to.append(first[s])
                rate_observed.append((r, s))
    return PhaseLayout(
        observed=observed,
        phase=phase,
        emission=(observed[:, None] == np.arange(K)[None, :]).astype(np.float64),
        rate_from=np.array(rate_from, dtype=np.int64),
        rate_to=np.array(rate_to, dtype=np.int64),
        rate_observed=np.array(rate_observed, dtype=np.int64).reshape(-1, 2),
    )


def generator_from_rates(n_states, rate_from, rate_to, rates) -> np.ndarray:
    """Generator with ``Q[rate_from[i], rate_to[i]] = rates[i]`` and rows summing to 0."""
    Q = np.zeros((n_states, n_states))
    np.add.at(Q, (np.asarray(rate_from), np.asarray(rate_to)), np.asarray(rates, dtype=float))
    Q[np.diag_indices(n_states)] = -Q.sum(axis=1)
    return Q


def log_rate_grad(Q, dQ, rate_from, rate_to) -> np.ndarray:
    """Chain rule to log-intensities: ``q_ij (dQ[i, j] - dQ[i, i])`` (diagonal = -row sum)."""
    i, j = np.asarray(rate_from), np.asarray(rate_to)
    return np.asarray(Q)[i, j] * (np.asarray(dQ)[i, j] - np.asarray(dQ)[i, i])
