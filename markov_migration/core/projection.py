"""Stochastic projection of stocks by state (numpy/numba only).

A cohort of people, counted by state, moves through a continuous-time Markov
chain in steps. For every posterior draw ``d`` and step ``k`` the transition
matrix ``P[d, k] = expm(Q_d dt_k)`` (a product of such matrices when the
generator changes inside a step) gives each person's probabilities of being in
each state at the end of the step. People move independently of each other, so
the ``n`` people in state ``r`` split across the destinations as a multinomial
draw ``Multinomial(n, P[d, k, r, :])``: this is the *demographic*
stochasticity. The multinomial is drawn as a chain of conditional binomials,
with the stayers last, so each row of the flow matrix sums exactly to the
stock it started from and people are conserved exactly (integers). Inflows of
new emigrants then arrive in one state at the end of the step.

Random numbers: draw ``d`` uses its own stream, seeded by
:func:`draw_seeds` from a :class:`numpy.random.SeedSequence` keyed by the draw
index. A draw's result therefore depends only on (seed, draw index, its inputs),
not on how the draws are split into chunks or threads, nor on which other
draws or scenarios are run alongside it; the same seed in two scenarios gives
common random numbers, so scenario differences carry less noise.

The deterministic counterpart :func:`expected_stocks` computes
``E[x_{k+1}] = E[x_k] P_k + inflow_k e_state`` per draw; the mean of the
stochastic projection equals it in expectation (tests check this within Monte
Carlo error).

Examples
--------
>>> import numpy as np
>>> from scipy.linalg import expm
>>> from markov_migration.core.projection import project_stocks, draw_seeds
>>> Q = np.array([[-0.3, 0.3], [0.5, -0.5]])
>>> P = np.broadcast_to(expm(Q), (4, 3, 2, 2))      # 4 draws, 3 yearly steps
>>> out = project_stocks(np.array([1000, 0]), P, seeds=draw_seeds(1, np.arange(4)))
>>> out.stock.shape
(4, 4, 2)
>>> bool((out.stock.sum(axis=-1) == 1000).all())     # exact conservation
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange


@dataclass(frozen=True)
class ProjectedStocks:
    """Integer outcome of a stochastic projection.

    Attributes
    ----------
    stock : ndarray of int64, shape (D, S + 1, K)
        Persons by state at the start and at the end of every step.
    flows : ndarray of int64, shape (D, S, K, K)
        ``flows[d, k, r, s]``: persons in state ``r`` at the start of step
        ``k`` and in state ``s`` at its end (``r == s``: stayed). Moves made
        and undone within one step are not seen, as in a panel survey.
    inflow : ndarray of int64, shape (D, S)
        New arrivals during each step (added at its end).
    """

    stock: np.ndarray
    flows: np.ndarray
    inflow: np.ndarray


def draw_seeds(seed: int, draw_index: np.ndarray) -> np.ndarray:
    """Seeds (uint32) of the random streams of the given draws.

    Each seed comes from ``SeedSequence(seed, spawn_key=(i,))``, so draw ``i``
    gets the same stream whatever else is run.

    Parameters
    ----------
    seed : int
        The run's seed (>= 0).
    draw_index : array_like of int
        Indices of the projection draws.
    """
    index = np.asarray(draw_index, dtype=np.int64).reshape(-1)
    out = np.empty(index.size, dtype=np.uint32)
    for j, i in enumerate(index):
        ss = np.random.SeedSequence(int(seed), spawn_key=(int(i),))
        out[j] = ss.generate_state(1, dtype=np.uint32)[0]
    return out


def inflow_counts(inflow: np.ndarray) -> np.ndarray:
    """Whole persons per step from expected (possibly fractional) inflows.

    Rounds the *cumulative* inflow, so the counts of a run add up to the
    rounded total (e.g. 12,500.5 per half-year gives 12,500 and 12,501).
    """
    inflow = np.asarray(inflow, dtype=np.float64)
    cum = np.round(np.concatenate([[0.0], np.cumsum(inflow)]))
    return np.diff(cum).astype(np.int64)


def generator_with_multipliers(q: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """Multiply off-diagonal intensities (hazard multipliers) and rebuild the diagonal.

    The diagonal is always recomputed as minus the row sum, also for
    multipliers of 1, so a scenario of ones reproduces the baseline bit for bit.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
        Generators (intensities per time unit).
    multiplier : ndarray, shape (K, K)
        Non-negative multipliers of each intensity (the diagonal is ignored).
    """
    k = q.shape[-1]
    off = ~np.eye(k, dtype=bool)
    out = np.where(off, q * multiplier, 0.0)
    idx = np.arange(k)
    out[..., idx, idx] = -out.sum(axis=-1)
    return out


def with_exit_state(q: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Generators with one more, absorbing state entered from each state at ``rates``.

    Parameters
    ----------
    q : ndarray, shape (..., K, K)
        Generators (intensities per time unit); only the off-diagonal is used.
    rates : ndarray, broadcastable to (..., K)
        Rate of entering the exit state from each state (per time unit).

    Returns
    -------
    ndarray, shape (..., K + 1, K + 1)
        The diagonal is minus the row sum; the exit state's row is 0.
    """
    q = np.asarray(q, dtype=np.float64)
    k = q.shape[-1]
    wide = np.zeros(q.shape[:-2] + (k + 1, k + 1))
    wide[..., :k, :k] = q
    wide[..., :k, k] = rates
    idx = np.arange(k + 1)
    wide[..., idx, idx] = 0.0
    wide[..., idx, idx] = -wide.sum(axis=-1)
    return wide


