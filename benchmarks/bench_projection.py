"""Benchmark: stochastic stock projection, 4,000 draws x 5 states x 11 yearly steps.

Compares the package's vectorised path (batched P(step) for all draws, then the
compiled per-draw multinomial kernel on numba's threads) with a straightforward
per-draw Python loop (scipy expm per draw, numpy Generator.multinomial per state
and step). Both include demographic noise and an inflow; times are the best of
``--repeat`` runs after a warm-up (compilation is reported separately).

Run: ``python benchmarks/bench_projection.py [--draws 4000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
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
