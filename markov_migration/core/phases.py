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

__all__ = [
    "PhaseLayout",
    "generator_from_rates",
    "hidden_generators",
    "latent_at_observed",
    "latent_log_rates",
    "observed_generator",
    "transition_lift",
    "log_rate_grad",
    "phase_block",
    "phase_expansion",
    "phase_measures",
]


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


def hidden_generators(n_states, rate_from, rate_to, rates) -> np.ndarray:
    """Generators (..., K_h, K_h) from intensities (..., n_rates) (vectorised :func:`generator_from_rates`).

    Each ``(rate_from[i], rate_to[i])`` pair must be distinct.
    """
    rates = np.asarray(rates, dtype=np.float64)
    q = np.zeros((*rates.shape[:-1], n_states, n_states))
    q[..., np.asarray(rate_from), np.asarray(rate_to)] = rates
    idx = np.arange(n_states)
    q[..., idx, idx] = -q.sum(axis=-1)
    return q


def log_rate_grad(Q, dQ, rate_from, rate_to) -> np.ndarray:
    """Chain rule to log-intensities: ``q_ij (dQ[i, j] - dQ[i, i])`` (diagonal = -row sum)."""
    i, j = np.asarray(rate_from), np.asarray(rate_to)
    return np.asarray(Q)[i, j] * (np.asarray(dQ)[i, j] - np.asarray(dQ)[i, i])


def phase_block(q_latent, hidden: np.ndarray):
    """The sub-generator ``T`` of one observed state's phases and its exit rates.

    Parameters
    ----------
    q_latent : ndarray, shape (..., K_h, K_h)
        Hidden-state generators.
    hidden : ndarray of int, shape (n,)
        The state's hidden states, in phase order (first phase first).

    Returns
    -------
    T : ndarray, shape (..., n, n)
        Intensities among the phases (diagonal: minus each phase's total exit).
    """
    q = np.asarray(q_latent, dtype=np.float64)
    return q[..., hidden[:, None], hidden[None, :]]


def phase_measures(q_latent, hidden, times=(1.0, 5.0, 10.0)) -> dict[str, np.ndarray]:
    """What the phases of one observed state imply, for someone entering its first phase.

    For a Coxian phase-type state with sub-generator ``T`` (:func:`phase_block`)
    and ``N = (-T)^-1`` (the expected time in phase ``j`` starting in ``i``):

    - ``reach[j]``: probability of reaching phase ``j`` before leaving the state,
      ``N[0, j] / N[j, j]`` (1 for the first phase; for the last phase the
      probability of *settling*);
    - ``mean_time[j]``: expected time spent in phase ``j`` per stay, ``N[0, j]``
      (time units); their sum is the mean length of a stay;
    - ``share[j]``: the share of the state's population in phase ``j`` when
      entries are steady, ``mean_time[j] / sum(mean_time)`` (renewal-reward);
    - ``stay[t]``: probability of still being in the state ``t`` time units after
      entering it, ``e_0' expm(T t) 1``.

    Parameters
    ----------
    q_latent : ndarray, shape (..., K_h, K_h)
    hidden : array_like of int, shape (n,)
        The state's hidden states in phase order.
    times : sequence of float
        Times of ``stay`` (time units).

    Returns
    -------
    dict
        ``reach``, ``mean_time``, ``share``: (..., n); ``stay``: (..., len(times));
        ``mean_sojourn``: (...).

    Examples
    --------
    >>> q = np.array([[-2.0, 1.0, 1.0], [0.0, -0.5, 0.5], [0.0, 0.0, 0.0]])
    >>> m = phase_measures(q, [0, 1], times=[1.0])
    >>> m["reach"].round(3).tolist(), m["mean_time"].round(3).tolist()
    ([1.0, 0.5], [0.5, 1.0])
    """
    from scipy.linalg import expm

    hidden = np.asarray(hidden, dtype=np.int64)
    t_block = phase_block(q_latent, hidden)
    fundamental = np.linalg.inv(-t_block)
    mean_time = fundamental[..., 0, :]
    diag = np.diagonal(fundamental, axis1=-2, axis2=-1)
    reach = mean_time / diag
    total = mean_time.sum(axis=-1)
    lead = t_block.shape[:-2]
    flat = t_block.reshape((-1,) + t_block.shape[-2:])
    stay = np.empty((flat.shape[0], len(times)))
    for i, tb in enumerate(flat):
        for j, t in enumerate(times):
            stay[i, j] = expm(tb * float(t))[0].sum()
    return {
        "reach": reach,
        "mean_time": mean_time,
        "share": mean_time / total[..., None],
        "stay": stay.reshape(lead + (len(times),)),
        "mean_sojourn": total,
    }


def hidden_names(states, layout: PhaseLayout) -> tuple[str, ...]:
    """Names of the hidden states: ``state`` when single, ``state_1``, ``state_2``, ... if phased.

    Examples
    --------
    >>> hidden_names(["a", "b"], phase_expansion([[0, 1], [1, 0]], {1: 2}))
    ('a', 'b_1', 'b_2')
    """
    names = []
    for h, r in enumerate(layout.observed):
        n = int(np.sum(layout.observed == r))
        names.append(states[r] if n == 1 else f"{states[r]}_{layout.phase[h] + 1}")
    return tuple(names)


