"""Benchmark: stochastic stock projection, 4,000 draws x 5 states x 11 yearly steps.

Compares the package's vectorised path (batched P(step) for all draws, then the
compiled per-draw multinomial kernel on numba's threads) with a straightforward
per-draw Python loop (scipy expm per draw, numpy Generator.multinomial per state
and step). Both include demographic noise and an inflow; times are the best of
``--repeat`` runs after a warm-up (compilation is reported separately).

With ``--events`` it measures the projection as ``project`` runs it now
(exact transition events by uniformization on the "ever returned" space:
:func:`markov_migration.projection.run.project_chunk`) against the old
net-change projection (``step_pmatrices`` + ``project_stocks``) on the same
draws, in one run (ratio), then the whole ``project_fit`` in-process on a fake
migration5 fit, and cumulative returns by 2035 at yearly and monthly steps next
to their Van Loan expectation.

Run: ``python benchmarks/bench_projection.py [--draws 4000] [--repeat 3] [--events]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg

from markov_migration.core.events import project_events
from markov_migration.core.projection import draw_seeds, project_stocks, step_pmatrices
from markov_migration.inputs.spec import load_spec
from markov_migration.io import models_dir

STEPS = 11
X0 = np.array([300_000, 150_000, 100_000, 0, 100_000])
INFLOW = 20_000.0


def posterior_like(q0: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Draws of Q: the model's rates with 10% log-normal noise (like a posterior)."""
    rng = np.random.default_rng(seed)
    k = q0.shape[0]
    off = ~np.eye(k, dtype=bool)
    q = np.where(off, q0 * np.exp(0.1 * rng.standard_normal((n, k, k))), 0.0)
    q[:, np.arange(k), np.arange(k)] = -q.sum(axis=-1)
    return q


def vectorised(q: np.ndarray, seed: int) -> np.ndarray:
    steps = [[(1.0, 0)]] * STEPS
    p = step_pmatrices(q, steps, np.ones((1,) + q.shape[1:]))
    out = project_stocks(
        X0,
        p,
        seeds=draw_seeds(seed, np.arange(q.shape[0])),
        inflow=np.full(STEPS, INFLOW),
        inflow_state=1,
    )
    return out.stock


def python_loop(q: np.ndarray, seed: int) -> np.ndarray:
    n, k = q.shape[0], q.shape[-1]
    stock = np.empty((n, STEPS + 1, k), dtype=np.int64)
    for d in range(n):
        rng = np.random.default_rng([seed, d])
        p = scipy.linalg.expm(q[d])
        p = np.clip(p, 0.0, None)
        p /= p.sum(axis=1, keepdims=True)
        x = X0.copy()
        stock[d, 0] = x
        for s in range(STEPS):
            new = np.zeros(k, dtype=np.int64)
            for r in range(k):
                new += rng.multinomial(x[r], p[r])
            new[1] += int(INFLOW)
            x = new
            stock[d, s + 1] = x
    return stock


def best_of(func, repeat: int, *args) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func(*args)
        times.append(time.perf_counter() - t0)
    return min(times), result


def with_events(q: np.ndarray, seed: int, by_start: bool = True):
    """The projection's unit of work: stocks, events, ever returned (augmented space)."""
    from markov_migration.projection.chunks import project_chunk

    n, k = q.shape[0], q.shape[-1]
    home = np.zeros(k, dtype=bool)
    home[3] = True
    return project_chunk(
        q[:, None], np.broadcast_to(X0, (n, k)), draw_seeds(seed, np.arange(n)),
        steps=[[(1.0, 0)]] * STEPS, multipliers=np.ones((1, k, k)), periods=np.zeros(1, int),
        inflow=np.full(STEPS, INFLOW), inflow_cv=0.0, inflow_state=1, home=home, by_start=by_start, parallel=True,
    )  # fmt: skip


