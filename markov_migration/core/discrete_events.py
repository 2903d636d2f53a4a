"""Transition events of a population under a discrete-time chain (numpy/numba only).

A discrete-time fit estimates ``P``, the one-step (one wave) transition
matrix: between two consecutive steps every person moves ``r -> s`` with
probability ``P[r, s]``, independently, and makes at most one move. Projected
exactly, the persons in ``r`` at a step go to ``Multinomial(x_r, P[r])``, and
those moves *are* the transition events of the model (there is nothing
between steps to miss). An output step of ``n`` model steps chains ``n``
multinomial moves. Arrivals of an output step are spread evenly over its
model steps and join at the end of theirs: a person arriving between two waves
is first seen, and can first move, at the next wave.

The interface and random streams follow :func:`markov_migration.core.events.project_events`
(draw ``d`` reseeds numba's generator with ``seeds[d]``, so results do not
depend on threads or chunks), so the projection runs either kernel on the same
schedule of pieces; here a piece's duration is a whole number of model steps.

Examples
--------
>>> import numpy as np
>>> p = np.array([[0.9, 0.1], [0.3, 0.7]])
>>> out = project_discrete([1000, 0], p, [[(1.0, 0)], [(2.0, 0)]], seeds=np.array([3]))
>>> out.stock.shape, out.events.shape, int(out.stock[0, -1].sum())
((1, 3, 2), (1, 2, 2, 2), 1000)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from markov_migration.core.events import ProjectedEvents, _schedule, batch_matrices, run_schedule

#: Rows of a transition matrix may miss 1 by this much (float sums of probabilities).
ROW_TOL = 1e-9


@njit(cache=True)
def _move(x, arrive, p, ev, moved, cond):  # pragma: no cover
    """One model step: persons in ``x`` (in place) move by rows of ``p``; ``arrive`` join after.

    ``ev`` (K, K) accumulates the moves; ``moved`` and ``cond`` are (K,) work arrays.
    """
    k = x.size
    moved[:] = 0
    for r in range(k):
        n = x[r]
        if n == 0:
            continue
        # Multinomial(n, p[r]) as conditional binomials over the targets, staying last:
        # c_s = p_s / (p_s + ... + p_m + p_rr) from suffix sums, so the last target of a
        # row whose p_rr is 0 gets exactly 1
        rest = max(p[r, r], 0.0)
        for s in range(k - 1, -1, -1):
            if s != r and p[r, s] > 0.0:
                rest += p[r, s]
                cond[s] = min(p[r, s] / rest, 1.0)
        for s in range(k):
            if s == r or p[r, s] <= 0.0:
                continue
            if n == 0:
                break
            c = cond[s]
            m = n if c >= 1.0 else np.random.binomial(n, c)  # noqa: NPY002
            moved[s] += m
            ev[r, s] += m
            n -= m
        moved[r] += n
    for r in range(k):
        x[r] = moved[r] + arrive[r]


@njit(cache=True)
def _discrete_draw(
    d, x0, p, piece_start, piece_n, piece_gen, fixed, mean, cv, seeds, stock, events, arrivals
):  # pragma: no cover
    """Project draw ``d`` through all output steps with its own random stream."""
    np.random.seed(seeds[d])  # noqa: NPY002 (numba: per-thread state)
    k = x0.shape[1]
    n_steps = piece_start.size - 1
    dp = d if p.shape[0] > 1 else 0
    da = d if fixed.shape[0] > 1 else 0
    dm = d if mean.shape[0] > 1 else 0
    level = 1.0
    if cv > 0.0:
        shape = 1.0 / (cv * cv)
        level = np.random.gamma(shape, 1.0 / shape)  # noqa: NPY002
    x = x0[d].copy()
    stock[d, 0] = x
    moved = np.zeros(k, dtype=np.int64)
    cond = np.zeros(k)
    arrive = np.zeros(k, dtype=np.int64)
    left = np.zeros(k, dtype=np.int64)
    for s in range(n_steps):
        first, last = piece_start[s], piece_start[s + 1]
        events[d, s] = 0
        waves = 0
        for q in range(first, last):
            waves += piece_n[q]
        for e in range(k):
            if cv > 0.0:
                lam = level * mean[dm, s, e]
                arrivals[d, s, e] = np.random.poisson(lam) if lam > 0.0 else 0  # noqa: NPY002
            else:
                arrivals[d, s, e] = fixed[da, s, e]
            left[e] = arrivals[d, s, e]
        remaining = waves
        for q in range(first, last):
            for _ in range(piece_n[q]):
                # this model step's share of the arrivals: evenly over the remaining steps
                for e in range(k):
                    if remaining <= 1 or left[e] == 0:
                        arrive[e] = left[e]
                    else:
                        arrive[e] = np.random.binomial(left[e], 1.0 / remaining)  # noqa: NPY002
                    left[e] -= arrive[e]
                _move(x, arrive, p[dp, piece_gen[q]], events[d, s], moved, cond)
                remaining -= 1
        stock[d, s + 1] = x


@njit(parallel=True, cache=True)
def _discrete_parallel(
    x0, p, piece_start, piece_n, piece_gen, fixed, mean, cv, seeds, stock, events, arrivals
):  # pragma: no cover
    for d in prange(x0.shape[0]):
        _discrete_draw(
            np.int64(d), x0, p, piece_start, piece_n, piece_gen, fixed, mean, cv, seeds,
            stock, events, arrivals,
        )  # fmt: skip


@njit(cache=True)
def _discrete_serial(
    x0, p, piece_start, piece_n, piece_gen, fixed, mean, cv, seeds, stock, events, arrivals
):  # pragma: no cover
    for d in range(x0.shape[0]):
        _discrete_draw(
            d, x0, p, piece_start, piece_n, piece_gen, fixed, mean, cv, seeds,
            stock, events, arrivals,
        )  # fmt: skip


def project_discrete(
    x0: np.ndarray,
    p: np.ndarray,
    steps: Sequence[Sequence[tuple[float, int]]],
    *,
    seeds: np.ndarray,
    inflow: np.ndarray | None = None,
    inflow_cv: float = 0.0,
    parallel: bool = True,
) -> ProjectedEvents:
    """Stocks and transition events of every draw and output step under one-step matrices.

    Parameters
    ----------
    x0 : array_like of int, shape (K,) or (D, K)
        Persons by state at the start.
    p : array_like, shape (K, K), (D, K, K) or (D, G, K, K)
        One-step transition matrices (rows add up to 1), per draw, with ``G``
        variants that ``steps`` picks from.
    steps : sequence of sequence of (duration, index)
        Per output step its pieces: a whole number of model steps (>= 1) and
        the index into ``G`` in force.
    seeds, inflow, inflow_cv, parallel
        As :func:`markov_migration.core.events.project_events`; arrivals are
        spread evenly over the model steps of an output step and join at the
        end of theirs.

    Returns
    -------
    ProjectedEvents
        ``events[d, k, r, s]``: persons who moved ``r -> s`` between
        consecutive model steps within output step ``k``. Conserves persons
        exactly, as ``project_events`` does.
    """
    seeds = np.ascontiguousarray(seeds, dtype=np.uint32).reshape(-1)
    p = batch_matrices(p, seeds.size, "p")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("p must hold probabilities in [0, 1]")
    if np.any(np.abs(p.sum(axis=-1) - 1.0) > ROW_TOL):
        raise ValueError("rows of p must add up to 1")
    start, dur, gen = _schedule(steps, p.shape[1])
    n = np.round(dur)
    if np.any(np.abs(dur - n) > 1e-9) or np.any(n < 1):
        raise ValueError("discrete-time pieces must be whole numbers of model steps")
    kernel = _discrete_parallel if parallel else _discrete_serial
    return run_schedule(kernel, p, x0, start, n.astype(np.int64), gen, seeds, inflow, inflow_cv)