def transition_lift(rate_observed, transitions) -> np.ndarray:
    """Which hidden intensities an observed transition's covariate effects multiply.

    msm's convention for ``phase.states`` models: covariates act on the
    intensities of the expanded (phased) generator. Here the log hazard ratio
    (or group effect) of an observed transition ``r -> s`` is shared by every
    phase exit ``r_k -> s`` (proportional hazards on the observed transition);
    the progressions ``r_k -> r_(k+1)`` get no effect.

    Parameters
    ----------
    rate_observed : array_like of int, shape (n_rates, 2)
        Observed transition of each hidden intensity (:attr:`PhaseLayout.rate_observed`,
        in the model's order of the hidden intensities); ``r == s`` for a progression.
    transitions : sequence of (int, int)
        The model's observed transitions, length T.

    Returns
    -------
    ndarray, shape (T, n_rates)
        ``lift[t, j] = 1`` if hidden intensity ``j`` is a phase exit of transition ``t``.

    Examples
    --------
    >>> lay = phase_expansion([[0, 1], [1, 0]], {1: 2})
    >>> transition_lift(lay.rate_observed, [(0, 1), (1, 0)]).tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    """
    ro = np.asarray(rate_observed, dtype=np.int64).reshape(-1, 2)
    out = np.zeros((len(transitions), ro.shape[0]))
    for t, (r, s) in enumerate(transitions):
        out[t, (ro[:, 0] == r) & (ro[:, 1] == s) & (r != s)] = 1.0
    return out


def latent_log_rates(log_rate_latent, shift, lift) -> np.ndarray:
    """Hidden log-intensities with covariate and group shifts of the observed transitions.

    Parameters
    ----------
    log_rate_latent : ndarray, shape (..., n_rates)
        Baseline hidden log-intensities (per time unit).
    shift : ndarray, shape (..., M, T)
        Sum of the covariate (``x * log_hr``) and group terms of each observed
        transition, for ``M`` generators; the leading dims broadcast with
        ``log_rate_latent``'s.
    lift : ndarray, shape (T, n_rates)
        :func:`transition_lift`.

    Returns
    -------
    ndarray, shape (..., M, n_rates)
    """
    return np.asarray(log_rate_latent)[..., None, :] + np.asarray(shift) @ np.asarray(lift)


def latent_at_observed(q_chosen, log_rate, log_rate_latent, layout, transitions) -> np.ndarray:
    """Hidden generators at chosen covariates, group and period, from the observed ones.

    The observed-state generators a fit gives at a choice of covariates, group
    and period are ``exp(log_rate + shift)`` on its transitions, ``shift`` the
    covariate, group and period terms; here ``shift`` is read back from them and
    added to every phase exit of each transition (:func:`latent_log_rates`).

    Parameters
    ----------
    q_chosen : ndarray, shape (S, ..., K, K)
        Observed-state generators at the choice, per posterior sample ``S``.
    log_rate : ndarray, shape (S, T)
        The baseline log-intensities the fit's generators are built on.
    log_rate_latent : ndarray, shape (S, n_rates)
        Baseline hidden log-intensities.
    layout : PhaseLayout
    transitions : sequence of (int, int)

    Returns
    -------
    ndarray, shape (S, ..., K_h, K_h)
    """
    q_chosen = np.asarray(q_chosen, dtype=np.float64)
    frm = np.array([r for r, _ in transitions], dtype=np.int64)
    to = np.array([s for _, s in transitions], dtype=np.int64)
    lead = q_chosen.shape[:-2]
    extra = len(lead) - 1
    base = np.asarray(log_rate, dtype=np.float64).reshape(lead[:1] + (1,) * extra + (-1,))
    shift = np.log(q_chosen[..., frm, to]) - base  # (S, ..., T)
    lift = transition_lift(layout.rate_observed, transitions)
    latent = np.asarray(log_rate_latent, dtype=np.float64)
    lr = latent.reshape(lead[:1] + (1,) * extra + latent.shape[-1:]) + shift @ lift
    return hidden_generators(layout.observed.size, layout.rate_from, layout.rate_to, np.exp(lr))


def observed_generator(q_latent: np.ndarray, observed, n_states: int) -> np.ndarray:
    """Markov generator on the observed states with the phase-type states' mean sojourns.

    ``Q[r, s] = P(next state s | entering r) / E(time in r)``, entering ``r`` in
    its first phase; for single-phase states this is the hidden generator itself.

    Parameters
    ----------
    q_latent : ndarray (..., K_h, K_h)
        Hidden generators (per time unit).
    observed : ndarray of int (K_h,)
        Observed state of each hidden state, phases in order.
    n_states : int

    Returns
    -------
    ndarray (..., K, K)
    """
    observed = np.asarray(observed)
    lead = q_latent.shape[:-2]
    out = np.zeros((*lead, n_states, n_states))
    for r in range(n_states):
        h = np.flatnonzero(observed == r)
        if not len(h):
            continue
        sub = q_latent[..., h[:, None], h[None, :]]  # (..., n, n)
        exits = np.zeros((*lead, len(h), n_states))
        for s in range(n_states):
            if s != r:
                cols = np.flatnonzero(observed == s)
                exits[..., s] = q_latent[..., h[:, None], cols[None, :]].sum(axis=-1)
        if not exits.any():
            continue
        # first row of (-sub)^-1: expected time in each phase after entering the first
        e0 = np.zeros(len(h))
        e0[0] = 1.0
        rhs = np.broadcast_to(e0[:, None], (*lead, len(h), 1))
        occupancy = np.linalg.solve(np.swapaxes(-sub, -1, -2), rhs)[..., 0]
        mean_time = occupancy.sum(axis=-1)
        nxt = np.einsum("...i,...is->...s", occupancy, exits)
        out[..., r, :] = nxt / mean_time[..., None]
        out[..., r, r] = -nxt.sum(axis=-1) / mean_time
    return out
