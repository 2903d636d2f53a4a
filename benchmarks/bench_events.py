"""Benchmark: exact transition events, 4,000 draws x 5 states x 11 yearly steps, 650,000 persons.

Times :func:`markov_migration.core.events.project_events` (stocks and all
``r -> s`` events per step by uniformization, arrivals through each step)
against today's :func:`markov_migration.core.projection.project_stocks` (step-end
multinomials) on the same draws, stocks and inflow, in the same run, after a
warm-up call of each. ``project_stocks`` is timed with and without computing
``P(step)`` (``step_pmatrices``), which the event kernel does not need. Wall
times are the best of ``--repeat``; CPU times (all threads) are printed too,
because the machine may be shared.

It also prints the mean cumulative returns over the horizon: events, their
Van Loan expectation (a subset of draws), and the step-end net count that
``project_stocks``' flows give.

Run: ``python benchmarks/bench_events.py [--draws 4000] [--repeat 3] [--serial]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from markov_migration.core.event_moments import expected_step
from markov_migration.core.events import project_events
from markov_migration.core.projection import draw_seeds, project_stocks, step_pmatrices
from markov_migration.inputs.spec import load_spec
from markov_migration.io import models_dir

STEPS = 11
X0 = np.array([300_000, 150_000, 100_000, 0, 100_000])  # 650,000 persons
INFLOW = 20_000  # persons a year, into "transit"
INFLOW_STATE = 1
RETURNED = 3
REFERENCE_DRAWS = 4000


def posterior_like(q0: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Draws of Q: the model's rates with 10% log-normal noise (as bench_projection.py)."""
    rng = np.random.default_rng(seed)
    k = q0.shape[0]
    off = ~np.eye(k, dtype=bool)
    q = np.where(off, q0 * np.exp(0.1 * rng.standard_normal((n, k, k))), 0.0)
    q[:, np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    return q


def events_run(q, seeds, parallel):
    inflow = np.zeros((STEPS, q.shape[-1]))
    inflow[:, INFLOW_STATE] = INFLOW
    return project_events(
        X0, q, [[(1.0, 0)]] * STEPS, seeds=seeds, inflow=inflow, parallel=parallel
    )


def stocks_run(q, seeds, parallel, pstep=None):
    if pstep is None:
        pstep = step_pmatrices(q, [[(1.0, 0)]] * STEPS, np.ones((1,) + q.shape[1:]))
    return project_stocks(
        X0,
        pstep,
        seeds=seeds,
        inflow=np.full(STEPS, float(INFLOW)),
        inflow_state=INFLOW_STATE,
        parallel=parallel,
    )


def best_of(func, repeat: int) -> tuple[float, float, object]:
    """Best wall time, the CPU time of that run, and the last result."""
    best, cpu, result = np.inf, np.nan, None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        result = func()
        wall = time.perf_counter() - w0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serial", action="store_true", help="one thread (parallel=False)")
    args = parser.parse_args()
    parallel = not args.serial
    q = posterior_like(load_spec(models_dir() / "migration5.toml").rate_matrix(), args.draws)
    seeds = draw_seeds(1, np.arange(args.draws))

    t0 = time.perf_counter()
    events_run(q[:2], seeds[:2], parallel)
    warm_events = time.perf_counter() - t0
    t0 = time.perf_counter()
    stocks_run(q[:2], seeds[:2], parallel)
    warm_stocks = time.perf_counter() - t0

    pstep = step_pmatrices(q, [[(1.0, 0)]] * STEPS, np.ones((1,) + q.shape[1:]))
    t_ev, c_ev, ev = best_of(lambda: events_run(q, seeds, parallel), args.repeat)
    t_st, c_st, st = best_of(lambda: stocks_run(q, seeds, parallel, pstep), args.repeat)
    t_full, c_full, _ = best_of(lambda: stocks_run(q, seeds, parallel), args.repeat)

    total = X0.sum() + INFLOW * np.arange(STEPS + 1)
    assert np.all(ev.stock.sum(axis=-1) == total) and np.all(st.stock.sum(axis=-1) == total)
    balance = ev.stock[:, :-1] + ev.arrivals + ev.events.sum(axis=-2) - ev.events.sum(axis=-1)
    assert np.array_equal(ev.stock[:, 1:], balance), "events do not add up to the stocks"

    # cumulative returns by the horizon: events vs Van Loan vs step-end net moves
    returns = ev.events[:, :, :, RETURNED].sum(axis=(1, 2))
    net = st.flows[:, :, :, RETURNED].sum(axis=(1, 2)) - st.flows[:, :, RETURNED, RETURNED].sum(
        axis=1
    )
    n_ref = min(REFERENCE_DRAWS, args.draws)
    arrivals = np.zeros(5)
    arrivals[INFLOW_STATE] = INFLOW
    x, expected = np.broadcast_to(X0.astype(float), (n_ref, 5)), 0.0
    for _ in range(STEPS):  # Van Loan per draw, batched over draws
        x, e = expected_step(x, [(q[:n_ref], 1.0)], arrivals)
        expected = expected + e[:, :, RETURNED].sum(axis=1)
    diff = returns[:n_ref] - expected
    z = diff.mean() / (diff.std(ddof=1) / np.sqrt(n_ref))

    mode = "serial" if args.serial else "numba threads"
    print(
        f"transition events: {args.draws:,} draws x 5 states x {STEPS} yearly steps, "
        f"{X0.sum():,} persons + {INFLOW:,}/year ({mode})"
    )
    print(
        f"  first call (compile or cache): events {warm_events:.2f} s, stocks {warm_stocks:.2f} s"
    )
    print(f"                                        wall (best of {args.repeat})   cpu")
    print(f"  project_events (events + stocks)        {t_ev:8.3f} s  {c_ev:8.3f} s")
    print(f"  project_stocks, P given                 {t_st:8.3f} s  {c_st:8.3f} s")
    print(f"  step_pmatrices + project_stocks         {t_full:8.3f} s  {c_full:8.3f} s")
    print(f"  ratio events / stocks (P given)         {t_ev / t_st:8.1f} x  {c_ev / c_st:8.1f} x")
    print(
        f"  ratio events / stocks (with P)          {t_ev / t_full:8.1f} x  {c_ev / c_full:8.1f} x"
    )
    print(f"  target: events under 1 s -> {'ok' if t_ev < 1.0 else 'MISSED'} (wall)")
    print(f"cumulative returns over {STEPS} years, mean over draws:")
    print(f"  events                                  {returns.mean():12,.0f}")
    print(f"  Van Loan expectation ({n_ref} draws)       {expected.mean():12,.0f}  (z = {z:+.2f})")
    print(f"  step-end net moves into returned        {net.mean():12,.0f}")


if __name__ == "__main__":
    main()