def events_main(args) -> None:
    import os

    from markov_migration.inputs.simulate import simulate_panel
    from markov_migration.projection.initial import InitialTotal
    from markov_migration.projection.reference import expected_returns
    from markov_migration.projection.run import project_fit
    from markov_migration.testing import fake_fit

    spec = load_spec(models_dir() / "migration5.toml")
    q = posterior_like(spec.rate_matrix(), args.draws)
    with_events(q[:2], 0)  # compile (or load numba's cache)
    vectorised(q[:2], 0)
    cpu0 = os.times()
    t_new, out = best_of(with_events, args.repeat, q, 1)
    cpu_new = (sum(os.times()[:2]) - sum(cpu0[:2])) / args.repeat
    cpu0 = os.times()
    t_2k, _ = best_of(with_events, args.repeat, q, 1, False)
    cpu_2k = (sum(os.times()[:2]) - sum(cpu0[:2])) / args.repeat
    cpu0 = os.times()
    t_k, _ = best_of(lambda: project_events(X0, q, [[(1.0, 0)]] * STEPS,
                     seeds=draw_seeds(1, np.arange(q.shape[0])),
                     inflow=np.tile([0.0, INFLOW, 0, 0, 0], (STEPS, 1))), args.repeat)  # fmt: skip
    cpu_k = (sum(os.times()[:2]) - sum(cpu0[:2])) / args.repeat
    cpu0 = os.times()
    t_old, _ = best_of(vectorised, args.repeat, q, 1)
    cpu_old = (sum(os.times()[:2]) - sum(cpu0[:2])) / args.repeat
    print(f"projection kernels: {args.draws:,} draws x 5 states x {STEPS} yearly steps, "
          f"650,000 persons + {INFLOW:,.0f}/year")  # fmt: skip
    print(f"  events + ever returned (project_chunk)   {t_new:7.3f} s wall  {cpu_new:7.3f} s cpu")
    print(f"  same, 2K space (no one home, no arrivals) {t_2k:6.3f} s wall  {cpu_2k:7.3f} s cpu")
    print(f"  events only, K states (project_events)   {t_k:7.3f} s wall  {cpu_k:7.3f} s cpu")
    print(f"  old net change (P + project_stocks)      {t_old:7.3f} s wall  {cpu_old:7.3f} s cpu")
    print(
        f"  ratio new / old (wall; cpu)              {t_new / t_old:7.1f} x  {cpu_new / cpu_old:7.1f} x"
    )
    assert np.all(out[0].sum(axis=-1) == X0.sum() + INFLOW * np.arange(STEPS + 1))

    tree = fake_fit(spec, simulate_panel(spec, 600, seed=1), chains=4, draws=1000, seed=2)
    kw = dict(start=2024.5, horizon=2035.0, seed=3)
    project_fit(tree, InitialTotal(650_000), draws=10, **kw)  # warm-up
    t0 = time.perf_counter()
    yearly = project_fit(tree, InitialTotal(650_000), draws=args.draws, **kw)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    monthly = project_fit(tree, InitialTotal(650_000), draws=args.draws, step=1 / 12, **kw)
    t_month = time.perf_counter() - t0
    from markov_migration.projection.exits import ExitRates

    exits = ExitRates.read_csv("working-age-2022", spec)
    t_exit, _ = best_of(
        lambda: project_fit(tree, InitialTotal(650_000), draws=args.draws, exit_rates=exits, **kw),
        args.repeat,
    )
    t_fit_best, _ = best_of(
        lambda: project_fit(tree, InitialTotal(650_000), draws=args.draws, **kw), args.repeat
    )
    print(f"whole project_fit in-process, fake migration5 fit, {args.draws:,} draws, "
          "650,000 abroad at 2024.5 split per draw, to 2035")  # fmt: skip
    print(f"  yearly steps  {t_fit:7.2f} s (best of {args.repeat}: {t_fit_best:.2f} s);  "
          f"monthly steps  {t_month:7.2f} s")  # fmt: skip
    print(f"  yearly, with the demo's exits (working-age-2022)  best of {args.repeat}: "
          f"{t_exit:.2f} s (target under 1 s)")  # fmt: skip
    expected = expected_returns(tree, yearly)
    for name, ds in (("yearly", yearly), ("monthly", monthly)):
        v = ds["cumulative_returns"].isel(time=-1).values
        e = ds["ever_returned"].isel(time=-1).values
        print(f"  cumulative returns by 2035, {name:7s}  mean {v.mean():12,.0f}  "
              f"(se {v.std() / np.sqrt(v.size):7,.0f})  median {np.median(v):12,.0f}  "
              f"ever returned mean {e.mean():10,.0f}")  # fmt: skip
    net = yearly["net_returnees_change"].sum("time").values
    print(f"  Van Loan expectation (mean over draws)  {expected:12,.0f}")
    print(f"  sum of net_returnees_change (yearly)     {net.mean():12,.0f}  (= returnees at 2035)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", action="store_true")
    args = parser.parse_args()
    if args.events:
        events_main(args)
        return
    spec = load_spec(models_dir() / "migration5.toml")
    q = posterior_like(spec.rate_matrix(), args.draws)

    t0 = time.perf_counter()
    vectorised(q[:2], 0)  # compile (or load numba's cache)
    warm = time.perf_counter() - t0
    t_vec, stock_vec = best_of(vectorised, args.repeat, q, 1)
    t_p, _ = best_of(
        lambda: step_pmatrices(q, [[(1.0, 0)]] * STEPS, np.ones((1, 5, 5))), args.repeat
    )
    t_loop, stock_loop = best_of(python_loop, max(1, args.repeat - 1), q, 1)

    total = X0.sum() + INFLOW * np.arange(STEPS + 1)
    assert np.all(stock_vec.sum(axis=-1) == total) and np.all(stock_loop.sum(axis=-1) == total)
    # same model, independent noise: the mean paths agree within Monte Carlo error
    diff = stock_vec.mean(axis=0) - stock_loop.mean(axis=0)
    se = np.sqrt(stock_vec.var(axis=0) / args.draws + stock_loop.var(axis=0) / args.draws) + 1e-9
    assert np.all(np.abs(diff) <= 5 * se), "vectorised and loop projections disagree"

    print(f"stochastic projection: {args.draws:,} draws x 5 states x {STEPS} yearly steps + inflow")
    print(f"  first call (compile or load cache)   {warm:8.3f} s")
    print(f"  vectorised (P + kernel), best of {args.repeat}   {t_vec:8.3f} s")
    print(f"    of which P(step) for all draws      {t_p:8.3f} s")
    print(f"  per-draw Python loop                  {t_loop:8.3f} s")
    print(f"  speed-up                              {t_loop / t_vec:8.1f} x")
    print(f"  target: under 1 s -> {'ok' if t_vec < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