def step_pmatrices(
    q: np.ndarray,
    steps: Sequence[Sequence[tuple[float, int]]],
    multipliers: np.ndarray,
) -> np.ndarray:
    """Transition matrices of every step for every draw.

    Parameters
    ----------
    q : ndarray, shape (D, K, K)
        Generators of D posterior draws (intensities per time unit).
    steps : sequence of sequence of (duration, multiplier index)
        For each step, the pieces in time order during which the generator is
        constant: ``duration`` (time units, > 0) and the index into
        ``multipliers`` in force. A step's matrix is the product of its pieces'
        matrices, which is exact for a piecewise-constant generator.
    multipliers : ndarray, shape (M, K, K)
        Hazard multipliers (see :func:`generator_with_multipliers`).

    Returns
    -------
    ndarray, shape (D, S, K, K)
        ``P[d, k] = expm(Q_d^(1) t_1) @ expm(Q_d^(2) t_2) @ ...``.
    """
    from markov_migration.core.likelihood import pmatrix

    q = np.asarray(q, dtype=np.float64)
    n_draws, k = q.shape[0], q.shape[-1]
    # one batched call per multiplier, over all its distinct durations
    wanted: dict[int, set[float]] = {}
    for pieces in steps:
        for duration, m in pieces:
            wanted.setdefault(int(m), set()).add(float(duration))
    cache: dict[tuple[int, float], np.ndarray] = {}
    for m, durations in wanted.items():
        ts = sorted(durations)
        pm = pmatrix(generator_with_multipliers(q, multipliers[m]), np.array(ts))
        for j, t in enumerate(ts):
            cache[(m, t)] = pm[:, j]
    out = np.empty((n_draws, len(steps), k, k))
    for s, pieces in enumerate(steps):
        if not pieces:
            raise ValueError(f"step {s} has no pieces")
        p = cache[(int(pieces[0][1]), float(pieces[0][0]))]
        for duration, m in pieces[1:]:
            p = p @ cache[(int(m), float(duration))]
        out[:, s] = p
    return out


@njit(cache=True)
def _project_draw(d, x0, pstep, fixed, mean, cv, state, seeds, flows, arrivals):  # pragma: no cover
    """Project draw ``d``: its own stream, then conditional binomials step by step."""
    n_steps, k = pstep.shape[1], pstep.shape[2]
    np.random.seed(seeds[d])  # noqa: NPY002 (numba: per-thread state)
    level = 1.0
    if cv > 0.0:
        # persistent inflow level of this draw: gamma with mean 1 and the given CV
        shape = 1.0 / (cv * cv)
        level = np.random.gamma(shape, 1.0 / shape)  # noqa: NPY002
    x = x0[d].copy()
    for s in range(n_steps):
        for r in range(k):
            n = x[r]
            rest = 1.0  # probability mass of the targets not yet drawn
            for j in range(k):
                if j == r:
                    continue  # the stayers come last and take the remainder
                p = pstep[d, s, r, j]
                if n == 0 or p <= 0.0:
                    flows[d, s, r, j] = 0
                    continue
                cond = p / rest if rest > p else 1.0
                c = n if cond >= 1.0 else np.random.binomial(n, cond)  # noqa: NPY002
                flows[d, s, r, j] = c
                n -= c
                rest -= p
            flows[d, s, r, r] = n
        for j in range(k):
            total = 0
            for r in range(k):
                total += flows[d, s, r, j]
            x[j] = total
        if cv > 0.0:
            lam = level * mean[s]
            a = np.random.poisson(lam) if lam > 0.0 else 0  # noqa: NPY002
        else:
            a = fixed[s]
        arrivals[d, s] = a
        x[state] += a


@njit(parallel=True, cache=True)
def _project_parallel(
    x0, pstep, fixed, mean, cv, state, seeds, flows, arrivals
):  # pragma: no cover
    # numba's random state is per thread and every draw reseeds it, so the
    # assignment of draws to threads does not change the result
    for d in prange(pstep.shape[0]):
        _project_draw(d, x0, pstep, fixed, mean, cv, state, seeds, flows, arrivals)


@njit(cache=True)
def _project_serial(x0, pstep, fixed, mean, cv, state, seeds, flows, arrivals):  # pragma: no cover
    for d in range(pstep.shape[0]):
        _project_draw(d, x0, pstep, fixed, mean, cv, state, seeds, flows, arrivals)


