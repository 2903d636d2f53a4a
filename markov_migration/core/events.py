"""Exact transition events of a projected population (numpy/numba only).

A population counted by state moves through a continuous-time Markov chain
with generator ``Q`` (intensities per time unit). For planners the flows are
*events*: the number of ``r -> s`` transitions within a step, including moves
that are undone within the same step (a return followed by re-emigration).
This module samples the step-end stocks and the event counts jointly from
their exact distribution, at a cost that does not depend on the number of
persons.

Method: uniformization on aggregate counts
------------------------------------------
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

Random numbers follow :mod:`markov_migration.core.projection`: draw ``d``
reseeds numba's (per-thread) generator with ``seeds[d]`` from
:func:`~markov_migration.core.projection.draw_seeds`, so a draw's result
depends only on (seed, draw index, its inputs), not on threads or chunks.

References
----------
Jensen, A. (1953). Markoff chains as an aid in the study of Markoff processes.
Hobolth, A. and Stone, E. A. (2009). Simulation from endpoint-conditioned,
continuous-time Markov chains on a finite state space. Ann. Appl. Stat. 3(3).

Examples
--------
>>> import numpy as np
>>> from markov_migration.core.events import step_events
>>> q = np.array([[-0.3, 0.3], [0.5, -0.5]])
>>> end, events = step_events(np.array([1000, 0]), q, 1.0, seed=1)
>>> int(end.sum())
1000
>>> bool((end == np.array([1000, 0]) + events.sum(axis=0) - events.sum(axis=1)).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

#: Extra entries of a continuation table beyond ``mu h``: a person needs more jumps
#: than ``mu h + TABLE_SD * sqrt(mu h) + TABLE_PAD`` with a probability far below
#: 1e-20; the table is extended on the fly if that ever happens, so it is no cut-off.
TABLE_SD = 10.0
TABLE_PAD = 30


@dataclass(frozen=True)
class ProjectedEvents:
    """Integer outcome of an event projection.

    Attributes
    ----------
    stock : ndarray of int64, shape (D, S + 1, K)
        Persons by state at the start and at the end of every step.
    events : ndarray of int64, shape (D, S, K, K)
        ``events[d, k, r, s]``: transitions ``r -> s`` made within step ``k``
        (all of them, also moves undone later in the step); the diagonal is 0.
    arrivals : ndarray of int64, shape (D, S, K)
        Persons arriving in each state during each step (at uniform times).
    """

    stock: np.ndarray
    events: np.ndarray
    arrivals: np.ndarray


# ----------------------------------------------------------------------------- kernels


@njit(cache=True)
def continuation_table(lam, n, mixed):  # pragma: no cover
    """Continuation probabilities of the number of virtual jumps.

    Parameters
    ----------
    lam : float
        ``mu h`` (expected virtual jumps of a person present the whole step).
    n : int
        Length of the table.
    mixed : bool
        False: ``N ~ Poisson(lam)`` (present from the start of the step).
        True: the mixed Poisson of an arrival at a uniform time in the step.

    Returns
    -------
    ndarray, shape (n,)
        ``c[j] = P(N >= j + 1 | N >= j)``; ``c[0] = P(N >= 1)``.

    Notes
    -----
    Both tables come from backward recursions that never subtract tail sums,
    so they are accurate far into the tails. With ``a_j = lam / (j + 1)``:
    Poisson ``c_j = a_j / (1 - c_{j+1} + a_j)`` (from ``P(N >= j) / P(N = j)
    = 1 + a_j P(N >= j+1) / P(N = j+1)``); mixed ``m_j = c_{j+1} / (1 -
    m_{j+1} + c_{j+1})`` (from ``P(M >= j) = E[(N - j)^+] / lam``). The
    recursion starts at ``max(n, 2 lam) + 60`` from 0; each step down shrinks
    the starting error by a factor below 1/2 while ``j > 2 lam``.
    """
    out = np.zeros(n)
    if lam <= 0.0 or n == 0:
        return out
    top = max(n, int(2.0 * lam)) + 60
    c_next = 0.0  # Poisson c_{j+1}
    m_next = 0.0  # mixed m_{j+1}
    for j in range(top, -1, -1):
        a = lam / (j + 1.0)
        c = a / (1.0 - c_next + a)
        if mixed:
            m = c_next / (1.0 - m_next + c_next)
            m_next = m
        c_next = c
        if j < n:
            out[j] = m_next if mixed else c_next
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
    table = np.empty((2, n_tab))
    table[0] = continuation_table(lam, n_tab, False)
    table[1] = continuation_table(lam, n_tab, True)
    # active[0]: present from the start of the piece; active[1]: arrivals
    active = np.zeros((2, k), dtype=np.int64)
    n_active = 0
    for r in range(k):
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
            table = np.empty((2, n_tab))
            table[0] = continuation_table(lam, n_tab, False)
            table[1] = continuation_table(lam, n_tab, True)
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
                more = np.random.binomial(n, p_more) if n > 0 else 0  # noqa: NPY002
                active[g, s] = more
                x[s] += n - more
                n_active += more
        j += 1


@njit(cache=True)
def _events_draw(
    d, x0, q, piece_start, piece_dur, piece_gen, arrivals, seeds, stock, events
):  # pragma: no cover
    """Project draw ``d`` through all steps with its own random stream."""
    np.random.seed(seeds[d])  # noqa: NPY002 (numba: per-thread state)
    k = x0.shape[1]
    n_steps = piece_start.size - 1
    dq = d if q.shape[0] > 1 else 0
    da = d if arrivals.shape[0] > 1 else 0
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
            left = arrivals[da, s, e]
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
def _events_parallel(
    x0, q, piece_start, piece_dur, piece_gen, arrivals, seeds, stock, events
):  # pragma: no cover
    # every draw reseeds its thread's generator, so the split over threads
    # does not change the result
    for d in prange(x0.shape[0]):
        # prange's index may be unsigned; int64 keeps the index arithmetic integral
        _events_draw(
            np.int64(d), x0, q, piece_start, piece_dur, piece_gen, arrivals, seeds, stock, events
        )


@njit(cache=True)
def _events_serial(
    x0, q, piece_start, piece_dur, piece_gen, arrivals, seeds, stock, events
):  # pragma: no cover
    for d in range(x0.shape[0]):
        _events_draw(d, x0, q, piece_start, piece_dur, piece_gen, arrivals, seeds, stock, events)


# ----------------------------------------------------------------------------- API


def _schedule(steps, n_gen: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten ``steps`` (per step: (duration, generator index) pieces) into arrays."""
    start, dur, gen = [0], [], []
    for s, pieces in enumerate(steps):
        if len(pieces) == 0:
            raise ValueError(f"step {s} has no pieces")
        for duration, g in pieces:
            duration, g = float(duration), int(g)
            if not (np.isfinite(duration) and duration > 0):
                raise ValueError(f"step {s}: piece durations must be > 0, got {duration}")
            if not 0 <= g < n_gen:
                raise ValueError(f"step {s}: generator index {g} not in 0..{n_gen - 1}")
            dur.append(duration)
            gen.append(g)
        start.append(len(dur))
    return (
        np.asarray(start, dtype=np.int64),
        np.asarray(dur, dtype=np.float64),
        np.asarray(gen, dtype=np.int64),
    )


