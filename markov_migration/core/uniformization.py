"""Numba kernels of exact transition events: uniformization on aggregate counts.

Used through :func:`markov_migration.core.events.project_events`.

Choose ``mu = max_r sum_{s != r} q_rs`` (the largest exit rate). A person then
makes ``N ~ Poisson(mu h)`` *virtual* jumps in a step of length ``h``,
independently of where they go, and their states at successive jumps follow
the discrete chain ``R = I + Q / mu`` (a self-jump is no event). Persons are
independent, so for a stock we keep ``active[s]``, the persons in ``s`` who
still have a jump to make. At jump ``j`` each state's active persons move by
``Multinomial(active[s], R[s])`` (off-diagonal moves are counted as events);
of those landing in ``s'``, ``Binomial(n, P(N >= j + 1 | N >= j))`` jump
again and the rest finish in ``s'``. The loop stops when nobody is active, so
nothing is truncated. Arrivals at uniform times in ``[0, h]`` make a mixed
Poisson number of jumps, ``P(M = n) = P(Poisson(mu h) >= n + 1) / (mu h)``,
and run through the same loop with that distribution's continuation
probabilities. A step whose generator changes at cut points is chained piece
by piece, each piece with its own ``mu``; arrivals are first split over the
pieces in proportion to their durations, which is exactly uniform over the step.

The cost per draw and piece is about (jumps until nobody is active) x (allowed
moves + states) binomial draws: it grows with ``mu h`` and slowly (like the
largest of the persons' Poisson jump counts) with the population, not in
proportion to it.

References
----------
Jensen, A. (1953). Markoff chains as an aid in the study of Markoff processes.
Skandinavisk Aktuarietidskrift 36, 87-91.
Hobolth, A. and Stone, E. A. (2009). Simulation from endpoint-conditioned,
continuous-time Markov chains on a finite state space. Ann. Appl. Stat. 3(3).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Extra entries of a continuation table beyond ``mu h``: a person needs more jumps
#: than ``mu h + TABLE_SD * sqrt(mu h) + TABLE_PAD`` with a probability far below
#: 1e-20; the table is extended on the fly if that ever happens, so it is no cut-off.
TABLE_SD = 10.0
TABLE_PAD = 30


@njit(cache=True)
def continuation_tables(lam, n):  # pragma: no cover
    """Continuation probabilities of the number of virtual jumps.

    Parameters
    ----------
    lam : float
        ``mu h`` (expected virtual jumps of a person present the whole step).
    n : int
        Length of the tables.

    Returns
    -------
    ndarray, shape (2, n)
        ``c[g, j] = P(N >= j + 1 | N >= j)`` (``c[g, 0] = P(N >= 1)``) for
        ``g = 0``: ``N ~ Poisson(lam)`` (present from the start of the step),
        and ``g = 1``: the mixed Poisson of an arrival at a uniform time in the
        step, ``P(N = m) = P(Poisson(lam) >= m + 1) / lam``.

    Notes
    -----
    Both come from backward recursions that never subtract tail sums, so they
    are accurate far into the tails. With ``a_j = lam / (j + 1)``: Poisson
    ``c_j = a_j / (1 - c_{j+1} + a_j)`` (from ``P(N >= j) / P(N = j) = 1 +
    a_j P(N >= j+1) / P(N = j+1)``); mixed ``m_j = c_{j+1} / (1 - m_{j+1} +
    c_{j+1})`` (from ``P(M >= j) = E[(N - j)^+] / lam``). The recursion starts
    at ``max(n, 2 lam) + 60`` from 0; each step down shrinks the starting
    error by a factor below 1/2 while ``j > 2 lam``.
    """
    out = np.zeros((2, n))
    if lam <= 0.0 or n == 0:
        return out
    top = max(n, int(2.0 * lam)) + 60
    c_next = 0.0  # Poisson c_{j+1}
    m_next = 0.0  # mixed m_{j+1}
    for j in range(top, -1, -1):
        a = lam / (j + 1.0)
        m_next = c_next / (1.0 - m_next + c_next)
        c_next = a / (1.0 - c_next + a)
        if j < n:
            out[0, j] = c_next
            out[1, j] = m_next
    return out


@njit(cache=True)
def _table_length(lam):  # pragma: no cover
    return int(lam + TABLE_SD * np.sqrt(lam)) + TABLE_PAD


@njit(cache=True)
def _piece(x, arr, q, h, ev, targets, cond, n_targets):  # pragma: no cover
    """Advance stocks ``x`` (in place) through ``h`` time units of generator ``q``.

    ``arr`` (K) persons arrive at uniform times during the piece and end up in
    ``x`` too; ``ev`` (K, K) accumulates the events. ``targets``, ``cond`` and
    ``n_targets`` are (K, K), (K, K), (K) work arrays.
    """
    k = x.size
    # the diagonal of q is ignored: exits are the off-diagonal row sums
    mu = 0.0
    for r in range(k):
        out_r = 0.0
        for s in range(k):
            if s != r and q[r, s] > 0.0:
                out_r += q[r, s]
        mu = max(mu, out_r)
    if mu <= 0.0 or h <= 0.0:
        for r in range(k):
            x[r] += arr[r]
        return
    # one row of R = I + Q / mu as a chain of conditional binomials over the
    # allowed targets, staying last: cond = p_i / (p_i + ... + p_m + stay),
    # from suffix sums so the last target of a state with stay 0 gets exactly 1
    for r in range(k):
        m = 0
        stay = 1.0
        for s in range(k):
            if s != r and q[r, s] > 0.0:
                targets[r, m] = s
                cond[r, m] = q[r, s] / mu
                stay -= q[r, s] / mu
                m += 1
        n_targets[r] = m
        rest = max(stay, 0.0)
        for i in range(m - 1, -1, -1):
            p = cond[r, i]
            rest += p
            cond[r, i] = min(p / rest, 1.0)
    lam = mu * h
    n_tab = _table_length(lam)
    table = continuation_tables(lam, n_tab)
    # active[0]: present from the start of the piece; active[1]: arrivals.
    # Persons in a state without exits only make self-jumps: they finish at once.
    active = np.zeros((2, k), dtype=np.int64)
    n_active = 0
    for r in range(k):
        a0, a1 = 0, 0
        if n_targets[r] > 0:
            a0 = np.random.binomial(x[r], table[0, 0]) if x[r] > 0 else 0  # noqa: NPY002
            a1 = np.random.binomial(arr[r], table[1, 0]) if arr[r] > 0 else 0  # noqa: NPY002
        active[0, r] = a0
        active[1, r] = a1
        x[r] += arr[r] - a0 - a1  # those without any jump finish where they are
        n_active += a0 + a1
    landed = np.zeros(k, dtype=np.int64)
    j = 1  # the jump about to be made
    while n_active > 0:
        if j >= n_tab:
            # beyond the table (probability < 1e-20 per person): extend it
            n_tab *= 2
            table = continuation_tables(lam, n_tab)
        n_active = 0
        for g in range(2):
            landed[:] = 0
            for r in range(k):
                n = active[g, r]
                if n == 0:
                    continue
                for i in range(n_targets[r]):
                    c = cond[r, i]
                    moved = n if c >= 1.0 else np.random.binomial(n, c)  # noqa: NPY002
                    if moved > 0:
                        landed[targets[r, i]] += moved
                        ev[r, targets[r, i]] += moved
                        n -= moved
                        if n == 0:
                            break
                landed[r] += n  # virtual self-jumps
            p_more = table[g, j]
            for s in range(k):
                n = landed[s]
                more = 0
                if n > 0 and n_targets[s] > 0:
                    more = np.random.binomial(n, p_more)  # noqa: NPY002
                active[g, s] = more
                x[s] += n - more
                n_active += more
        j += 1


@njit(cache=True)
def _events_draw(
    d, x0, q, piece_start, piece_dur, piece_gen, fixed, mean, cv, seeds, stock, events, arrivals
):  # pragma: no cover
    """Project draw ``d`` through all steps with its own random stream."""
    np.random.seed(seeds[d])  # noqa: NPY002 (numba: per-thread state)
    k = x0.shape[1]
    n_steps = piece_start.size - 1
    dq = d if q.shape[0] > 1 else 0
    da = d if fixed.shape[0] > 1 else 0
    dm = d if mean.shape[0] > 1 else 0
    level = 1.0
    if cv > 0.0:
        # persistent inflow level of this draw: gamma with mean 1 and the given CV
        shape = 1.0 / (cv * cv)
        level = np.random.gamma(shape, 1.0 / shape)  # noqa: NPY002
    targets = np.empty((k, k), dtype=np.int64)
    cond = np.empty((k, k))
    n_targets = np.empty(k, dtype=np.int64)
    x = x0[d].copy()
    stock[d, 0] = x
    max_pieces = 1
    for s in range(n_steps):
        max_pieces = max(max_pieces, piece_start[s + 1] - piece_start[s])
    arr = np.zeros((max_pieces, k), dtype=np.int64)
    for s in range(n_steps):
        first, last = piece_start[s], piece_start[s + 1]
        events[d, s] = 0
        # arrivals uniform over the step = split over the pieces by duration,
        # then uniform within each piece
        for e in range(k):
            if cv > 0.0:
                lam = level * mean[dm, s, e]
                arrivals[d, s, e] = np.random.poisson(lam) if lam > 0.0 else 0  # noqa: NPY002
            else:
                arrivals[d, s, e] = fixed[da, s, e]
            left = arrivals[d, s, e]
            time_left = 0.0
            for p in range(first, last):
                time_left += piece_dur[p]
            for p in range(first, last):
                if p == last - 1 or left == 0:
                    share = left
                else:
                    frac = piece_dur[p] / time_left if time_left > 0.0 else 1.0
                    share = left if frac >= 1.0 else np.random.binomial(left, frac)  # noqa: NPY002
                arr[p - first, e] = share
                left -= share
                time_left -= piece_dur[p]
        for p in range(first, last):
            _piece(
                x, arr[p - first], q[dq, piece_gen[p]], piece_dur[p], events[d, s],
                targets, cond, n_targets,
            )  # fmt: skip
        stock[d, s + 1] = x


@njit(parallel=True, cache=True)
def project_parallel(
    x0, q, piece_start, piece_dur, piece_gen, fixed, mean, cv, seeds, stock, events, arrivals
):  # pragma: no cover
    """All draws on numba's threads; arguments as prepared by ``project_events``.

    Every draw reseeds its thread's generator, so the split over threads does
    not change the result. Writes ``stock``, ``events`` and ``arrivals``.
    """
    for d in prange(x0.shape[0]):
        # prange's index may be unsigned; int64 keeps the index arithmetic integral
        _events_draw(
            np.int64(d), x0, q, piece_start, piece_dur, piece_gen, fixed, mean, cv, seeds,
            stock, events, arrivals,
        )  # fmt: skip


@njit(cache=True)
def project_serial(
    x0, q, piece_start, piece_dur, piece_gen, fixed, mean, cv, seeds, stock, events, arrivals
):  # pragma: no cover
    """All draws in one thread (inside other thread pools); same result as in parallel."""
    for d in range(x0.shape[0]):
        _events_draw(
            d, x0, q, piece_start, piece_dur, piece_gen, fixed, mean, cv, seeds,
            stock, events, arrivals,
        )  # fmt: skip