def project_stocks(
    x0: np.ndarray,
    pstep: np.ndarray,
    *,
    seeds: np.ndarray,
    inflow: np.ndarray | None = None,
    inflow_cv: float = 0.0,
    inflow_state: int = 0,
    parallel: bool = True,
) -> ProjectedStocks:
    """Move people through the steps with demographic stochasticity.

    Parameters
    ----------
    x0 : array_like of int, shape (K,) or (D, K)
        Initial persons by state (the same for every draw, or per draw).
    pstep : array_like, shape (D, S, K, K)
        Transition matrix of each step for each draw (rows sum to 1; tiny
        negative round-off is treated as 0 and the stayers take the rest).
    seeds : array_like of uint32, shape (D,)
        Stream seed of each draw (:func:`draw_seeds`).
    inflow : array_like, shape (S,), optional
        Expected new arrivals during each step (persons). With ``inflow_cv``
        0 they are fixed: :func:`inflow_counts` of them arrive. Otherwise each
        draw has an inflow level ``g ~ Gamma(mean 1, CV inflow_cv)`` for the
        whole run and ``Poisson(g * inflow[k])`` arrive in step ``k``.
    inflow_cv : float
        Coefficient of variation of the inflow level (0 = known inflows).
    inflow_state : int
        State the arrivals enter.
    parallel : bool
        Run draws on numba's threads. Use False inside other thread pools
        (e.g. Dask workers): numba's default threading layer does not allow
        concurrent parallel kernels. The result is the same either way.

    Returns
    -------
    ProjectedStocks
    """
    pstep = np.ascontiguousarray(pstep, dtype=np.float64)
    if pstep.ndim != 4 or pstep.shape[2] != pstep.shape[3]:
        raise ValueError(f"pstep must have shape (D, S, K, K), got {pstep.shape}")
    n_draws, n_steps, k = pstep.shape[:3]
    x0 = np.asarray(x0)
    if not np.issubdtype(x0.dtype, np.integer):
        if not np.all(np.mod(x0, 1) == 0):
            raise ValueError("initial stocks must be whole persons")
    x0 = np.ascontiguousarray(np.broadcast_to(x0.astype(np.int64), (n_draws, k)))
    if np.any(x0 < 0):
        raise ValueError("initial stocks must be >= 0")
    seeds = np.ascontiguousarray(seeds, dtype=np.uint32).reshape(-1)
    if seeds.size != n_draws:
        raise ValueError(f"{seeds.size} seeds for {n_draws} draws")
    mean = np.zeros(n_steps) if inflow is None else np.asarray(inflow, dtype=np.float64)
    if mean.shape != (n_steps,) or np.any(mean < 0) or not np.all(np.isfinite(mean)):
        raise ValueError(f"inflow must be {n_steps} finite values >= 0")
    if not (np.isfinite(inflow_cv) and inflow_cv >= 0):
        raise ValueError("inflow_cv must be >= 0")
    if not 0 <= inflow_state < k:
        raise ValueError(f"inflow_state must be in 0..{k - 1}")
    fixed = inflow_counts(mean)
    flows = np.empty((n_draws, n_steps, k, k), dtype=np.int64)
    arrivals = np.empty((n_draws, n_steps), dtype=np.int64)
    if n_draws and n_steps:
        kernel = _project_parallel if parallel else _project_serial
        kernel(
            x0, pstep, fixed, np.ascontiguousarray(mean), float(inflow_cv), int(inflow_state),
            seeds, flows, arrivals,
        )  # fmt: skip
    stock = np.empty((n_draws, n_steps + 1, k), dtype=np.int64)
    stock[:, 0] = x0
    stock[:, 1:] = flows.sum(axis=2)
    stock[:, 1:, inflow_state] += arrivals
    return ProjectedStocks(stock=stock, flows=flows, inflow=arrivals)


def expected_stocks(
    x0: np.ndarray,
    pstep: np.ndarray,
    inflow: np.ndarray | None = None,
    inflow_state: int = 0,
) -> np.ndarray:
    """Expected persons by state, ``x_{k+1} = x_k P_k + inflow_k e_state``, per draw.

    Parameters are those of :func:`project_stocks`; the inflows are the
    expected (unrounded) arrivals per step.

    Returns
    -------
    ndarray of float, shape (D, S + 1, K)
    """
    pstep = np.asarray(pstep, dtype=np.float64)
    n_draws, n_steps, k = pstep.shape[:3]
    x = np.broadcast_to(np.asarray(x0, dtype=np.float64), (n_draws, k)).copy()
    out = np.empty((n_draws, n_steps + 1, k))
    out[:, 0] = x
    for s in range(n_steps):
        x = np.einsum("dr,drs->ds", x, pstep[:, s])
        if inflow is not None:
            x[:, inflow_state] += inflow[s]
        out[:, s + 1] = x
    return out