def _whole(values, name: str) -> np.ndarray:
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.all(np.mod(values, 1) == 0):
            raise ValueError(f"{name} must be whole persons")
    values = values.astype(np.int64)
    if np.any(values < 0):
        raise ValueError(f"{name} must be >= 0")
    return values


def project_events(
    x0: np.ndarray,
    q: np.ndarray,
    steps: Sequence[Sequence[tuple[float, int]]],
    *,
    seeds: np.ndarray,
    arrivals: np.ndarray | None = None,
    parallel: bool = True,
) -> ProjectedEvents:
    """Stocks and transition events of every draw and step, exactly.

    Parameters
    ----------
    x0 : array_like of int, shape (K,) or (D, K)
        Persons by state at the start (the same for every draw, or per draw).
    q : array_like, shape (K, K), (D, K, K) or (D, G, K, K)
        Generators (intensities per time unit): one for all draws, or per
        draw, with ``G`` variants (periods, scenarios) that ``steps`` picks
        from. Only the off-diagonal entries are used (rows are completed).
    steps : sequence of sequence of (duration, generator index)
        For each step, its pieces in time order (the format of
        :func:`~markov_migration.core.projection.step_pmatrices`): duration
        in time units (> 0) and the index into ``G`` in force. Chaining the
        pieces is exact for a generator that switches at the cut points.
    seeds : array_like of uint32, shape (D,)
        Stream seed of each draw (:func:`~markov_migration.core.projection.draw_seeds`).
    arrivals : array_like of int, shape (S, K) or (D, S, K), optional
        Persons arriving in each state during each step, at independent
        uniform times within the step.
    parallel : bool
        Run draws on numba's threads (False inside other thread pools). The
        result is the same either way.

    Returns
    -------
    ProjectedEvents
        Conserves persons exactly: ``stock[:, k+1] = stock[:, k] +
        arrivals[:, k] + events[:, k].sum(axis=-2) - events[:, k].sum(axis=-1)``.
    """
    seeds = np.ascontiguousarray(seeds, dtype=np.uint32).reshape(-1)
    n_draws = seeds.size
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 2:
        q = q[None, None]
    elif q.ndim == 3:
        q = q[:, None]
    if q.ndim != 4 or q.shape[-1] != q.shape[-2] or q.shape[0] not in (1, n_draws):
        raise ValueError(f"q must have shape (K, K), (D, K, K) or (D, G, K, K), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("q must be finite")
    k = q.shape[-1]
    off = ~np.eye(k, dtype=bool)
    if np.any(q[..., off] < 0):
        raise ValueError("off-diagonal intensities must be >= 0")
    start, dur, gen = _schedule(steps, q.shape[1])
    n_steps = start.size - 1
    x0 = _whole(x0, "initial stocks")
    if x0.shape[-1] != k or x0.ndim > 2 or (x0.ndim == 2 and x0.shape[0] != n_draws):
        raise ValueError(f"initial stocks must have shape ({k},) or ({n_draws}, {k})")
    x0 = np.ascontiguousarray(np.broadcast_to(x0, (n_draws, k)))
    if arrivals is None:
        arr = np.zeros((1, n_steps, k), dtype=np.int64)
    else:
        arr = _whole(arrivals, "arrivals")
        if arr.ndim == 2:
            arr = arr[None]
        if arr.shape[1:] != (n_steps, k) or arr.shape[0] not in (1, n_draws):
            raise ValueError(f"arrivals must have shape ({n_steps}, {k}) or ({n_draws}, ...)")
    arr = np.ascontiguousarray(arr)
    stock = np.empty((n_draws, n_steps + 1, k), dtype=np.int64)
    events = np.zeros((n_draws, n_steps, k, k), dtype=np.int64)
    if n_draws:
        kernel = _events_parallel if parallel else _events_serial
        kernel(x0, np.ascontiguousarray(q), start, dur, gen, arr, seeds, stock, events)
    out_arr = np.ascontiguousarray(np.broadcast_to(arr, (n_draws, n_steps, k)))
    return ProjectedEvents(stock=stock, events=events, arrivals=out_arr)


def step_events_pieces(
    x: np.ndarray,
    pieces: Sequence[tuple[np.ndarray, float]],
    *,
    arrivals: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One step through a piecewise-constant generator.

    Parameters
    ----------
    x : array_like of int, shape (K,)
        Persons by state at the start of the step.
    pieces : sequence of (Q, duration)
        Generators (K, K) in time order and how long each holds (time units).
    arrivals : array_like of int, shape (K,), optional
        Persons arriving during the step at uniform times.
    seed : int
        Seed of the step's random stream (uint32).

    Returns
    -------
    stock : ndarray of int64, shape (K,)
        Persons by state at the end of the step.
    events : ndarray of int64, shape (K, K)
        Transitions ``r -> s`` within the step.
    """
    q = np.stack([np.asarray(g, dtype=np.float64) for g, _ in pieces])[None]
    steps = [[(h, i) for i, (_, h) in enumerate(pieces)]]
    arr = None if arrivals is None else np.asarray(arrivals)[None]
    out = project_events(x, q, steps, seeds=np.array([seed]), arrivals=arr, parallel=False)
    return out.stock[0, 1], out.events[0, 0]


def step_events(
    x: np.ndarray,
    q: np.ndarray,
    h: float,
    *,
    arrivals: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One step of length ``h`` with generator ``q``: end stocks and events.

    See :func:`step_events_pieces` (one piece).
    """
    return step_events_pieces(x, [(q, h)], arrivals=arrivals, seed=seed)
