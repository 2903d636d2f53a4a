"""Exact transition events of a projected population (numpy/numba only).

A population counted by state moves through a continuous-time Markov chain
with generator ``Q`` (intensities per time unit). For planners the flows are
*events*: the number of ``r -> s`` transitions within a step, including moves
that are undone within the same step (a return followed by re-emigration), so
their distribution does not depend on the length of the output step. The
step-end stocks and the event counts are sampled jointly from their exact
distribution by uniformization on aggregate counts
(:mod:`markov_migration.core.uniformization`), at a cost that does not depend
on the number of persons. New arrivals come in at uniform times through each
step, and a step whose generator changes at cut points (periods, scenarios) is
chained piece by piece. Expectations are in
:mod:`markov_migration.core.event_moments`; "ever returned" counts come from
running the same kernel on :class:`markov_migration.core.ever_home.EverHomeSpace`.

Random numbers follow :mod:`markov_migration.core.projection`: draw ``d``
reseeds numba's (per-thread) generator with ``seeds[d]`` from
:func:`~markov_migration.core.projection.draw_seeds`, so a draw's result
depends only on (seed, draw index, its inputs), not on threads or chunks.

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

A projection as ``projection/run.py`` would run it: generators per draw (here
one set for all draws) with one variant per period, the same ``steps``
schedule as :func:`~markov_migration.core.projection.step_pmatrices` (the
period changes inside the second step), and arrivals through every step.
"Ever returned" runs the same kernel on the augmented space and collapses it:

>>> from markov_migration.core.ever_home import EverHomeSpace
>>> from markov_migration.core.projection import draw_seeds
>>> periods = np.stack([q, 2.0 * q])[None]               # (1 draw set, 2 periods, K, K)
>>> steps = [[(1.0, 0)], [(0.4, 0), (0.6, 1)], [(1.0, 1)]]
>>> inflow = np.tile([50.0, 0.0], (3, 1))                 # persons per step and state
>>> seeds = draw_seeds(7, np.arange(4))                   # 4 draws
>>> out = project_events([900, 100], periods, steps, seeds=seeds, inflow=inflow)
>>> out.stock.shape, out.events.shape
((4, 4, 2), (4, 3, 2, 2))
>>> space = EverHomeSpace(k=2, home=[1])
>>> aug = project_events(space.initial(np.array([900, 100])), space.generator(periods), steps,
...                      seeds=seeds, inflow=space.arrivals(inflow))
>>> space.stock(aug.stock).shape, space.events(aug.events).shape, space.ever_home(aug.stock).shape
((4, 4, 2), (4, 3, 2, 2), (4, 4))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from markov_migration.core.uniformization import project_parallel, project_serial


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


def inflow_counts_by_state(inflow: np.ndarray) -> np.ndarray:
    """Whole persons per step and state from expected (possibly fractional) inflows.

    Rounds the *cumulative* inflow of each state over the steps (axis -2), as
    :func:`~markov_migration.core.projection.inflow_counts` does for one state,
    so the counts add up to the rounded total.
    """
    inflow = np.asarray(inflow, dtype=np.float64)
    zero = np.zeros(inflow.shape[:-2] + (1, inflow.shape[-1]))
    cum = np.round(np.concatenate([zero, np.cumsum(inflow, axis=-2)], axis=-2))
    return np.diff(cum, axis=-2).astype(np.int64)


def project_events(
    x0: np.ndarray,
    q: np.ndarray,
    steps: Sequence[Sequence[tuple[float, int]]],
    *,
    seeds: np.ndarray,
    inflow: np.ndarray | None = None,
    inflow_cv: float = 0.0,
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
        from (one set for all draws: shape (1, G, K, K)). Only the
        off-diagonal entries are used (the diagonal is implied).
    steps : sequence of sequence of (duration, generator index)
        For each step, its pieces in time order (the format of
        :func:`~markov_migration.core.projection.step_pmatrices`): duration
        in time units (> 0) and the index into ``G`` in force. Chaining the
        pieces is exact for a generator that switches at the cut points.
    seeds : array_like of uint32, shape (D,)
        Stream seed of each draw (:func:`~markov_migration.core.projection.draw_seeds`).
    inflow : array_like, shape (S, K) or (D, S, K), optional
        Expected persons arriving in each state during each step, at
        independent uniform times within the step. With ``inflow_cv`` 0 they
        are fixed: :func:`inflow_counts_by_state` of them arrive. Otherwise
        each draw has a level ``g ~ Gamma(mean 1, CV inflow_cv)`` for the
        whole run and ``Poisson(g * inflow[k, s])`` arrive (as
        :func:`~markov_migration.core.projection.project_stocks`).
    inflow_cv : float
        Coefficient of variation of the inflow level (0 = known inflows).
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
    q = batch_matrices(q, seeds.size, "q")
    if not np.all(np.isfinite(q)):
        raise ValueError("q must be finite")
    off = ~np.eye(q.shape[-1], dtype=bool)
    if np.any(q[..., off] < 0):
        raise ValueError("off-diagonal intensities must be >= 0")
    start, dur, gen = _schedule(steps, q.shape[1])
    kernel = project_parallel if parallel else project_serial
    return run_schedule(kernel, q, x0, start, dur, gen, seeds, inflow, inflow_cv)


def batch_matrices(m, n_draws: int, name: str) -> np.ndarray:
    """Matrices ``(K, K)``, ``(D, K, K)`` or ``(D, G, K, K)`` as float64 ``(1 or D, G, K, K)``."""
    m = np.asarray(m, dtype=np.float64)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[-1] != m.shape[-2] or m.shape[0] not in (1, n_draws):
        raise ValueError(f"{name} must have shape (K, K), (D, K, K) or (D, G, K, K), got {m.shape}")
    return m


#: Draw-steps per call of a draws kernel (about 1-2 s on one core), and the least
#: draws per call (numba's threads share a call's draws).
BLOCK_DRAW_STEPS, MIN_BLOCK_DRAWS = 200_000, 16


def run_schedule(kernel, m, x0, start, dur, gen, seeds, inflow, inflow_cv) -> ProjectedEvents:
    """Check stocks and inflows against ``m`` (D or 1, G, K, K); run a draws kernel on them.

    Shared by :func:`project_events` and
    :func:`markov_migration.core.discrete_events.project_discrete`: ``kernel`` is
    called as ``kernel(x0, m, start, dur, gen, fixed, mean, cv, seeds, stock,
    events, arrivals)`` and fills the last three.
    """
    n_draws, k = seeds.size, m.shape[-1]
    n_steps = start.size - 1
    x0 = _whole(x0, "initial stocks")
    if x0.shape[-1] != k or x0.ndim > 2 or (x0.ndim == 2 and x0.shape[0] != n_draws):
        raise ValueError(f"initial stocks must have shape ({k},) or ({n_draws}, {k})")
    x0 = np.ascontiguousarray(np.broadcast_to(x0, (n_draws, k)))
    mean = np.zeros((1, n_steps, k)) if inflow is None else np.asarray(inflow, dtype=np.float64)
    if mean.ndim == 2:
        mean = mean[None]
    if mean.shape[1:] != (n_steps, k) or mean.shape[0] not in (1, n_draws):
        raise ValueError(f"inflow must have shape ({n_steps}, {k}) or ({n_draws}, {n_steps}, {k})")
    if np.any(mean < 0) or not np.all(np.isfinite(mean)):
        raise ValueError("inflow must be finite and >= 0")
    if not (np.isfinite(inflow_cv) and inflow_cv >= 0):
        raise ValueError("inflow_cv must be >= 0")
    fixed = inflow_counts_by_state(mean)
    stock = np.empty((n_draws, n_steps + 1, k), dtype=np.int64)
    events = np.zeros((n_draws, n_steps, k, k), dtype=np.int64)
    arrivals = np.zeros((n_draws, n_steps, k), dtype=np.int64)
    m, mean = np.ascontiguousarray(m), np.ascontiguousarray(mean)
    # The draws in blocks of about BLOCK_DRAW_STEPS draw-steps: a numba call cannot be
    # interrupted, so one call over every draw kept Ctrl-C waiting for up to 20 s. Each
    # draw has its own seed, so the blocks give the same result as one call.
    block = max(MIN_BLOCK_DRAWS, BLOCK_DRAW_STEPS // max(n_steps, 1))
    for lo in range(0, n_draws, block):
        hi = min(lo + block, n_draws)

        def part(a, lo=lo, hi=hi):
            return a if a.shape[0] == 1 else a[lo:hi]

        kernel(
            x0[lo:hi], part(m), start, dur, gen, part(fixed), part(mean), float(inflow_cv),
            seeds[lo:hi], stock[lo:hi], events[lo:hi], arrivals[lo:hi],
        )  # fmt: skip
    return ProjectedEvents(stock=stock, events=events, arrivals=arrivals)


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
    arr = None if arrivals is None else _whole(arrivals, "arrivals")[None]
    out = project_events(x, q, steps, seeds=np.array([seed]), inflow=arr, parallel=False)
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
